//! `herald check --socket` against a real `herald server run`: the
//! mistakes an operator can make through the CLI are found, with their
//! severity, and make the command exit 1; a clean server passes.

mod harness;

use harness::cluster::Server;
use harness::config::ServerToml;
use harness::dirs::temp_dir;
use serde_json::Value;

/// An agent ID that no agent has attested as (the entries wait for it).
const PARENT: &str = "spiffe://example.org/herald/agent/join_token/node-1";

/// `herald check --socket ... --output json`, `extra` flags appended: exit
/// code and the findings.
fn check_json(server: &Server, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["check", "--output", "json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = server.cli(&args);
    let findings: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON array ({e}): {stdout}\nstderr: {stderr}"));
    (code, findings)
}

/// The findings of `check` about the entry with SPIFFE ID `path`.
fn about<'a>(findings: &'a [Value], check: &str, path: &str) -> Vec<&'a Value> {
    let id = format!("spiffe://example.org{path}");
    findings
        .iter()
        .filter(|f| f["check"] == check && f["object"]["spiffe_id"] == id.as_str())
        .collect()
}

fn entry(server: &Server, path: &str, extra: &[&str]) -> String {
    server.create_entry(&format!("spiffe://example.org{path}"), PARENT, extra)
}

#[test]
fn a_live_server_with_mistakes_fails_the_check_naming_each() {
    let dir = temp_dir("check-live");
    let server = Server::start_with(&ServerToml::new(dir.path()).extra("ca_ttl = \"2h\"\n"));

    // Same selectors, different IDs; and a broader entry nesting both.
    let web = entry(&server, "/web", &[]);
    entry(&server, "/db", &[]);
    entry(&server, "/admin", &["--selector", "unix:gid:4242"]);
    // Federating with a trust domain whose bundle is then deleted.
    server.set_foreign_bundle("other.org", dir.path());
    entry(
        &server,
        "/fed",
        &["--selector", "unix:gid:1", "--federates-with", "other.org"],
    );
    server.cli_ok(&["bundle", "delete", "--trust-domain", "other.org"]);
    // An X509-SVID TTL above ca_ttl.
    entry(
        &server,
        "/long",
        &["--selector", "unix:gid:2", "--x509-svid-ttl", "3h"],
    );

    let (code, findings) = check_json(&server, &[]);
    assert_eq!(code, 1, "error findings exit 1: {findings:#?}");
    for f in &findings {
        for field in ["severity", "check", "object", "message", "remedy"] {
            assert!(f.get(field).is_some(), "{field} missing in {f}");
        }
    }
    let identical: Vec<_> = about(&findings, "selector_overlap", "/web")
        .into_iter()
        .chain(about(&findings, "selector_overlap", "/db"))
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(
        identical.len(),
        1,
        "one error for /web and /db: {findings:#?}"
    );
    let subset = about(&findings, "selector_overlap", "/web");
    assert!(
        subset.iter().any(
            |f| f["severity"] == "warning" && f["message"].as_str().unwrap().contains("/admin")
        ),
        "/web's selectors are a subset of /admin's: {findings:#?}"
    );
    assert!(subset.iter().all(|f| f["object"]["id"] == web.as_str()));
    let fed = about(&findings, "federates_with", "/fed");
    assert_eq!(fed.len(), 1, "{findings:#?}");
    assert_eq!(fed[0]["severity"], "error");
    assert!(fed[0]["message"].as_str().unwrap().contains("other.org"));
    let ttl = about(&findings, "svid_ttl", "/long");
    assert_eq!(ttl.len(), 1, "{findings:#?}");
    assert_eq!(ttl[0]["severity"], "error");
    assert!(ttl[0]["message"].as_str().unwrap().contains("ca_ttl"));
    // The parent is an agent ID still to attest: information only.
    assert_eq!(
        about(&findings, "entry_parent", "/long")[0]["severity"],
        "info"
    );

    // The text form: one block per finding, the same exit code.
    let (code, text, stderr) = server.cli(&["check"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        text.contains("error: entry ") && text.contains("fix: "),
        "{text}"
    );
    assert!(stderr.contains("error finding"), "{stderr}");
}

#[test]
fn a_clean_server_passes_the_check() {
    let dir = temp_dir("check-clean");
    let server = Server::start_with(&ServerToml::new(dir.path()));
    let (code, findings) = check_json(&server, &[]);
    assert_eq!(code, 0, "{findings:#?}");
    assert!(
        findings.iter().all(|f| f["severity"] == "info"),
        "{findings:#?}"
    );
}

#[test]
fn bad_flags_and_an_absent_socket_fail_in_one_line() {
    let dir = temp_dir("check-flags");
    let absent = dir.path().join("absent.sock");
    let absent = absent.to_str().unwrap();
    harness::bin::assert_fails(
        &["check", "--socket", absent],
        &harness::bin::run(&["check", "--socket", absent]),
        1,
        "cannot reach the server admin socket",
    );
    let args = ["check", "--socket", absent, "--expiry-horizon", "soon"];
    harness::bin::assert_fails(&args, &harness::bin::run(&args), 2, "--expiry-horizon");
    let args = ["check"];
    harness::bin::assert_fails(&args, &harness::bin::run(&args), 2, "--config");
}

/// Polls `herald check` (`extra` flags appended) until `done` holds for
/// its findings; the last findings.
fn check_until(server: &Server, extra: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, findings) = check_json(server, extra);
        if done(&findings) || std::time::Instant::now() > deadline {
            return findings;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_connected_agent_is_current_and_a_gone_one_turns_stale() {
    let dir = temp_dir("check-agents");
    let server = Server::start_with(&ServerToml::new(dir.path()));
    let (mut agent, agent_id) = server.start_agent(&dir.path().join("agent"));
    let on_agent = |f: &Value| f["object"]["id"] == agent_id.as_str();
    let flags = ["--stale-agent-after", "1s"];
    // The admin API says it is connected and caught up with the bundle.
    let sequence = server.cli_json(&["authority", "show"])["bundle_sequence"].clone();
    let show = ["agent", "show", "--spiffe-id", &agent_id];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let shown = loop {
        let shown = server.cli_json(&show);
        if shown["acked_bundle_sequence"] == sequence || std::time::Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(shown["connected"], true, "{shown}");
    assert_eq!(shown["acked_bundle_sequence"], sequence, "{shown}");
    // Past the staleness threshold since it attested, a connected agent
    // is still not stale.
    let attested = harness::bin::now();
    while harness::bin::now() < attested + 2 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_, findings) = check_json(&server, &flags);
    assert!(!findings.iter().any(on_agent), "{findings:#?}");

    agent.proc.stop();
    let stale = |fs: &[Value]| {
        fs.iter()
            .any(|f| on_agent(f) && f["check"] == "agent_stale")
    };
    let findings = check_until(&server, &flags, stale);
    assert!(stale(&findings), "{findings:#?}");
    let f = findings.iter().find(|f| on_agent(f)).unwrap();
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["object"]["kind"], "agent");
}

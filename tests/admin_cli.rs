//! The admin commands (`entry`, `token`, `agent`, and the socket forms of
//! `bundle show`, `x509 mint` and `jwt mint`) against a real
//! `herald server run` process: round trips, and bad input refused with
//! exit 2 and the field named on stderr.

mod harness;

use std::path::Path;

use harness::bin::{assert_fails, herald, now, run};
use harness::cluster::Server;

/// Runs an admin command that must fail with `code`, naming `needle`.
#[track_caller]
fn fails(s: &Server, args: &[&str], code: i32, needle: &str) -> String {
    check_failure(args, &s.run(args), code, needle)
}

/// Like [`assert_fails`], and the line starts as the CLI's errors do.
#[track_caller]
fn check_failure(args: &[&str], out: &std::process::Output, code: i32, needle: &str) -> String {
    let stderr = assert_fails(args, out, code, needle);
    assert!(
        stderr.starts_with("herald: ") || stderr.starts_with("error:"),
        "{stderr}"
    );
    stderr
}

const PARENT: &str = "spiffe://example.org/herald/agent/join_token/t1";

#[test]
fn entry_commands_round_trip() {
    let s = Server::start_temp();
    let created = s.cli_json(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        PARENT,
        "--selector",
        "unix:uid:1000",
        "--selector",
        "unix:gid:50",
        "--x509-svid-ttl",
        "2h",
        "--dns-name",
        "web.example.org",
        "--hint",
        "web",
    ]);
    let entry = &created["results"][0]["entry"];
    assert_eq!(created["results"][0]["status"]["code"], 0);
    assert_eq!(entry["x509_svid_ttl"], 7200);
    assert_eq!(entry["selectors"][0]["value"], "uid:1000");
    let id = entry["id"].as_str().unwrap().to_string();

    let shown = s.cli_json(&["entry", "show", "--entry-id", &id]);
    assert_eq!(&shown, entry);
    let table = s.cli_ok(&["entry", "show", "--entry-id", &id]);
    assert!(table.contains("spiffe://example.org/web") && table.contains("unix:gid:50"));

    // Whole-entry replace.
    let updated = s.cli_json(&[
        "entry",
        "update",
        "--entry-id",
        &id,
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        PARENT,
        "--selector",
        "unix:uid:1001",
        "--admin",
    ]);
    let u = &updated["results"][0]["entry"];
    assert_eq!(u["revision_number"], 2);
    assert_eq!(u["admin"], true);
    assert_eq!(u["x509_svid_ttl"], 0);
    assert_eq!(u["selectors"].as_array().unwrap().len(), 1);

    // A batch from a file; the duplicate fails alone, with its own line.
    let data = s.dir.join("entries.json");
    let batch: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/batch/{i}"),
                "parent_id": PARENT,
                "selectors": [{"type": "k8s", "value": format!("pod:{i}")}],
            })
        })
        .chain([serde_json::json!({
            "spiffeId": "spiffe://example.org/batch/0",
            "parentId": PARENT,
            "selectors": ["k8s:pod:0"],
        })])
        .collect();
    std::fs::write(&data, serde_json::json!({ "entries": batch }).to_string()).unwrap();
    let stderr = fails(
        &s,
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "1 of 6 entries failed",
    );
    assert!(
        stderr.contains("entry 5 (spiffe://example.org/batch/0)")
            && stderr.contains("already exists"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // Listing follows every page.
    let listed = s.cli_json(&["entry", "list", "--page-size", "2"]);
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    let table = s.cli_ok(&["entry", "list"]);
    assert!(
        table.starts_with("ENTRY ID") && table.contains("6 entries"),
        "{table}"
    );
    let listed = s.cli_json(&[
        "entry",
        "list",
        "--selector",
        "k8s:pod:3",
        "--match",
        "superset",
    ]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
    let listed = s.cli_json(&["entry", "list", "--spiffe-id", "spiffe://example.org/web"]);
    assert_eq!(listed["entries"][0]["id"], id.as_str());
    let listed = s.cli_json(&["entry", "list", "--parent-id", PARENT]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 6);

    // The list output feeds back as --data (ids included): all duplicates now.
    let dump = s.dir.join("dump.json");
    std::fs::write(&dump, s.cli_ok(&["entry", "list", "--output", "json"])).unwrap();
    fails(
        &s,
        &["entry", "create", "--data", dump.to_str().unwrap()],
        2,
        "6 of 6 entries failed",
    );

    let out = s.cli_ok(&["entry", "delete", "--entry-id", &id]);
    assert!(out.contains(&id));
    fails(
        &s,
        &["entry", "show", "--entry-id", &id],
        2,
        &format!("entry {id} not found"),
    );
    let listed = s.cli_json(&["entry", "list"]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 5);
}

#[test]
fn bad_entry_input_names_the_field() {
    let s = Server::start_temp();
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            PARENT,
        ];
        args.extend(extra);
        args
    }
    fails(
        &s,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://Example.org/x",
            "--parent-id",
            PARENT,
            "--selector",
            "unix:uid:1",
        ],
        2,
        "spiffe_id: \"spiffe://Example.org/x\" is not a valid SPIFFE ID",
    );
    fails(
        &s,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            "spiffe://unknown.org/agent",
            "--selector",
            "unix:uid:1",
        ],
        2,
        "parent_id: spiffe://unknown.org/agent is not in trust domain example.org",
    );
    fails(
        &s,
        &create(&["--selector", "unix:"]),
        2,
        "selectors[0].value: must not be empty",
    );
    fails(&s, &create(&["--selector", "nocolon"]), 2, "--selector");
    fails(
        &s,
        &create(&["--selector", "unix:uid:1", "--x509-svid-ttl", "400d"]),
        2,
        "x509_svid_ttl: 34560000 out of range",
    );
    fails(
        &s,
        &create(&["--selector", "unix:uid:1", "--jwt-svid-ttl", "soon"]),
        2,
        "--jwt-svid-ttl",
    );
    fails(
        &s,
        &create(&["--selector", "unix:uid:1", "--federates-with", "other.org"]),
        2,
        "federates_with: no bundle for trust domain other.org",
    );
    // Missing required flags are clap usage errors: also exit 2.
    let out = s.run(&["entry", "create", "--spiffe-id", "spiffe://example.org/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--parent-id"));

    fails(
        &s,
        &["entry", "show", "--entry-id", "nope"],
        2,
        "entry nope not found",
    );
    fails(
        &s,
        &[
            "entry",
            "update",
            "--entry-id",
            "nope",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            PARENT,
            "--selector",
            "unix:uid:1",
        ],
        2,
        "entry nope not found",
    );
    fails(
        &s,
        &["entry", "delete", "--entry-id", "nope"],
        2,
        "entry nope not found",
    );
    fails(
        &s,
        &["entry", "list", "--page-size", "20000"],
        2,
        "page_size",
    );
    fails(
        &s,
        &["entry", "list", "--spiffe-id", "spiffe://Example.org/x"],
        2,
        "filter.by_spiffe_id",
    );

    let data = s.dir.join("bad.json");
    std::fs::write(
        &data,
        r#"{"entries":[{"spiffe_id":"spiffe://example.org/a","ttl":5}]}"#,
    )
    .unwrap();
    fails(
        &s,
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "--data: entries[0].ttl: unknown field",
    );
    std::fs::write(&data, "not json").unwrap();
    fails(
        &s,
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "--data",
    );
    fails(
        &s,
        &["entry", "create", "--data", "/nonexistent/e.json"],
        2,
        "--data",
    );
}

#[test]
fn tokens_agents_bundle_and_mint_over_the_socket() {
    let s = Server::start_temp();
    let before = now();
    let token = s.cli_json(&["token", "generate", "--ttl", "2m"]);
    let value = token["token"].as_str().unwrap();
    assert_eq!(value.len(), 32);
    let expires_at = token["expires_at"].as_i64().unwrap();
    assert!(
        (before + 120..=now() + 120).contains(&expires_at),
        "{token}"
    );
    assert_eq!(
        token["agent_id"],
        format!("spiffe://example.org/herald/agent/join_token/{value}")
    );
    let table = s.cli_ok(&[
        "token",
        "generate",
        "--spiffe-id",
        "spiffe://example.org/herald/agent/node/1",
    ]);
    assert!(table.contains("Token:") && table.contains("spiffe://example.org/herald/agent/node/1"));
    fails(
        &s,
        &[
            "token",
            "generate",
            "--spiffe-id",
            "spiffe://other.org/node",
        ],
        2,
        "agent_id: spiffe://other.org/node is not in trust domain",
    );
    fails(&s, &["token", "generate", "--ttl", "x"], 2, "--ttl");

    let agents = s.cli_json(&["agent", "list"]);
    assert!(agents["agents"].as_array().unwrap().is_empty());
    assert!(s.cli_ok(&["agent", "list"]).contains("0 agents"));
    let unknown = "spiffe://example.org/herald/agent/join_token/nobody";
    for cmd in ["show", "evict", "ban"] {
        fails(
            &s,
            &["agent", cmd, "--spiffe-id", unknown],
            2,
            &format!("agent {unknown} not found"),
        );
        fails(
            &s,
            &["agent", cmd, "--spiffe-id", "spiffe://Example.org/a"],
            2,
            "id: ",
        );
    }

    // The bundle over the socket.
    let bundle = s.cli_ok(&["bundle", "show"]);
    let parsed = herald::spiffe::Bundle::from_spiffe_json(
        herald::spiffe::TrustDomain::new("example.org").unwrap(),
        bundle.as_bytes(),
    )
    .unwrap();
    assert!(!parsed.x509_authorities.is_empty());
    assert!(s
        .cli_ok(&["bundle", "show", "--format", "pem"])
        .contains("BEGIN CERTIFICATE"));

    // An X509-SVID: key made here, CSR signed by the server.
    let out = s.dir.join("svid");
    let summary = s.cli_json(&[
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/cli",
        "--dns-name",
        "cli.example.org",
        "--ttl",
        "10m",
        "--write",
        out.to_str().unwrap(),
    ]);
    assert_eq!(summary["spiffe_id"], "spiffe://example.org/cli");
    assert!(summary["expires_at"].as_i64().unwrap() <= now() + 600);
    check_svid_files(&out, "spiffe://example.org/cli");
    fails(
        &s,
        &[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/herald/x",
        ],
        2,
        "csr: URI SAN",
    );
    fails(
        &s,
        &["x509", "mint", "--spiffe-id", "spiffe://other.org/x"],
        2,
        "not in trust domain",
    );

    // A JWT-SVID that verifies against the bundle.
    let token = s.cli_ok(&[
        "jwt",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/cli",
        "--audience",
        "db",
    ]);
    let claims = herald::ca::verify_jwt_svid(token.trim(), |_| Some(&parsed), "db", now()).unwrap();
    assert_eq!(claims.sub.as_str(), "spiffe://example.org/cli");
    fails(
        &s,
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/cli",
            "--audience",
            "",
        ],
        2,
        "--audience",
    );
    fails(
        &s,
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://other.org/cli",
            "--audience",
            "db",
        ],
        2,
        "id: spiffe://other.org/cli is not in trust domain",
    );
}

#[test]
fn an_unreachable_socket_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().unwrap();
    for args in [
        vec!["entry", "list", "--socket", socket],
        vec!["token", "generate", "--socket", socket],
        vec!["agent", "list", "--socket", socket],
        vec!["bundle", "show", "--socket", socket],
    ] {
        let out = run(&args);
        check_failure(
            &args,
            &out,
            1,
            &format!("cannot reach the server admin socket at {socket}: "),
        );
    }
    // The environment names the socket too.
    let out = herald()
        .args(["entry", "show", "--entry-id", "x"])
        .env("HERALD_ADMIN_SOCKET", socket)
        .output()
        .unwrap();
    check_failure(&["entry", "show"], &out, 1, socket);
}

fn check_svid_files(dir: &Path, id: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.join("svid.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = herald::ca::KeyPair::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let chain = std::fs::read_to_string(dir.join("svid.pem")).unwrap();
    let leaf = herald::ca::keys::pem_blocks(&chain, "CERTIFICATE")
        .unwrap()
        .remove(0);
    let facts = herald::ca::x509::cert_facts(&leaf).unwrap();
    assert_eq!(facts.uri_sans, vec![id.to_string()]);
    assert_eq!(facts.public_key_spki, key.public_key_spki());
    let bundle = std::fs::read_to_string(dir.join("bundle.pem")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"));
}

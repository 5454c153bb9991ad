//! The server's audit log with real processes (issue 13): one line per
//! admin call and per attestation, with the caller the kernel or TLS
//! reported, the identifying fields and the status; no join token, key or
//! certificate in it; the same request id in the JSON log lines of the
//! call and in its `x-request-id` response header; and no file at all
//! unless `[audit]` is configured.

mod harness;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use harness::bin::my_uid;
use harness::cluster::{run_role, spawn_role, Agent, Server, START_TIMEOUT};
use harness::config::ServerToml;
use harness::node::NodeAgent;
use harness::workload::rt;
use herald::node::{make_csr, ServerConnector};
use herald::proto::admin::{self, agents_client::AgentsClient};
use herald::proto::node;
use herald::request_id::REQUEST_ID_HEADER;
use herald::spiffe::TrustDomain;
use herald::tls::Roots;
use serde_json::Value;

const ATTEST: &str = "/herald.node.v1.Node/Attest";

/// A server config in `dir` with the audit log at `<dir>/audit/audit.jsonl`.
fn audited(dir: &Path, extra: &str) -> (ServerToml, PathBuf) {
    let path = dir.join("audit/audit.jsonl");
    let toml =
        ServerToml::new(dir).extra(&format!("{extra}[audit]\npath = \"{}\"\n", path.display()));
    (toml, path)
}

/// Every line of the audit file, parsed; each must be one JSON object with
/// the fields every record has.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read the audit log");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("one JSON object per line");
            let time = v["time"].as_str().expect("time");
            // RFC 3339 UTC: 2026-12-04T16:35:50.123Z (the shape, not the clock).
            assert!(time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T");
            let id = v["request_id"].as_str().expect("request_id");
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(v["method"].as_str().unwrap().starts_with("/herald."));
            assert!(v["fields"].is_object() && v["status"].is_string(), "{v}");
            v
        })
        .collect()
}

/// The one record of `method` for which `pick` holds.
#[track_caller]
fn record<'a>(all: &'a [Value], method: &str, pick: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = all
        .iter()
        .filter(|v| v["method"] == method && pick(v))
        .collect();
    assert_eq!(found.len(), 1, "{method} in {all:#?}");
    found[0]
}

/// The caller of an admin call: this test's uid and gid, and a pid.
#[track_caller]
fn assert_admin_caller(v: &Value, server_pid: u32) {
    let caller = &v["caller"];
    assert_eq!(caller["uid"], my_uid(), "{v}");
    assert!(caller["gid"].is_u64(), "{v}");
    let pid = caller["pid"].as_u64().expect("pid");
    assert!(pid > 0 && pid != u64::from(server_pid), "{v}");
}

/// The server's roots as DER, for a node API client.
fn roots(server: &Server) -> Vec<Vec<u8>> {
    herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap()
}

#[test]
fn admin_calls_and_attestations_are_audited_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let (toml, path) = audited(tmp.path(), "");
    let server = Server::start_with(&toml);
    let td = TrustDomain::new(&server.td).unwrap();
    let pid = server.proc.pid();

    // Entries: create and delete through the CLI.
    let parent = "spiffe://example.org/herald/agent/node-1";
    let entry_id = server.create_entry("spiffe://example.org/web", parent, &[]);
    server.cli_ok(&["entry", "delete", "--entry-id", &entry_id]);

    // A join token, and a real agent attesting with it; a second agent
    // (a node API client) to evict.
    let (token, agent_id) = server.join_token();
    let agent_dir = tmp.path().join("agent");
    let _agent = Agent::start(&server.agent_config(&agent_dir, Some(&token)));
    let other = rt().block_on(NodeAgent::join(&server));
    server.cli_ok(&["agent", "ban", "--spiffe-id", &agent_id]);
    server.cli_ok(&["agent", "evict", "--spiffe-id", &other.id.to_string()]);

    // Refused: bad input on the admin socket, an unknown token on the node API.
    server.cli_fails(
        &["agent", "ban", "--spiffe-id", "not-a-spiffe-id"],
        2,
        "SPIFFE ID",
    );
    let bogus = "bogus-token-0123456789abcdefXYZ";
    let refused = rt().block_on(async {
        let connector =
            ServerConnector::new(server.node_addr, &td, Roots::new(roots(&server)), false).unwrap();
        let key = herald::ca::KeyPair::generate(herald::ca::KeyType::EcP256).unwrap();
        let request = node::AttestRequest {
            join_token: bogus.to_string(),
            x509pop: None,
            k8s_psat: None,
            csr: make_csr(&key).unwrap(),
        };
        connector.anonymous().await.unwrap().attest(request).await
    });
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);

    let all = records(&path);

    let created = record(&all, "/herald.admin.v1.Entries/BatchCreateEntry", |_| true);
    assert_admin_caller(created, pid);
    assert_eq!(created["status"], "Ok");
    let fields = &created["fields"];
    assert_eq!(
        fields["entries"][0]["spiffe_id"],
        "spiffe://example.org/web"
    );
    assert_eq!(fields["entries"][0]["parent_id"], parent);
    let selector = format!("unix:uid:{}", my_uid());
    assert_eq!(fields["entries"][0]["selectors"][0], selector.as_str());
    assert_eq!(fields["results"][0]["id"], entry_id.as_str());
    assert_eq!(fields["results"][0]["status"], "Ok");

    let deleted = record(&all, "/herald.admin.v1.Entries/BatchDeleteEntry", |_| true);
    assert_admin_caller(deleted, pid);
    assert_eq!(deleted["fields"]["ids"][0], entry_id.as_str());
    assert_eq!(deleted["fields"]["results"][0]["status"], "Ok");

    // The token and the agent ID derived from it only as prefix and hash.
    let tokens: Vec<&Value> = all
        .iter()
        .filter(|v| v["method"] == "/herald.admin.v1.Agents/CreateJoinToken")
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    let token_ref = tokens[0]["fields"]["token"].as_str().unwrap();
    assert!(
        token_ref.starts_with(&format!("{}...sha256:", &token[..4])),
        "{token_ref}"
    );
    let redacted_agent = format!("spiffe://example.org/herald/agent/join_token/{token_ref}");
    assert_eq!(tokens[0]["fields"]["agent_id"], redacted_agent.as_str());
    assert_admin_caller(tokens[0], pid);

    let attested = record(&all, ATTEST, |v| v["fields"]["join_token"] == token_ref);
    assert_eq!(attested["status"], "Ok");
    assert_eq!(attested["fields"]["agent_id"], redacted_agent.as_str());
    // Anonymous: no SPIFFE ID yet, the peer's address instead.
    assert!(attested["caller"]["spiffe_id"].is_null(), "{attested}");
    let address = attested["caller"]["address"].as_str().unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{attested}");
    let attestations: Vec<_> = all.iter().filter(|v| v["method"] == ATTEST).collect();
    assert_eq!(attestations.len(), 3, "two agents and the refused token");

    let banned = record(&all, "/herald.admin.v1.Agents/BanAgent", |v| {
        v["status"] == "Ok"
    });
    assert_admin_caller(banned, pid);
    assert_eq!(banned["fields"]["agent_id"], redacted_agent.as_str());
    let evicted = record(&all, "/herald.admin.v1.Agents/DeleteAgent", |_| true);
    assert_eq!(evicted["status"], "Ok");
    assert_admin_caller(evicted, pid);
    assert!(evicted["fields"]["agent_id"]
        .as_str()
        .unwrap()
        .starts_with("spiffe://example.org/herald/agent/join_token/"));

    let bad = record(&all, "/herald.admin.v1.Agents/BanAgent", |v| {
        v["status"] != "Ok"
    });
    assert_eq!(bad["status"], "InvalidArgument");
    assert_eq!(bad["fields"]["agent_id"], "not-a-spiffe-id");
    assert!(
        bad["message"].as_str().unwrap().contains("SPIFFE ID"),
        "{bad}"
    );

    let denied = record(&all, ATTEST, |v| v["status"] != "Ok");
    assert_eq!(denied["status"], "PermissionDenied");
    assert!(denied["fields"]["join_token"]
        .as_str()
        .unwrap()
        .starts_with("bogu...sha256:"));

    // No secret, key or certificate anywhere; the file is 0600.
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [token.as_str(), bogus, "PRIVATE KEY", "-----BEGIN"] {
        assert!(
            !text.contains(secret),
            "{secret:?} in the audit log:\n{text}"
        );
    }
    let other_token = other.id.path().rsplit('/').next().unwrap().to_string();
    assert!(
        !text.contains(&other_token),
        "the second agent's token:\n{text}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn json_log_lines_of_a_call_carry_the_request_id_of_its_audit_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (toml, path) = audited(tmp.path(), "log_format = \"json\"\n");
    let mut proc = spawn_role("server", &toml.write());
    proc.wait_for_line("server listening", START_TIMEOUT);

    let (header, token) = rt().block_on(async {
        let channel = herald::uds::connect_unix(&toml.admin_socket())
            .await
            .unwrap();
        let response = AgentsClient::new(channel)
            .create_join_token(admin::CreateJoinTokenRequest::default())
            .await
            .expect("CreateJoinToken");
        let header = response
            .metadata()
            .get(REQUEST_ID_HEADER)
            .expect("x-request-id");
        let token = response.get_ref().value.clone();
        (header.to_str().unwrap().to_string(), token)
    });
    // Logged by the handler, inside the call.
    let line = proc.wait_for_line("created a join token", START_TIMEOUT);
    assert!(
        !token.is_empty() && !line.contains(&token),
        "the server's log line names an unused token in full: {line}"
    );
    let logged: Value = serde_json::from_str(&line).expect("a JSON log line");
    let spans = logged["spans"].as_array().expect("the line's spans");
    let request = spans
        .iter()
        .find(|s| s["name"] == "request")
        .expect("the request span");
    let id = request["request_id"].as_str().expect("request_id");

    let all = records(&path);
    let audited = record(&all, "/herald.admin.v1.Agents/CreateJoinToken", |_| true);
    assert_eq!(audited["request_id"], id);
    assert_eq!(header, id, "the caller is told the same id");
    assert_eq!(request["method"], "/herald.admin.v1.Agents/CreateJoinToken");
}

#[test]
fn there_is_no_audit_log_unless_configured_and_a_bad_path_stops_the_start() {
    let server = Server::start_temp();
    server.join_token();
    let mut found = Vec::new();
    let mut dirs = vec![server.dir.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().contains("audit") {
                found.push(p);
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");

    // The path is a directory: refused at start, naming it.
    let tmp = tempfile::tempdir().unwrap();
    let (toml, path) = audited(tmp.path(), "");
    std::fs::create_dir_all(&path).unwrap();
    let out = run_role("server", &toml.write());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

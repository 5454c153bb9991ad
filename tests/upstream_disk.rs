//! A disk upstream authority: the server's CA is an intermediate under a CA
//! read from PEM files (the test fixtures in keys/), workloads get the chain
//! up to it, and the bundle holds the upstream root.

mod harness;

use std::os::unix::fs::PermissionsExt as _;

use harness::cluster::{run_role, Server};
use harness::config::ServerToml;
use harness::openssl::verify_chain;
use harness::workload::fetch_x509_files;

fn fixtures(dir: &std::path::Path, key_mode: u32) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    let cert = dir.join("upstream.pem");
    let key = dir.join("upstream.key");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(root.join("test-upstream-root.pem"), &cert).unwrap();
    std::fs::copy(root.join("test-upstream-root.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(key_mode)).unwrap();
    format!(
        "upstream_authority = \"disk\"\nupstream_cert_path = \"{}\"\nupstream_key_path = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn svids_chain_through_herald_to_the_upstream_root() {
    let dir = tempfile::tempdir().unwrap();
    let extra = fixtures(&dir.path().join("up"), 0o600);
    let server = Server::start(&dir.path().join("server"), &extra);
    // The bundle is the upstream root, exactly.
    let bundle_pem = server.cli_ok(&["bundle", "show", "--format", "pem"]);
    let fixture = std::fs::read_to_string(dir.path().join("up/upstream.pem")).unwrap();
    let b = herald::ca::keys::pem_blocks(&bundle_pem, "CERTIFICATE").unwrap();
    let f = herald::ca::keys::pem_blocks(&fixture, "CERTIFICATE").unwrap();
    assert_eq!(b, f);

    let (agent, agent_id) = server.start_agent(&dir.path().join("agent"));
    server.create_entry("spiffe://example.org/up/web", &agent_id, &[]);
    let out = dir.path().join("out");
    let certs = fetch_x509_files(&agent.socket, &out);
    assert_eq!(certs.len(), 2, "leaf + Herald's intermediate CA");
    let (ok, text) = verify_chain(&out, &certs, "bundle.0.pem");
    assert!(ok, "openssl verify: {text}");
}

#[test]
fn a_loose_upstream_key_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let extra = fixtures(&dir.path().join("up"), 0o644);
    let config = ServerToml::new(&dir.path().join("server"))
        .extra(&extra)
        .write();
    let out = run_role("server", &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("upstream.key") && err.contains("0600"),
        "{err}"
    );
}

#[test]
fn herald_check_watches_the_upstream_root() {
    let dir = tempfile::tempdir().unwrap();
    let extra = fixtures(&dir.path().join("up"), 0o600);
    let server = Server::start(&dir.path().join("server"), &extra);
    let upstream = |horizon: &str| -> Vec<serde_json::Value> {
        let args = ["check", "--output", "json", "--expiry-horizon", horizon];
        let (_, stdout, stderr) = server.cli(&args);
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
        all.into_iter()
            .filter(|f| f["check"] == "upstream_expiry")
            .collect()
    };
    // The fixture root lives ten years: outside a week, inside 20 years.
    assert!(upstream("7d").is_empty());
    let found = upstream("7300d");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["severity"], "error");
    assert_eq!(
        found[0]["object"]["serial"],
        "5dca1418f02b9649df633a7f41802a9b8f1c326c"
    );
}

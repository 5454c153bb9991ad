//! Nested servers: a downstream Herald server in the same trust domain
//! (another cluster) whose CA is signed by an upstream Herald server. Its
//! workloads' SVIDs verify against the upstream's root bundle.

mod harness;

use harness::cluster::{run_role, Server};
use harness::config::ServerToml;
use harness::openssl::verify_chain;
use harness::workload::fetch_x509_files;

fn downstream_config(up: &Server, dir: &std::path::Path, token: &str) -> String {
    let bootstrap = dir.join("upstream-bundle.pem");
    up.bootstrap_pem(&bootstrap);
    format!(
        "upstream_authority = \"herald\"\nupstream_server_address = \"{}\"\nupstream_trust_bundle_path = \"{}\"\nupstream_join_token = \"{token}\"\n",
        up.node_addr,
        bootstrap.display()
    )
}

#[test]
fn a_downstream_server_issues_svids_that_verify_against_the_upstream_root() {
    let dir = tempfile::tempdir().unwrap();
    let up = Server::start(&dir.path().join("up"), "");
    let (token, downstream_id) = up.join_token();
    up.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/cluster/b",
        "--parent-id",
        &downstream_id,
        "--selector",
        "herald:downstream",
        "--downstream",
    ]);
    std::fs::create_dir_all(dir.path().join("down")).unwrap();
    let extra = downstream_config(&up, &dir.path().join("down"), &token);
    let down = Server::start(&dir.path().join("down"), &extra);

    // One trust domain, one root: the downstream publishes the upstream's.
    let up_roots = up.cli_ok(&["bundle", "show", "--format", "pem"]);
    assert_eq!(
        down.cli_ok(&["bundle", "show", "--format", "pem"]),
        up_roots
    );

    let (agent, agent_id) = down.start_agent(&dir.path().join("agent"));
    down.create_entry("spiffe://example.org/cluster-b/web", &agent_id, &[]);
    let out = dir.path().join("out");
    let certs = fetch_x509_files(&agent.socket, &out);
    assert_eq!(
        certs.len(),
        2,
        "leaf + the downstream's CA (signed by the upstream)"
    );
    std::fs::write(out.join("up-roots.pem"), &up_roots).unwrap();
    let (ok, text) = verify_chain(&out, &certs, "up-roots.pem");
    assert!(ok, "openssl verify against the upstream root: {text}");
}

#[test]
fn a_downstream_without_a_downstream_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = Server::start(&dir.path().join("up"), "");
    let (token, _) = up.join_token();
    let ddir = dir.path().join("down");
    std::fs::create_dir_all(&ddir).unwrap();
    let extra = downstream_config(&up, &ddir, &token);
    let config = ServerToml::new(&ddir).extra(&extra).write();
    let out = run_role("server", &config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no entry marked downstream"), "{err}");
}

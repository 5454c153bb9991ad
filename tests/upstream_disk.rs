//! A disk upstream authority: the server's CA is an intermediate under a CA
//! read from PEM files (the test fixtures in keys/), workloads get the chain
//! up to it, and the bundle holds the upstream root.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::cluster::{agent_config, my_uid, start_agent, start_server};

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
    let server = start_server(&dir.path().join("server"), &extra);
    // The bundle is the upstream root, exactly.
    let bundle_pem = server.cli_ok(&["bundle", "show", "--format", "pem"]);
    let fixture = std::fs::read_to_string(dir.path().join("up/upstream.pem")).unwrap();
    let b = herald::ca::keys::pem_blocks(&bundle_pem, "CERTIFICATE").unwrap();
    let f = herald::ca::keys::pem_blocks(&fixture, "CERTIFICATE").unwrap();
    assert_eq!(b, f);

    let (token, agent_id) = server.join_token();
    let agent = start_agent(&agent_config(
        &server,
        &dir.path().join("agent"),
        Some(&token),
    ));
    let uid = format!("unix:uid:{}", my_uid());
    server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/up/web",
        "--parent-id",
        &agent_id,
        "--selector",
        &uid,
    ]);
    let out = dir.path().join("out");
    let certs = common::cluster::fetch_x509_files(&agent.socket, &out);
    assert_eq!(certs.len(), 2, "leaf + Herald's intermediate CA");
    let (ok, text) = common::cluster::openssl_verify_chain(&out, &certs, "bundle.0.pem");
    assert!(ok, "openssl verify: {text}");
}

#[test]
fn a_loose_upstream_key_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let extra = fixtures(&dir.path().join("up"), 0o644);
    let sdir = dir.path().join("server");
    std::fs::create_dir_all(&sdir).unwrap();
    let config = sdir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\ndata_dir = \"{}\"\nbind_address = \"127.0.0.1:0\"\nadmin_socket = \"{}\"\n{extra}",
            sdir.join("data").display(),
            sdir.join("admin.sock").display()
        ),
    )
    .unwrap();
    let out = common::herald()
        .args(["server", "run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("upstream.key") && err.contains("0600"),
        "{err}"
    );
}

//! `herald helper` with real nginx (Debian's package): the helper writes
//! nginx's certificate, key and client-CA bundle and reloads it (SIGHUP via
//! its pid file) on every rotation, while a client with another workload's
//! SVID does mTLS through `openssl s_client` again and again. SVIDs live
//! 8 s, so both sides rotate every few seconds; not one handshake may fail.
//! nginx missing is a failure, never a skip: CI installs it (`.ci/run`).

mod harness;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::bin::{herald, my_uid};
use harness::cluster::Server;
use harness::dirs::free_port;
use harness::process::Proc;
use harness::workload::{client, rt, wait_for_svid};
use herald::ca::keys::{der_to_pem, pem_certs};

/// nginx on the PATH or in /usr/sbin (where Debian puts it, often off a
/// user's PATH); a failure that says how to get it otherwise.
fn nginx() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("nginx is not installed: this test needs it (apt-get install nginx-light; .ci/run does this)")
        })
}

/// A minimal nginx: one TLS server on `port` requiring a client certificate
/// from the bundle the helper writes; it answers with its verdict.
fn nginx_conf(prefix: &Path, certs: &Path, port: u16) -> String {
    let p = prefix.display();
    let c = certs.display();
    format!(
        "worker_processes 1;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {p}/body;\n\
           proxy_temp_path {p}/proxy;\n\
           fastcgi_temp_path {p}/fastcgi;\n\
           uwsgi_temp_path {p}/uwsgi;\n\
           scgi_temp_path {p}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {c}/svid.pem;\n\
             ssl_certificate_key {c}/svid_key.pem;\n\
             ssl_client_certificate {c}/bundle.pem;\n\
             ssl_verify_client on;\n\
             ssl_verify_depth 4;\n\
             location / {{ return 200 \"verify=$ssl_client_verify\\n\"; }}\n\
           }}\n\
         }}\n"
    )
}

/// One mTLS exchange with `openssl s_client` using the client's files;
/// the server's leaf certificate (PEM) on success, the output otherwise.
fn handshake(port: u16, client_dir: &Path) -> Result<String, String> {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(client_dir.join("svid.pem"))
        .arg("-key")
        .arg(client_dir.join("svid_key.pem"))
        .arg("-CAfile")
        .arg(client_dir.join("bundle.pem"))
        .args(["-verify_return_error", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("verify=SUCCESS") {
        return Err(text);
    }
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .ok_or(text.clone())?;
    let end = text.find("-----END CERTIFICATE-----").ok_or(text.clone())?;
    Ok(text[start..end].to_string())
}

#[test]
fn nginx_serves_mtls_with_helper_files_through_rotations() {
    let nginx = nginx();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("server"), "");
    let (agent, agent_id) = server.start_agent(&tmp.path().join("agent"));
    // The helper (the herald binary) is "web"; this test process is "client".
    let herald_bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_herald")).unwrap();
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    for (id, exe) in [("web", &herald_bin), ("client", &me)] {
        let path = format!("unix:path:{}", exe.display());
        server.cli_ok(&[
            "entry",
            "create",
            "--spiffe-id",
            &format!("spiffe://example.org/{id}"),
            "--parent-id",
            &agent_id,
            "--selector",
            &format!("unix:uid:{}", my_uid()),
            "--selector",
            &path,
            "--x509-svid-ttl",
            "8s",
        ]);
    }

    let prefix = tmp.path().join("nginx");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&prefix).unwrap();
    let mut helper = herald();
    helper
        .args(["helper", "--agent-socket"])
        .arg(&agent.socket)
        .arg("--dir")
        .arg(&certs)
        .arg("--pid-file")
        .arg(prefix.join("nginx.pid"))
        .env("HERALD_LOG", "info");
    let mut helper = Proc::spawn("helper", helper);
    helper.wait_for_line("X.509 files updated", Duration::from_secs(30));
    let key_mode = std::fs::metadata(certs.join("svid_key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o600
    );

    let port = free_port();
    std::fs::write(prefix.join("nginx.conf"), nginx_conf(&prefix, &certs, port)).unwrap();
    let mut cmd = Command::new(&nginx);
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"));
    cmd.arg("-c")
        .arg(prefix.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    let _nginx = Proc::spawn("nginx", cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !prefix.join("nginx.pid").exists() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let client_dir = tmp.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let runtime = rt();
    let c = runtime.block_on(client(&agent.socket));
    let mut server_certs = BTreeSet::new();
    let mut client_certs = BTreeSet::new();
    let mut handshakes = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    // Three nginx certificates means two rotations picked up by reload.
    while server_certs.len() < 3 || client_certs.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "after {handshakes} handshakes: {} server and {} client certificates seen\nnginx: {}",
            server_certs.len(),
            client_certs.len(),
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        let svid = runtime.block_on(wait_for_svid(&c));
        let chain: Vec<Vec<u8>> = svid
            .cert_chain()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        std::fs::write(client_dir.join("svid.pem"), pem_certs(&chain)).unwrap();
        std::fs::write(
            client_dir.join("svid_key.pem"),
            der_to_pem(svid.private_key().as_ref(), "PRIVATE KEY"),
        )
        .unwrap();
        std::fs::write(
            client_dir.join("bundle.pem"),
            std::fs::read(certs.join("bundle.pem")).unwrap(),
        )
        .unwrap();
        client_certs.insert(chain[0].clone());
        match handshake(port, &client_dir) {
            Ok(leaf) => {
                server_certs.insert(leaf);
            }
            Err(out) => panic!(
                "handshake {} failed:\n{out}\nnginx: {}\nhelper: {}",
                handshakes + 1,
                std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default(),
                helper.log_text()
            ),
        }
        handshakes += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = helper.log_text();
    assert!(
        log.contains("sent SIGHUP to pid"),
        "the helper never reloaded nginx:\n{log}"
    );
    eprintln!(
        "{handshakes} handshakes, {} nginx certificates, {} client certificates",
        server_certs.len(),
        client_certs.len()
    );
}

//! `herald oidc` with a real OIDC client library: PyJWT reads the
//! discovery document over HTTPS, fetches the JWKS from its `jwks_uri`, and
//! verifies JWT-SVIDs from the agent, before and after a JWT key rotation
//! (a token from the old key still verifies; one from the new key too).
//! The script requires `iss` to equal the discovery document's issuer: the
//! server is started with `jwt_issuer` set to the `--issuer` value.
//! Missing PyJWT is a failure, never a skip: CI installs it (`.ci/run`).

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::bin::herald;
use harness::cluster::{Server, START_TIMEOUT};
use harness::dirs::free_port;
use harness::process::Proc;
use harness::workload::{client, rt, wait_for_svid};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/oidc_verify.py");

/// A self-signed certificate for localhost (the Web PKI identity an
/// operator would configure), made by openssl.
fn web_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join("web.key"))
        .arg("-out")
        .arg(dir.join("web.pem"))
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "1",
        ])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the PyJWT script on `tokens`; its stdout, or its output as the error.
fn pyjwt_verify(issuer: &str, ca: &Path, tokens: &[&str]) -> Result<String, String> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(issuer)
        .arg(ca)
        .arg("db")
        .args(tokens)
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'jwt'"),
        "PyJWT is not installed: pip install 'pyjwt[crypto]' (.ci/run does this)"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}\n{stderr}"))
    }
}

#[test]
fn pyjwt_verifies_jwt_svids_through_discovery_across_a_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    // The server stamps the discovery document's issuer into every token;
    // the script requires `iss` to equal it, as AWS STS and GCP do.
    let server = Server::start(
        &tmp.path().join("server"),
        &format!("jwt_issuer = {issuer:?}\n"),
    );
    let (agent, agent_id) = server.start_agent(&tmp.path().join("agent"));
    server.create_entry("spiffe://example.org/api", &agent_id, &[]);
    web_cert(tmp.path());
    let mut cmd = herald();
    cmd.args(["oidc", "--trust-domain", "example.org", "--issuer", &issuer])
        .arg("--agent-socket")
        .arg(&agent.socket)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(tmp.path().join("web.pem"))
        .arg("--tls-key")
        .arg(tmp.path().join("web.key"));
    let mut oidc = Proc::spawn("oidc", cmd);
    oidc.wait_for_line("listening on", START_TIMEOUT);
    let ca = tmp.path().join("web.pem");

    let runtime = rt();
    let c = runtime.block_on(client(&agent.socket));
    runtime.block_on(wait_for_svid(&c));
    let before = runtime.block_on(c.fetch_jwt_svid(["db"], None)).unwrap();
    // The provider may still be waiting for its first bundle: retry briefly.
    let verify = |tokens: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match pyjwt_verify(&issuer, &ca, tokens) {
                Ok(out) => return out,
                Err(e) if Instant::now() > deadline => {
                    panic!("PyJWT refused: {e}\noidc log: {}", oidc.log_text())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    };
    let out = verify(&[before.token()]);
    assert!(
        out.contains(&format!("ok {} spiffe://example.org/api", before.key_id())),
        "{out}"
    );

    server.cli_ok(&["authority", "prepare", "--kind", "jwt"]);
    server.cli_ok(&["authority", "activate", "--kind", "jwt"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // A new audience set: the agent serves a cached token per set until
    // it nears expiry; "db" is still one of the audiences.
    let after = loop {
        let t = runtime
            .block_on(c.fetch_jwt_svid(["db", "after-rotation"], None))
            .unwrap();
        if t.key_id() != before.key_id() {
            break t;
        }
        assert!(Instant::now() < deadline, "no token from the new key");
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = verify(&[before.token(), after.token()]);
    assert!(out.contains(&format!("ok {} ", before.key_id())), "{out}");
    assert!(out.contains(&format!("ok {} ", after.key_id())), "{out}");
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let out = herald()
        .args([
            "oidc",
            "--trust-domain",
            "example.org",
            "--issuer",
            "https://oidc.example.org",
        ])
        .args([
            "--agent-socket",
            "/nonexistent.sock",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

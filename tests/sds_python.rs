//! Herald's Envoy SDS driven by a client that is not ours (issue 12): the
//! Python script `tests/sds_python/sds_client.py`, on grpcio and the Envoy
//! protos of the xds-protos package, fetches `default` and `ROOTCA` from a
//! real agent, completes mutual TLS between two workloads with Python's ssl
//! module using only what SDS served, and checks that across an X.509 CA
//! rotation the stream delivers the new bundle before the new CA signs.
//!
//! A second test checks the Envoy bootstrap of `deploy/envoy/` against
//! Envoy's own protos (Envoy itself is not installed where the tests run).
//!
//! The Python packages are required, not optional: CI installs them
//! (`.ci/run`), and a missing one fails these tests saying how to install it.

mod harness;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::cluster::Server;

const CLIENT: &str = "spiffe://example.org/py/client";
const SERVER: &str = "spiffe://example.org/py/server";
/// The whole scenario, rotation included, takes well under a minute.
const TIMEOUT: Duration = Duration::from_secs(240);

fn python_deps_present() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import grpc, yaml, envoy.service.secret.v3.sds_pb2_grpc, \
             envoy.extensions.transport_sockets.tls.v3.tls_spiffe_validator_config_pb2",
        ])
        .output()
        .expect("python3 must be installed to run this test");
    assert!(
        out.status.success(),
        "this test needs the Python packages grpcio, xds-protos and pyyaml: \
         python3 -m pip install grpcio xds-protos pyyaml (.ci/run installs them)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_independent_python_client_gets_secrets_completes_mtls_and_follows_a_ca_rotation() {
    python_deps_present();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), "");
    let (agent, agent_id) = server.start_agent(&dir.path().join("agent"));
    // The entry IDs order the two identities when created in the same
    // second: the client's is the caller's default.
    let ttl = ["--x509-svid-ttl", "10s"];
    for (id, entry_id) in [(CLIENT, "a-py-client"), (SERVER, "b-py-server")] {
        let mut extra = vec!["--entry-id", entry_id];
        extra.extend(ttl);
        server.create_entry(id, &agent_id, &extra);
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sds_python/sds_client.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg("run")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--herald", env!("CARGO_BIN_EXE_herald"), "--admin-socket"])
        .arg(&server.admin_socket)
        .args(["--client-id", CLIENT, "--server-id", SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Python SDS client failed ({status:?})\nstdout:\n{out}\nstderr:\n{err}\nagent log:\n{}",
        agent.proc.log_text()
    );
    eprintln!("{out}");
    for step in [
        "fetched default and ROOTCA",
        "mTLS before the rotation",
        "the new bundle arrived while the SVID is still the old CA's",
        "an SVID of the new CA followed",
        "mTLS after the rotation",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
}

#[test]
fn the_envoy_bootstrap_in_deploy_parses_into_envoy_s_protos_and_names_served_secrets() {
    python_deps_present();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tests/sds_python/check_envoy_bootstrap.py"))
        .arg(format!("{root}/deploy/envoy/envoy.yaml"))
        .arg(format!("{root}/deploy/agent.toml"))
        .output()
        .expect("spawn python3");
    assert!(
        out.status.success(),
        "deploy/envoy/envoy.yaml is not a valid bootstrap:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

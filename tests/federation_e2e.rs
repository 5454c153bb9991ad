//! Two real `herald server run` processes federating both ways from their
//! configuration files alone: b.org serves its bundle endpoint with
//! https_spiffe and a.org fetches it (bootstrapped with b.org's bundle);
//! a.org serves https_web with a test Web PKI certificate and b.org fetches
//! it trusting that CA through `federation.web_roots_path`. Each then holds
//! the other's bundle, visible through `herald bundle show --trust-domain`.

mod federation_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use federation_support::WebCa;

/// A `herald server run` process; killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Server {
    /// Starts a server; `None` if this build does not know `[federation]`.
    fn start(dir: &Path, td: &str, federation: &str) -> Option<Server> {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("admin.sock");
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "trust_domain = \"{td}\"\ndata_dir = \"{}\"\nbind_address = \"127.0.0.1:0\"\nadmin_socket = \"{}\"\nlog_level = \"info,herald=debug\"\n{federation}",
                dir.join("data").display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["server", "run", "--config", config.to_str().unwrap()])
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_ADMIN_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn herald server run");
        let mut server = Server {
            child,
            dir: dir.to_path_buf(),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.socket.exists() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = server.log();
                if log.contains("unknown field `federation`") {
                    return None;
                }
                panic!("herald server run exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no admin socket:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn herald(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_ADMIN_SOCKET")
            .output()
            .unwrap()
    }

    /// Waits until `bundle show --trust-domain td` answers; returns the JSON.
    fn wait_for_bundle(&self, td: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let out = self.herald(&["bundle", "show", "--trust-domain", td]);
            if out.status.success() {
                return String::from_utf8(out.stdout).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no bundle of {td}: {}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_servers_federate_from_their_configuration_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = WebCa::new();
    let (port_a, port_b) = (free_port(), free_port());

    // b.org: https_spiffe endpoint; trusts a.org's https_web endpoint
    // through the test web CA.
    let b_federation = format!(
        r#"
[federation]
web_roots_path = "{roots}"

[federation.bundle_endpoint]
address = "127.0.0.1:{port_b}"
profile = "https_spiffe"
refresh_hint = "1m"

[[federation.relationships]]
trust_domain = "a.org"
bundle_endpoint_url = "https://localhost:{port_a}/"
profile = "https_web"
"#,
        roots = ca.ca_path.display()
    );
    let b = Server::start(&tmp.path().join("b"), "b.org", &b_federation)
        .expect("the server configuration takes a [federation] table");
    let out = b.herald(&["bundle", "show"]);
    assert!(out.status.success());
    let bootstrap = tmp.path().join("b.org.json");
    std::fs::write(&bootstrap, &out.stdout).unwrap();

    // a.org: https_web endpoint; federates with b.org's https_spiffe
    // endpoint, bootstrapped with b.org's bundle.
    let a_federation = format!(
        r#"
[federation.bundle_endpoint]
address = "127.0.0.1:{port_a}"
profile = "https_web"
cert_path = "{cert}"
key_path = "{key}"

[[federation.relationships]]
trust_domain = "b.org"
bundle_endpoint_url = "https://127.0.0.1:{port_b}/"
profile = "https_spiffe"
endpoint_spiffe_id = "spiffe://b.org/herald/server"
trust_domain_bundle_path = "{bootstrap}"
"#,
        cert = ca.cert_path.display(),
        key = ca.key_path.display(),
        bootstrap = bootstrap.display()
    );
    let a = Server::start(&tmp.path().join("a"), "a.org", &a_federation).unwrap();

    // a.org fetched b.org's bundle over https_spiffe: the served refresh
    // hint shows it came from the endpoint, not from the bootstrap file.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let json = a.wait_for_bundle("b.org");
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        if doc["spiffe_refresh_hint"] == 60 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refreshed: {json}\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = a.herald(&[
        "federation",
        "show",
        "--trust-domain",
        "b.org",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["refresh_status"]["last_success_at"].as_i64().unwrap() > 0,
        "{doc}"
    );

    // b.org fetched a.org's bundle over https_web; the next retry after
    // a.org came up is at most a few seconds away.
    let json = b.wait_for_bundle("a.org");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let own: serde_json::Value =
        serde_json::from_slice(&a.herald(&["bundle", "show"]).stdout).unwrap();
    assert_eq!(doc["keys"], own["keys"]);
}

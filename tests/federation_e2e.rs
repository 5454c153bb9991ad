//! Two real `herald server run` processes federating both ways from their
//! configuration files alone: b.org serves its bundle endpoint with
//! https_spiffe and a.org fetches it (bootstrapped with b.org's bundle);
//! a.org serves https_web with a test Web PKI certificate and b.org fetches
//! it trusting that CA through `federation.web_roots_path`. Each then holds
//! the other's bundle, visible through `herald bundle show --trust-domain`.

mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::cluster::Server;
use harness::config::ServerToml;
use harness::dirs::free_port;
use harness::web::WebCa;

/// A server of `td` in `dir` with `federation` TOML, logging federation detail.
fn start(dir: &Path, td: &str, federation: &str) -> Server {
    Server::start_with(
        &ServerToml::new(dir)
            .trust_domain(td)
            .log_level("info,herald=debug")
            .extra(federation),
    )
}

/// Waits until `bundle show --trust-domain td` answers; returns the JSON.
fn wait_for_bundle(server: &Server, td: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = server.run(&["bundle", "show", "--trust-domain", td]);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no bundle of {td}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let b = start(&tmp.path().join("b"), "b.org", &b_federation);
    let out = b.run(&["bundle", "show"]);
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
    let a = start(&tmp.path().join("a"), "a.org", &a_federation);

    // a.org fetched b.org's bundle over https_spiffe: the served refresh
    // hint shows it came from the endpoint, not from the bootstrap file.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let json = wait_for_bundle(&a, "b.org");
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        if doc["spiffe_refresh_hint"] == 60 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refreshed: {json}\n{}",
            a.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = a.run(&[
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
    let json = wait_for_bundle(&b, "a.org");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let own: serde_json::Value =
        serde_json::from_slice(&a.run(&["bundle", "show"]).stdout).unwrap();
    assert_eq!(doc["keys"], own["keys"]);
}

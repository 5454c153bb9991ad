//! Re-bootstrapping without an operator (issue 11, SPIRE #4624): while an
//! x509pop agent is stopped, its trust domain's server is replaced by one
//! with a new CA (a fresh data directory on the same address), so the
//! bundle the agent saved validates no server and the server no longer
//! knows the agent's SVID. Restarted with `[rebootstrap]`, the agent keeps
//! serving what it saved, logs that servers fail validation, waits out the
//! safety delay, says loudly that it re-bootstraps, reads the roots from
//! the source (a PEM file; or a SPIFFE bundle over HTTPS with a test Web
//! PKI), attests again, and its workload gets an SVID of the new CA. The
//! same when its own SVID is gone too: it re-bootstraps before starting.
//!
//! Real processes: `herald server run`, `herald agent run`, the `spiffe`
//! crate as the workload. No wall-clock assertion: the agent reports how
//! long servers failed validation, and that is checked against the delay.

mod harness;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::cluster::{Agent, Server};
use harness::config::ServerToml;
use harness::dirs::{free_port, temp_dir};
use harness::ops::{loopback, ops_table, scrape, value};
use harness::web::{serve_with, WebCa};
use harness::workload::{client, next_svid_where, rt, wait_for_svid};
use herald::x509pop::test_pki::{TestCa, TestPki};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::AsyncWriteExt as _;

const WAIT: Duration = Duration::from_secs(60);
const DELAY_SECS: f64 = 3.0;

/// A server of example.org on `addr` in `dir`, trusting `root` for x509pop.
fn server(dir: &Path, addr: &str, root: &TestCa) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let roots = dir.join("machine-roots.pem");
    std::fs::write(&roots, root.pem()).unwrap();
    Server::start_with(&ServerToml::new(dir).bind_address(addr).extra(&format!(
        "[node_attestors.x509pop]\nca_bundle_path = \"{}\"\n",
        roots.display()
    )))
}

/// Whether `svid` chains to `server`'s current bundle.
fn chains_to(svid: &spiffe::X509Svid, server: &Server) -> bool {
    let roots = herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap();
    let chain = svid.cert_chain();
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_ref()))
        .collect();
    herald::tls::verify_svid(
        &CertificateDer::from(chain[0].as_ref()),
        &intermediates,
        &roots,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
    )
    .is_ok()
}

/// Where the agent reads the roots again, filled once the new server runs.
enum Source {
    File,
    /// An HTTPS bundle endpoint under a test Web PKI.
    Https(WebCa),
}

/// An HTTPS endpoint under `web` answering every request with what `body`
/// holds then (an HTTP response, written by the test).
async fn endpoint(web: &WebCa, body: Arc<Mutex<Vec<u8>>>) -> std::net::SocketAddr {
    serve_with(web.server_config(), move |mut tls| {
        let answer = body.lock().unwrap().clone();
        async move {
            let _ = tls.write_all(&answer).await;
            let _ = tls.shutdown().await;
        }
    })
    .await
}

/// The scenario; with `lose_credential`, the agent's own SVID is gone too
/// (as if it had expired), so it re-bootstraps before it can start.
fn rebootstrap_recovers_from(source: Source, lose_credential: bool) {
    let dir = temp_dir("h-rebootstrap-");
    let TestPki {
        root,
        inter,
        machine,
    } = TestPki::new("machines", "node-1", "node-1.example.net").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let old = server(&dir.path().join("old"), &addr, &root);

    // The agent: x509pop, and [rebootstrap] naming the source.
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let (cert, key, chain) = (
        agent_dir.join("machine.pem"),
        agent_dir.join("machine.key"),
        agent_dir.join("intermediates.pem"),
    );
    std::fs::write(
        &cert,
        herald::ca::pem::der_to_pem(&machine.leaf, "CERTIFICATE"),
    )
    .unwrap();
    std::fs::write(&key, &machine.key_pem).unwrap();
    std::fs::write(&chain, inter.pem()).unwrap();
    let runtime = rt();
    let source_file = dir.path().join("roots.pem");
    let served = Arc::new(Mutex::new(Vec::new()));
    let rebootstrap = match &source {
        Source::File => format!("bundle_path = \"{}\"\n", source_file.display()),
        Source::Https(web) => {
            let at = runtime.block_on(endpoint(web, served.clone()));
            format!(
                "bundle_url = \"https://localhost:{}/bundle\"\nweb_roots_path = \"{}\"\n",
                at.port(),
                web.ca_path.display()
            )
        }
    };
    let agent_ops = loopback();
    let config = old
        .agent_toml(&agent_dir, None)
        .extra(&format!(
            "[node_attestor.x509pop]\ncertificate_path = \"{}\"\nprivate_key_path = \"{}\"\nintermediates_path = \"{}\"\n\
             [rebootstrap]\n{rebootstrap}delay = \"{DELAY_SECS}s\"\n{}",
            cert.display(),
            key.display(),
            chain.display(),
            ops_table(agent_ops),
        ))
        .write();
    let mut agent = Agent::start(&config);
    let agent_id = format!(
        "spiffe://example.org/herald/agent/x509pop/{}",
        herald::x509pop::fingerprint(&machine.leaf)
    );
    old.create_entry("spiffe://example.org/rebootstrap/web", &agent_id, &[]);
    let before = runtime.block_on(async { wait_for_svid(&client(&agent.socket).await).await });
    assert!(chains_to(&before, &old));

    // While the agent is stopped, the server is replaced: new data, new CA,
    // same address. The source gets the new roots.
    assert!(agent.proc.stop().is_some_and(|s| s.success()));
    if lose_credential {
        for f in ["agent_svid.pem", "agent_svid.key"] {
            std::fs::remove_file(agent_dir.join("data").join(f)).unwrap();
        }
    }
    let mut old = old;
    old.proc.kill();
    let new = server(&dir.path().join("new"), &addr, &root);
    new.create_entry("spiffe://example.org/rebootstrap/web", &agent_id, &[]);
    match &source {
        Source::File => new.bootstrap_pem(&source_file),
        Source::Https(_) => {
            let body = new.cli_ok(&["bundle", "show"]);
            *served.lock().unwrap() = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
    }
    assert!(!chains_to(&before, &new), "the new CA does not know it");

    let mut agent = Agent::start(&config);
    // Logged before "agent running", which starting the agent waited for.
    agent
        .proc
        .first_line("does not chain to the saved trust bundle", WAIT);
    // Without a credential, all this happens before "agent running".
    let (_, loud) = agent.proc.first_line("RE-BOOTSTRAPPING TRUST", WAIT);
    assert!(loud.contains("ERROR"), "{loud}");
    let untrusted_for: f64 = loud
        .split("untrusted_for=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no untrusted_for in {loud}"));
    assert!(
        untrusted_for >= DELAY_SECS,
        "re-bootstrapped after {untrusted_for}s: {loud}"
    );
    agent
        .proc
        .first_line("re-bootstrapped trust from the source", WAIT);
    agent.proc.first_line("attested with x509pop", WAIT);

    let after = runtime.block_on(async {
        let c = client(&agent.socket).await;
        let mut s = c.stream_x509_svids().await.unwrap();
        next_svid_where(&mut s, WAIT, "no SVID of the new CA", |s| {
            chains_to(s, &new)
        })
        .await
    });
    assert_eq!(
        after.spiffe_id().to_string(),
        "spiffe://example.org/rebootstrap/web"
    );
    let shown = new.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(shown["attestation_type"], "x509pop", "{shown}");
    let samples = scrape(agent_ops);
    assert_eq!(
        value(&samples, "herald_agent_rebootstraps_total", &[]),
        Some(1.0)
    );
}

#[test]
fn an_agent_re_bootstraps_from_a_bundle_file() {
    rebootstrap_recovers_from(Source::File, false);
}

#[test]
fn an_agent_without_a_valid_svid_re_bootstraps_before_it_starts() {
    rebootstrap_recovers_from(Source::File, true);
}

#[test]
fn an_agent_re_bootstraps_from_an_https_bundle_endpoint() {
    rebootstrap_recovers_from(Source::Https(WebCa::new()), false);
}

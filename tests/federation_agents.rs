//! Federation end to end: two trust domains, each a real server and agent,
//! federated both ways over https_spiffe. A workload of a.org and one of
//! b.org complete mutual TLS using their SVIDs and the federated bundles
//! (each checking the other's SPIFFE ID), and keep doing so after b.org
//! rotates its CA, with no restart and no manual refresh.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::bin::my_uid;
use harness::cluster::{Agent, Server};
use harness::config::ServerToml;
use harness::dirs::free_port;
use harness::workload::{client, rt};
use herald::spiffe::SpiffeId;
use herald::tls::{OptionalSvidClientVerifier, Roots, ServerIdVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use spiffe::WorkloadApiClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn endpoint(port: u16) -> String {
    format!("[federation.bundle_endpoint]\naddress = \"127.0.0.1:{port}\"\nprofile = \"https_spiffe\"\nrefresh_hint = \"10s\"\n")
}

/// `from` federates with `to`: bootstrap bundle from `to`, endpoint on `port`.
fn federate(from: &Server, to: &Server, port: u16, dir: &std::path::Path) {
    let json = to.cli_ok(&["bundle", "show"]);
    let file = dir.join(format!("{}-bootstrap.json", to.td));
    std::fs::write(&file, json).unwrap();
    from.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        &to.td,
        "--bundle-endpoint-url",
        &format!("https://127.0.0.1:{port}/"),
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        &format!("spiffe://{}/herald/server", to.td),
        "--trust-domain-bundle",
        file.to_str().unwrap(),
    ]);
}

struct Domain {
    server: Server,
    agent: Agent,
    agent_id: String,
}

fn domain(dir: &std::path::Path, td: &str, port: u16) -> Domain {
    let server = Server::start_with(
        &ServerToml::new(&dir.join(td))
            .trust_domain(td)
            .extra("default_x509_svid_ttl = \"10s\"\n")
            .extra(&endpoint(port)),
    );
    let (agent, agent_id) = server.start_agent(&dir.join(format!("{td}-agent")));
    Domain {
        server,
        agent,
        agent_id,
    }
}

/// The workload's SVID, key and the bundle of `peer_td`, once present.
async fn material(
    c: &WorkloadApiClient,
    peer_td: &str,
    min_peer_roots: usize,
) -> (spiffe::X509Svid, Vec<Vec<u8>>) {
    let td = spiffe::TrustDomain::new(peer_td).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ctx) = c.fetch_x509_context().await {
            if let (Some(svid), Some(b)) = (ctx.default_svid(), ctx.bundle_set().get(&td)) {
                let roots: Vec<Vec<u8>> = b
                    .authorities()
                    .iter()
                    .map(|c| c.as_ref().to_vec())
                    .collect();
                if roots.len() >= min_peer_roots {
                    return ((**svid).clone(), roots);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no SVID with a {peer_td} bundle of {min_peer_roots}+ roots"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn chain_and_key(
    svid: &spiffe::X509Svid,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        svid.cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_ref().to_vec()))
            .collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            svid.private_key().as_ref().to_vec(),
        )),
    )
}

/// One mutual-TLS exchange: `server_svid` serves, trusting `client_roots`
/// and requiring `client_id`; `client_svid` connects, trusting
/// `server_roots` and requiring `server_id`.
async fn mtls(
    server_svid: &spiffe::X509Svid,
    client_roots: Vec<Vec<u8>>,
    client_id: &str,
    client_svid: &spiffe::X509Svid,
    server_roots: Vec<Vec<u8>>,
    server_id: &str,
) -> Result<(), String> {
    let (chain, key) = chain_and_key(server_svid);
    let server_cfg = rustls::ServerConfig::builder_with_provider(herald::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(OptionalSvidClientVerifier::new(Roots::new(
            client_roots,
        ))))
        .with_single_cert(chain, key)
        .unwrap();
    let (chain, key) = chain_and_key(client_svid);
    let client_cfg = rustls::ClientConfig::builder_with_provider(herald::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerIdVerifier::new(
            Roots::new(server_roots),
            SpiffeId::parse(server_id).unwrap(),
            false,
        )))
        .with_client_auth_cert(chain, key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let want_client = client_id.to_string();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("server side: {e}"))?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("client sent no certificate")?
            .to_vec();
        let id = herald::tls::spiffe_id_of(&peer[0]).map_err(|e| e.to_string())?;
        if id.as_str() != want_client {
            return Err(format!("client is {id}, expected {want_client}"));
        }
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let mut tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("client side: {e}"))?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    server.await.map_err(|e| e.to_string())??;
    if &buf != b"pong" {
        return Err("wrong reply".into());
    }
    Ok(())
}

fn issuer(svid: &spiffe::X509Svid) -> Vec<u8> {
    herald::ca::x509::cert_facts(svid.leaf().as_ref())
        .unwrap()
        .authority_key_id
        .unwrap()
}

#[test]
fn workloads_of_two_trust_domains_complete_mtls_across_a_ca_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = domain(dir.path(), "a.org", pa);
    let b = domain(dir.path(), "b.org", pb);
    federate(&a.server, &b.server, pb, dir.path());
    federate(&b.server, &a.server, pa, dir.path());
    let uid = format!("unix:uid:{}", my_uid());
    // Entries may federate only with trust domains whose bundle is held.
    let create = |d: &Domain, id: &str, with: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, _, err) = d.server.cli(&[
                "entry",
                "create",
                "--spiffe-id",
                id,
                "--parent-id",
                &d.agent_id,
                "--selector",
                &uid,
                "--federates-with",
                with,
                "--x509-svid-ttl",
                "10s",
            ]);
            if code == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "entry {id}: {err}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    create(&a, "spiffe://a.org/web", "b.org");
    create(&b, "spiffe://b.org/api", "a.org");

    rt().block_on(async {
        let ca = client(&a.agent.socket).await;
        let cb = client(&b.agent.socket).await;
        let (svid_a, b_roots_at_a) = material(&ca, "b.org", 1).await;
        let (svid_b, a_roots_at_b) = material(&cb, "a.org", 1).await;
        mtls(
            &svid_a,
            b_roots_at_a,
            "spiffe://b.org/api",
            &svid_b,
            a_roots_at_b.clone(),
            "spiffe://a.org/web",
        )
        .await
        .expect("mutual TLS across trust domains");

        // A workload that federates with nobody must fail: b.org's SVID
        // against a.org's own roots.
        let a_own: Vec<Vec<u8>> = svid_a
            .cert_chain()
            .iter()
            .skip(1)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let own_roots = if a_own.is_empty() {
            a_roots_at_b.clone()
        } else {
            a_own
        };
        assert!(
            mtls(
                &svid_a,
                own_roots,
                "spiffe://b.org/api",
                &svid_b,
                a_roots_at_b.clone(),
                "spiffe://a.org/web"
            )
            .await
            .is_err(),
            "b.org's SVID must not verify against a.org's roots"
        );

        // b.org rotates: the new CA is published, a.org picks up b.org's new
        // bundle by itself (refresh hint), then b.org activates it.
        let old_issuer = issuer(&svid_b);
        b.server.cli_ok(&["authority", "prepare", "--kind", "x509"]);
        let (_, b_roots_at_a) = material(&ca, "b.org", 2).await;
        assert_eq!(b_roots_at_a.len(), 2);
        b.server
            .cli_ok(&["authority", "activate", "--kind", "x509"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let new_b = loop {
            let (s, _) = material(&cb, "a.org", 1).await;
            if issuer(&s) != old_issuer {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "b.org's workload never got an SVID from the new CA"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let (svid_a, b_roots_at_a) = material(&ca, "b.org", 2).await;
        mtls(
            &svid_a,
            b_roots_at_a,
            "spiffe://b.org/api",
            &new_b,
            a_roots_at_b,
            "spiffe://a.org/web",
        )
        .await
        .expect("mutual TLS with b.org's SVID from its new CA");

        // Ending the relationship takes b.org's bundle off a.org's workload streams.
        a.server
            .cli_ok(&["federation", "delete", "--trust-domain", "b.org"]);
        let td_b = spiffe::TrustDomain::new("b.org").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ctx = ca.fetch_x509_context().await.unwrap();
            if ctx.bundle_set().get(&td_b).is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b.org's bundle is still served after the relationship was deleted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

//! The connector against real sockets: a closed port, a TLS server
//! under other roots, and the TLS configurations it builds.

use super::*;
use crate::ca::x509::{SvidRequest, X509Authority};
use crate::ca::KeyType;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn connector(addr: SocketAddr) -> ServerConnector {
    ServerConnector::new(addr, &td(), Roots::default(), false).unwrap()
}

fn credential() -> AgentCredential {
    svid("/agent")
}

/// An SVID for `path` under a CA of its own.
fn svid(path: &str) -> AgentCredential {
    let now = crate::clock::now_unix();
    let ca_key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let ca = X509Authority::self_signed(&td(), ca_key, 3_600, now).unwrap();
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spiffe_id = SpiffeId::new(&td(), path).unwrap();
    let leaf = ca
        .sign_svid(
            &SvidRequest {
                spiffe_id: &spiffe_id,
                public_key_spki: &key.public_key_spki(),
                ttl_secs: 600,
                dns_names: &[],
            },
            now,
        )
        .unwrap();
    AgentCredential {
        spiffe_id,
        chain: leaf.chain,
        key: Arc::new(key),
        not_after: leaf.not_after,
    }
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error_naming_the_address() {
    // Bind, note the port, close it: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = connector(addr).anonymous().await.unwrap_err();
    match &err {
        NodeClientError::Connect { addr: named, .. } => assert_eq!(*named, addr),
        other => panic!("expected a Connect error, got {other:?}"),
    }
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the transport error is kept"
    );
    let err = connector(addr)
        .authenticated(&credential())
        .await
        .unwrap_err();
    assert!(matches!(err, NodeClientError::Connect { .. }), "{err:?}");
}

/// A TLS server presenting `svid` on a loopback port, answering every
/// handshake it can (and nothing after).
async fn tls_server(svid: &AgentCredential) -> SocketAddr {
    let (chain, key) = certified_key(&svid.chain, svid.key.pkcs8_der());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { drop(acceptor.accept(tcp).await) });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_under_other_roots_is_untrusted_a_closed_port_is_not() {
    let server = svid("/herald/server");
    let addr = tls_server(&server).await;
    // Our roots are another CA's: the server's certificate does not chain.
    let stale = Roots::new(vec![credential().chain[0].clone()]);
    let c = ServerConnector::new(addr, &td(), stale, false).unwrap();
    let err = c.anonymous().await.unwrap_err();
    assert!(err.server_untrusted(), "{}", Chain(&err));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let err = connector(closed_addr).anonymous().await.unwrap_err();
    assert!(!err.server_untrusted(), "{}", Chain(&err));

    // A round over both reports the untrusted server, whichever came
    // last, and no connection is remembered.
    let stale = Roots::new(vec![credential().chain[0].clone()]);
    let both = vec![addr.into(), closed_addr.into()];
    let c = ServerConnector::with_targets(both, &td(), stale, false).unwrap();
    assert!(c.anonymous().await.unwrap_err().server_untrusted());
    assert_eq!(c.current(), None);
}

#[test]
fn only_the_authenticated_config_presents_the_credential() {
    let c = connector("127.0.0.1:1".parse().unwrap());
    let anonymous = c.tls_config(None).unwrap();
    assert!(!anonymous.client_auth_cert_resolver.has_certs());
    assert_eq!(anonymous.alpn_protocols, [b"h2".to_vec()]);

    let cred = credential();
    let authenticated = c.tls_config(Some(&cred)).unwrap();
    assert!(authenticated.client_auth_cert_resolver.has_certs());
    assert_eq!(authenticated.alpn_protocols, [b"h2".to_vec()]);
    let schemes = [rustls::SignatureScheme::ECDSA_NISTP256_SHA256];
    let presented = authenticated
        .client_auth_cert_resolver
        .resolve(&[], &schemes)
        .expect("a client certificate is offered");
    let chain: Vec<Vec<u8>> = presented.cert.iter().map(|c| c.to_vec()).collect();
    assert_eq!(chain, cred.chain);
}

#[test]
fn the_server_id_is_the_trust_domain_s_herald_server() {
    let c = connector("127.0.0.1:1".parse().unwrap());
    assert_eq!(c.server_id.as_str(), "spiffe://example.org/herald/server");
}

/// Connections leave from the bound local address (the server sees that
/// address as the peer), and from the system's choice otherwise.
#[tokio::test]
async fn a_bound_local_address_is_the_peer_the_server_sees() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let mut peers = Vec::new();
        for _ in 0..2 {
            // Dropped at once: the TLS handshake fails, the peer is known.
            let (_tcp, peer) = listener.accept().await.unwrap();
            peers.push(peer.ip());
        }
        peers
    });
    let local: IpAddr = "127.0.0.3".parse().unwrap();
    assert!(connector(addr).bind_local(local).anonymous().await.is_err());
    assert!(connector(addr).anonymous().await.is_err());
    let peers = accept.await.unwrap();
    assert_eq!(peers[0], local);
    assert_eq!(peers[1], IpAddr::from([127, 0, 0, 1]));
}

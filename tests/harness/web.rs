//! What the federation tests need around the bundle endpoint: a test Web
//! PKI CA with a `localhost` leaf, a raw HTTPS server that answers
//! whatever a test wants, a tiny HTTPS client for the endpoint's status
//! codes, and federation relationships and bundles to compare. All on
//! loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald::server::federation::WebRoots;
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use herald::store::{BundleEndpointProfile, FederationRelationship};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A TLS server config with Herald's crypto provider presenting `chain`.
pub fn tls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(herald::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// A test Web PKI: a self-signed CA and a leaf for DNS name `localhost`,
/// written as PEM files.
pub struct WebCa {
    pub dir: tempfile::TempDir,
    pub ca_der: Vec<u8>,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

impl WebCa {
    pub fn new() -> WebCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyUsagePurpose,
        };
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Herald test web CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("web-ca.pem");
        let cert_path = dir.path().join("endpoint.crt");
        let key_path = dir.path().join("endpoint.key");
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        std::fs::write(&cert_path, leaf_cert.pem()).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        WebCa {
            dir,
            ca_der: ca_cert.der().to_vec(),
            ca_path,
            cert_path,
            key_path,
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    }

    pub fn roots(&self) -> WebRoots {
        WebRoots::from_ders(std::slice::from_ref(&self.ca_der)).unwrap()
    }

    /// A TLS server config presenting the `localhost` leaf.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        tls_server_config(
            vec![CertificateDer::from(self.leaf_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
        )
    }
}

/// An HTTPS server that answers every request with `response` (raw bytes,
/// status line included).
pub async fn serve_raw(config: Arc<rustls::ServerConfig>, response: Vec<u8>) -> SocketAddr {
    let response = Arc::new(response);
    serve_with(config, move |mut tls| {
        let response = response.clone();
        async move {
            let _ = tls.write_all(&response).await;
            let _ = tls.shutdown().await;
        }
    })
    .await
}

/// An HTTPS server that reads each request's head, then hands the
/// connection to `answer`.
pub async fn serve_with<F, Fut>(config: Arc<rustls::ServerConfig>, answer: F) -> SocketAddr
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                answer(tls).await;
            });
        }
    });
    addr
}

/// Sends a raw request over TLS (trusting `roots`, naming `localhost`) and
/// returns the raw response.
pub async fn raw_request(
    addr: SocketAddr,
    roots: &[Vec<u8>],
    versions: &[&'static rustls::SupportedProtocolVersion],
    request: &str,
) -> String {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.clone())).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(herald::tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8(out).unwrap()
}

pub fn web_relationship(td: &str, url: String) -> FederationRelationship {
    FederationRelationship {
        trust_domain: TrustDomain::new(td).unwrap(),
        bundle_endpoint_url: url,
        profile: BundleEndpointProfile::HttpsWeb,
    }
}

pub fn spiffe_relationship(td: &str, url: String, endpoint_id: &str) -> FederationRelationship {
    FederationRelationship {
        trust_domain: TrustDomain::new(td).unwrap(),
        bundle_endpoint_url: url,
        profile: BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: SpiffeId::parse(endpoint_id).unwrap(),
        },
    }
}

/// The same authorities, in any order.
pub fn same_keys(a: &Bundle, b: &Bundle) -> bool {
    let mut ax = a.x509_authorities.clone();
    let mut bx = b.x509_authorities.clone();
    ax.sort();
    bx.sort();
    let kids = |x: &Bundle| {
        let mut v: Vec<(String, Vec<u8>)> = x
            .jwt_authorities
            .iter()
            .map(|j| (j.key_id.clone(), j.public_key.clone()))
            .collect();
        v.sort();
        v
    };
    ax == bx && kids(a) == kids(b)
}

/// Polls `f` every 50 ms until it is true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

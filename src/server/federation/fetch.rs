//! One fetch of a foreign trust domain's bundle from its bundle endpoint
//! (SPIFFE.md §5.4), with either profile:
//!
//! - `https_spiffe`: the endpoint's certificate must be an X509-SVID that
//!   chains to the bundle of the endpoint ID's trust domain, and carry
//!   exactly the configured endpoint SPIFFE ID. For a self-serving endpoint
//!   that bundle is the one being fetched: the stored one (the operator's
//!   bootstrap bundle the first time, then the latest fetched), so the peer
//!   can rotate its roots without breaking the relationship.
//! - `https_web`: Web PKI validation of the URL's host against
//!   [`WebRoots`].
//!
//! Redirects are followed (at most [`MAX_REDIRECTS`]) only to URLs valid
//! for the profile, with the same checks. The body must be a SPIFFE bundle
//! for the relationship's trust domain with at least one authority. Nothing
//! here writes anything: the caller decides what to keep.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tracing::Instrument as _;

use super::http::{self, EndpointUrl, HttpError, UrlError};
use super::{bundle_trust_domain_check, FederationError, WrongTrustDomain};
use crate::server::state::ServerState;
use crate::spiffe::{Bundle, BundleError, SpiffeId, TrustDomain};
use crate::store::{BundleEndpointProfile, FederationRelationship};
use crate::tls::{provider, verify_svid, PeerError};

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 3;

/// Where the system's trusted roots are looked for, in order, after the
/// `SSL_CERT_FILE` environment variable (the paths of Debian/Ubuntu,
/// Fedora/RHEL, openSUSE and Alpine).
const SYSTEM_ROOT_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchFailure {
    /// The relationship's URL breaks the profile rules.
    #[error("bad URL: {0}")]
    BadUrl(#[from] UrlError),
    /// No TCP connection (DNS, refused, no route).
    #[error("unreachable: {0}")]
    Unreachable(#[source] std::io::Error),
    /// The whole exchange took too long.
    #[error("no complete answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The endpoint's certificate does not validate for the profile.
    #[error("the endpoint's certificate is not trusted: {0}")]
    UntrustedCertificate(String),
    /// `https_spiffe`: the SVID names another identity.
    #[error("the endpoint presented {found}, but the relationship expects {expected}")]
    WrongSpiffeId {
        /// The SPIFFE ID in the endpoint's SVID.
        found: SpiffeId,
        /// The configured endpoint SPIFFE ID.
        expected: SpiffeId,
    },
    /// `https_spiffe`: nothing to authenticate the endpoint with.
    #[error(
        "no bundle of {trust_domain} is stored to authenticate the https_spiffe endpoint; {hint}"
    )]
    NoEndpointBundle {
        /// The endpoint ID's trust domain.
        trust_domain: TrustDomain,
        /// What the operator can do.
        hint: &'static str,
    },
    /// `https_web`: there are no Web PKI roots at all.
    #[error(
        "no Web PKI roots are configured (no system roots found and no federation web_roots_path)"
    )]
    NoWebRoots,
    /// Something other than 200 (after redirects).
    #[error("the endpoint answered HTTP {0}")]
    HttpStatus(u16),
    /// The answer is not usable HTTP/1.x.
    #[error("{0}")]
    Http(String),
    /// A redirect that cannot be followed.
    #[error("redirect refused: {0}")]
    Redirect(String),
    /// The body is not a SPIFFE bundle.
    #[error("the endpoint served a malformed SPIFFE bundle: {0}")]
    MalformedBundle(#[source] BundleError),
    /// The bundle's authorities belong to another trust domain.
    #[error("the endpoint served a bundle of another trust domain: {0}")]
    WrongTrustDomain(#[source] WrongTrustDomain),
    /// A bundle with no key at all would make every SVID of the trust
    /// domain untrusted; it is refused rather than replacing a good one.
    #[error("the endpoint served a bundle with no authorities; it is not used")]
    EmptyBundle,
    /// Looking up the endpoint's trust bundle failed.
    #[error("datastore failure: {0}")]
    Store(String),
}

/// A failed fetch: which relationship, which URL, and why.
#[derive(Debug, thiserror::Error)]
#[error("federation with {trust_domain}: bundle endpoint {url}: {reason}")]
pub struct FetchError {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// The URL fetched (the last one, after redirects).
    pub url: String,
    /// What went wrong.
    pub reason: FetchFailure,
}

// === impl WebRoots ===

/// The roots `https_web` endpoints are validated against.
#[derive(Debug, Clone)]
pub struct WebRoots(Arc<RootCertStore>);

impl WebRoots {
    /// No roots: every `https_web` fetch fails with a clear error.
    pub fn empty() -> Self {
        WebRoots(Arc::new(RootCertStore::empty()))
    }

    /// The system roots plus, if given, every certificate of the PEM file
    /// `extra` (the `federation.web_roots_path` key). A missing system
    /// bundle is logged, not fatal; a bad `extra` file is an error.
    pub fn load(extra: Option<&Path>) -> Result<Self, FederationError> {
        let mut store = RootCertStore::empty();
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(SYSTEM_ROOT_FILES.iter().map(std::path::PathBuf::from))
            .find(|p| p.is_file());
        match &system {
            Some(path) => match std::fs::read(path) {
                Ok(pem) => {
                    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                    let (added, ignored) = store.add_parsable_certificates(certs);
                    tracing::debug!(path = %path.display(), added, ignored, "system web roots loaded");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the system web roots")
                }
            },
            None => tracing::warn!(
                "no system web roots found (set SSL_CERT_FILE); https_web federation uses only federation.web_roots_path"
            ),
        }
        if let Some(path) = extra {
            for der in read_pem_certs(path, "federation web roots")? {
                store.add(der).map_err(|e| FederationError::File {
                    what: "federation web roots",
                    path: path.to_path_buf(),
                    reason: format!("a certificate is not a usable root: {e}"),
                })?;
            }
        }
        Ok(WebRoots(Arc::new(store)))
    }

    /// Exactly the certificates (DER) given; for tests and private setups.
    pub fn from_ders(ders: &[Vec<u8>]) -> Result<Self, FederationError> {
        let mut store = RootCertStore::empty();
        for der in ders {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| FederationError::Tls(format!("not a usable web root: {e}")))?;
        }
        Ok(WebRoots(Arc::new(store)))
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no roots.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every certificate of a PEM file; at least one.
pub(super) fn read_pem_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, FederationError> {
    let file_error = |reason: String| FederationError::File {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error("holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

// === fetching ===

/// Fetches `rel`'s bundle once, looking up the `https_spiffe` roots in
/// `state`: this server's own bundle if the endpoint ID is in our trust
/// domain, else the stored bundle of the endpoint ID's trust domain.
pub async fn fetch_for_relationship(
    state: &ServerState,
    rel: &FederationRelationship,
    web_roots: &WebRoots,
    timeout: Duration,
) -> Result<Bundle, FetchError> {
    let roots = match endpoint_roots(state, rel).await {
        Ok(roots) => roots,
        Err(reason) => {
            return Err(FetchError {
                trust_domain: rel.trust_domain.clone(),
                url: rel.bundle_endpoint_url.clone(),
                reason,
            })
        }
    };
    fetch_bundle(rel, &roots, web_roots, timeout).await
}

async fn endpoint_roots(
    state: &ServerState,
    rel: &FederationRelationship,
) -> Result<Vec<Vec<u8>>, FetchFailure> {
    let BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } = &rel.profile else {
        return Ok(Vec::new());
    };
    let td = endpoint_spiffe_id.trust_domain().clone();
    if td == state.trust_domain {
        return Ok(state.authorities().bundle().x509_authorities.clone());
    }
    let self_serving = td == rel.trust_domain;
    let lookup = td.clone();
    match state.with_store(move |s| s.get_bundle(&lookup)).await {
        Ok(Some(bundle)) if !bundle.x509_authorities.is_empty() => Ok(bundle.x509_authorities),
        Ok(_) => Err(FetchFailure::NoEndpointBundle {
            trust_domain: td,
            hint: if self_serving {
                "set it with `herald bundle set`, or give the relationship a trust_domain_bundle"
            } else {
                "federate with that trust domain too, or set its bundle with `herald bundle set`"
            },
        }),
        Err(e) => Err(FetchFailure::Store(e.to_string())),
    }
}

/// Fetches `rel`'s bundle once. `spiffe_roots` are the DER roots of the
/// endpoint ID's trust domain (`https_spiffe`); `web_roots` serve
/// `https_web`. The whole exchange, redirects included, is bounded by
/// `timeout`.
pub async fn fetch_bundle(
    rel: &FederationRelationship,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
    timeout: Duration,
) -> Result<Bundle, FetchError> {
    let span = tracing::info_span!(
        "federation.fetch",
        trust_domain = %rel.trust_domain,
        url = %rel.bundle_endpoint_url
    );
    let mut last_url = rel.bundle_endpoint_url.clone();
    let result = match tokio::time::timeout(
        timeout,
        fetch_inner(rel, spiffe_roots, web_roots, &mut last_url).instrument(span.clone()),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(FetchFailure::Timeout(timeout)),
    };
    let _entered = span.enter();
    match result {
        Ok(bundle) => {
            tracing::debug!(
                sequence = bundle.sequence,
                x509_authorities = bundle.x509_authorities.len(),
                jwt_authorities = bundle.jwt_authorities.len(),
                "bundle fetched"
            );
            Ok(bundle)
        }
        Err(reason) => Err(FetchError {
            trust_domain: rel.trust_domain.clone(),
            url: last_url,
            reason,
        }),
    }
}

async fn fetch_inner(
    rel: &FederationRelationship,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
    last_url: &mut String,
) -> Result<Bundle, FetchFailure> {
    let mut url = EndpointUrl::parse(&rel.bundle_endpoint_url)?;
    let failure = Arc::new(Mutex::new(None));
    let config = client_config(&rel.profile, spiffe_roots, web_roots, failure.clone())?;
    let mut hops = 0;
    let body = loop {
        *last_url = url.to_string();
        let response = request(&config, &url, &failure).await?;
        match (response.status, response.location) {
            (200, _) => break response.body,
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(FetchFailure::Redirect(format!(
                        "more than {MAX_REDIRECTS} redirects"
                    )));
                }
                url = url
                    .join(&location)
                    .map_err(|e| FetchFailure::Redirect(e.to_string()))?;
                tracing::debug!(to = %url, "following a redirect");
            }
            (status, _) => return Err(FetchFailure::HttpStatus(status)),
        }
    };
    let bundle = Bundle::from_spiffe_json(rel.trust_domain.clone(), &body)
        .map_err(FetchFailure::MalformedBundle)?;
    bundle_trust_domain_check(&bundle).map_err(FetchFailure::WrongTrustDomain)?;
    if bundle.x509_authorities.is_empty() && bundle.jwt_authorities.is_empty() {
        return Err(FetchFailure::EmptyBundle);
    }
    Ok(bundle)
}

/// One TLS connection, one GET.
async fn request(
    config: &Arc<ClientConfig>,
    url: &EndpointUrl,
    failure: &Mutex<Option<FetchFailure>>,
) -> Result<http::Response, FetchFailure> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(FetchFailure::Unreachable)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(url.host().to_string()).map_err(|e| {
        FetchFailure::Tls(format!("{:?} is not a TLS server name: {e}", url.host()))
    })?;
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // Our SPIFFE verifier leaves a precise reason behind.
            if let Some(f) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return f;
            }
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(c)) => {
                    FetchFailure::UntrustedCertificate(c.to_string())
                }
                Some(other) => FetchFailure::Tls(other.to_string()),
                None => FetchFailure::Tls(e.to_string()),
            }
        })?;
    http::get(&mut tls, url).await.map_err(|e| match e {
        HttpError::TooLarge { limit } => {
            FetchFailure::Http(format!("the response is larger than {limit} bytes"))
        }
        other => FetchFailure::Http(other.to_string()),
    })
}

fn client_config(
    profile: &BundleEndpointProfile,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
    failure: Arc<Mutex<Option<FetchFailure>>>,
) -> Result<Arc<ClientConfig>, FetchFailure> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FetchFailure::Tls(e.to_string()))?;
    let mut config = match profile {
        BundleEndpointProfile::HttpsWeb => {
            if web_roots.is_empty() {
                return Err(FetchFailure::NoWebRoots);
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(web_roots.0.clone(), provider())
                    .build()
                    .map_err(|e| FetchFailure::Tls(e.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeEndpointVerifier {
                roots: spiffe_roots.to_vec(),
                expected: endpoint_spiffe_id.clone(),
                failure,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// === impl SpiffeEndpointVerifier ===

/// `https_spiffe`: the endpoint's SVID must chain to `roots` and carry
/// exactly `expected`. The precise reason of a refusal is left in
/// `failure` for the error report (rustls only carries a string).
#[derive(Debug)]
struct SpiffeEndpointVerifier {
    roots: Vec<Vec<u8>>,
    expected: SpiffeId,
    failure: Arc<Mutex<Option<FetchFailure>>>,
}

impl SpiffeEndpointVerifier {
    fn refuse(&self, failure: FetchFailure) -> rustls::Error {
        let message = failure.to_string();
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
        rustls::Error::General(message)
    }
}

impl ServerCertVerifier for SpiffeEndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match verify_svid(
            end_entity,
            intermediates,
            &self.roots,
            now,
            webpki::KeyUsage::server_auth(),
        ) {
            Ok(id) if id == self.expected => Ok(ServerCertVerified::assertion()),
            Ok(found) => Err(self.refuse(FetchFailure::WrongSpiffeId {
                found,
                expected: self.expected.clone(),
            })),
            Err(e @ (PeerError::Chain(_) | PeerError::NotAnSvid(_))) => {
                Err(self.refuse(FetchFailure::UntrustedCertificate(e.to_string())))
            }
            Err(PeerError::WrongId { found, expected }) => {
                Err(self.refuse(FetchFailure::WrongSpiffeId { found, expected }))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

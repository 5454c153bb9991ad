//! Authenticating a bundle endpoint by its profile (SPIFFE.md §5.4):
//!
//! - `https_spiffe`: the endpoint's certificate must be an X509-SVID that
//!   chains to the given roots and carries exactly the configured endpoint
//!   SPIFFE ID (the crate's one SPIFFE verifier, [`ServerIdVerifier`]).
//! - `https_web`: Web PKI validation of the URL's host against
//!   [`WebRoots`].

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, OtherError};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::fetch::FetchFailure;
use super::web_roots::WebRoots;
use crate::spiffe::EndpointUrl;
use crate::store::BundleEndpointProfile;
use crate::tls::{provider, PeerError, Roots, ServerIdVerifier};

/// Why the endpoint's certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedCertificate {
    /// `https_web`: Web PKI validation failed (rustls' finding is not an
    /// `Error`, so it is held, not chained).
    #[error("{0}")]
    Web(CertificateError),
    /// `https_spiffe`: not an SVID of the endpoint's trust domain.
    #[error("{0}")]
    Svid(#[source] PeerError),
}

/// The client TLS configuration for `profile`.
pub(super) fn client_config(
    profile: &BundleEndpointProfile,
    spiffe_roots: &[Vec<u8>],
    web_roots: &WebRoots,
) -> Result<Arc<ClientConfig>, FetchFailure> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(FetchFailure::TlsSetup)?;
    let mut config = match profile {
        BundleEndpointProfile::HttpsWeb => {
            if web_roots.is_empty() {
                return Err(FetchFailure::NoWebRoots);
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(web_roots.store(), provider())
                    .build()
                    .map_err(FetchFailure::WebVerifier)?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerIdVerifier::new(
                Roots::new(spiffe_roots.to_vec()),
                endpoint_spiffe_id.clone(),
                false,
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One TLS connection to `url`'s host and port, authenticated by `config`.
pub(super) async fn connect(
    config: &Arc<ClientConfig>,
    url: &EndpointUrl,
) -> Result<TlsStream<TcpStream>, FetchFailure> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(FetchFailure::Unreachable)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(url.host().to_string()).map_err(|source| {
        FetchFailure::ServerName {
            host: url.host().to_string(),
            source,
        }
    })?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(handshake_failure)
}

/// Says precisely why a handshake failed: our SPIFFE verifier's
/// [`PeerError`] travels inside the rustls error.
fn handshake_failure(e: std::io::Error) -> FetchFailure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::Other(OtherError(other))) => match other.downcast_ref::<PeerError>() {
            Some(PeerError::WrongId { found, expected }) => FetchFailure::WrongSpiffeId {
                found: found.clone(),
                expected: expected.clone(),
            },
            Some(refusal) => {
                FetchFailure::UntrustedCertificate(UntrustedCertificate::Svid(refusal.clone()))
            }
            None => FetchFailure::Tls(e),
        },
        Some(rustls::Error::InvalidCertificate(c)) => {
            FetchFailure::UntrustedCertificate(UntrustedCertificate::Web(c.clone()))
        }
        _ => FetchFailure::Tls(e),
    }
}

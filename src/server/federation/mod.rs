//! Federation: how trust domains come to trust each other's SVIDs
//! (SPIFFE_Federation.md; `shared/spec/SPIFFE.md` §5.4 and §6).
//!
//! - [`endpoint`] serves this server's bundle to peers over HTTPS, with the
//!   `https_spiffe` profile (the server's own SVID) or `https_web` (a
//!   certificate from files).
//! - [`fetch`] fetches one foreign bundle, authenticating the endpoint by
//!   its profile, and checks what it got; `crate::http_get` is its one
//!   bounded HTTPS request, [`web_roots`] the roots of `https_web` endpoints and
//!   `spiffe::endpoint_url` the URL rules, [`endpoint_auth`] how the endpoint is
//!   authenticated.
//! - [`refresher`] keeps every federated bundle current: it polls each
//!   relationship at its bundle's refresh hint, backs off after failures,
//!   stores changes and tells agents.
//! - [`admin`] is the admin API for relationships and federated bundles.
//! - `config::federation` is the `[federation]` table of the server configuration.
//!
//! Bundles of different trust domains are never merged: each federated
//! bundle is stored under its own trust domain name, and a bad bundle from a
//! peer never replaces a good one.

pub mod admin;
pub mod endpoint;
pub mod endpoint_auth;
pub mod fetch;
pub mod refresher;
pub mod web_roots;

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::ca::bundle_check::{bundle_trust_domain_check, WrongTrustDomain};
pub use crate::config::federation::{
    BundleEndpointConfig, ConfiguredRelationship, EndpointProfile, FederationConfig,
};
pub use crate::spiffe::endpoint_url::{EndpointUrl, UrlError};
pub use admin::{add_federation_services, federation_routes};
pub use endpoint::{serve_bundle_endpoint, serve_bundle_endpoint_limited};
pub use fetch::{fetch_bundle, FetchError, FetchFailure, FetchLimits};
pub use refresher::{
    spawn_refresher, spawn_refresher_with, RefreshError, RefreshOutcome, RefreshStatus,
    RefresherHandle, RefresherSettings,
};
pub use web_roots::WebRoots;

use super::state::{ServerEvent, ServerState};
use crate::store::StoreError;

/// Why a federation piece could not start.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The bundle endpoint's address could not be bound.
    #[error("cannot listen on the bundle endpoint address {address}: {source}")]
    Bind {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The endpoint's TLS identity could not be made or loaded.
    #[error("bundle endpoint TLS setup failed: {0}")]
    Tls(#[source] TlsSetupError),
    /// A certificate given as a web root cannot anchor a chain.
    #[error("not a usable web root: {0}")]
    WebRoot(#[source] rustls::Error),
    /// A certificate, key or root file could not be used.
    #[error("{what} {path}: {reason}")]
    File {
        /// What the file is for (`bundle endpoint certificate`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it is unusable (boxed: rustls errors are large, and this
        /// error travels up through every startup `Result`).
        #[source]
        reason: Box<FileProblem>,
    },
    /// The datastore failed.
    #[error("datastore failure: {0}")]
    Store(#[from] StoreError),
    /// A configured relationship is unusable.
    #[error("federation relationship with {trust_domain}: {reason}")]
    Relationship {
        /// The foreign trust domain.
        trust_domain: String,
        /// Why.
        reason: String,
    },
}

/// Why the bundle endpoint's TLS identity could not be made: the server
/// SVID's own error, shared with the node API.
pub use crate::server::server_svid::ServerSvidError as TlsSetupError;

/// Why a certificate, key or root file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not PEM.
    #[error("bad PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// The file holds no certificate.
    #[error("holds no CERTIFICATE block")]
    NoCertificate,
    /// The file holds no private key rustls can read.
    #[error("no usable PEM private key: {0}")]
    NoKey(#[source] rustls::pki_types::pem::Error),
    /// The key is of a kind the crypto provider does not support.
    #[error("unsupported private key: {0}")]
    UnsupportedKey(#[source] rustls::Error),
    /// The key is not the certificate's.
    #[error("does not match the certificate {cert}: {source}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// rustls' finding.
        source: rustls::Error,
    },
    /// A certificate cannot serve as a root.
    #[error("a certificate is not a usable root: {0}")]
    NotARoot(#[source] rustls::Error),
}

/// Writes the relationships of the configuration file to the store (the
/// file wins over an earlier API change to the same trust domain) and
/// stores each bootstrap bundle whose trust domain has no bundle yet. Call
/// it once at startup, before [`spawn_refresher`].
pub async fn apply_configured_relationships(
    state: &Arc<ServerState>,
    config: &FederationConfig,
) -> Result<(), FederationError> {
    let mut bundles_changed = false;
    for configured in &config.relationships {
        let rel = configured.relationship.clone();
        if rel.trust_domain == state.trust_domain {
            return Err(FederationError::Relationship {
                trust_domain: rel.trust_domain.to_string(),
                reason: "this is the server's own trust domain".into(),
            });
        }
        let bootstrap = configured.bootstrap_bundle.clone();
        let stored_bootstrap = state
            .with_store(move |s| {
                s.put_federation_relationship(&rel)?;
                match bootstrap {
                    Some(b) if s.get_bundle(&b.trust_domain)?.is_none() => {
                        s.set_bundle(&b)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
        tracing::info!(
            trust_domain = %configured.relationship.trust_domain,
            url = %configured.relationship.bundle_endpoint_url,
            bootstrap_bundle_stored = stored_bootstrap,
            "federation relationship from the configuration file"
        );
        bundles_changed |= stored_bootstrap;
    }
    if bundles_changed {
        state.publish(ServerEvent::BundleChanged);
    }
    Ok(())
}

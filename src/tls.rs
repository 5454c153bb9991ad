//! rustls configuration that authenticates peers by SPIFFE ID, and the
//! HTTPS serving every Herald HTTP listener shares.
//!
//! Web PKI verification checks DNS names; SPIFFE peers are named by the one
//! URI SAN of their X509-SVID instead. [`verifier`] runs the same chain
//! validation (rustls-webpki, ring) against the trust domain's current roots
//! and then checks the SPIFFE ID. Roots live behind a shared handle so that
//! a bundle change takes effect on the next handshake without rebuilding
//! listeners.

pub mod https_server;
mod svid;
mod verifier;

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub use svid::{spiffe_id_and_serial_of, spiffe_id_of, verify_svid, NotAnSvid, PeerError};
pub use verifier::{
    ExpectedPeer, OptionalSvidClientVerifier, ServerIdVerifier, SvidVerifier, UnverifiedServer,
};

/// The trust domain's current root certificates (DER), shared and updatable.
#[derive(Debug, Clone, Default)]
pub struct Roots(Arc<RwLock<Vec<Vec<u8>>>>);

impl Roots {
    /// A handle holding `roots`.
    pub fn new(roots: Vec<Vec<u8>>) -> Self {
        Roots(Arc::new(RwLock::new(roots)))
    }

    /// Replaces the roots (a bundle update).
    pub fn set(&self, roots: Vec<Vec<u8>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roots;
    }

    /// The current roots.
    pub fn get(&self) -> Vec<Vec<u8>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The crypto provider every Herald TLS config uses: ring, nothing else.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, in rustls types.
pub fn certified_key(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec())),
    )
}

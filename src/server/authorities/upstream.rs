//! Upstream authorities: who signs the server's CA when it is not
//! self-signed.
//!
//! - `disk`: a CA certificate and key in PEM files (an organisation's root
//!   or intermediate).
//! - `herald`: another Herald server of the same trust domain (nested
//!   servers, one per cluster). This server attests to it like an agent and
//!   asks it to sign its CA; an entry marked `downstream` must authorize it.
//!
//! Either way the server's own CA is an intermediate; workloads receive the
//! chain up to the upstream's root, and the bundle holds that root, which
//! does not change when the server's CA rotates.

use std::path::Path;
use std::sync::Arc;

use crate::ca::keys::pem_blocks;
use crate::ca::{KeyPair, X509Authority, X509Error};
use crate::spiffe::TrustDomain;

/// Why the upstream files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A file could not be read.
    #[error("upstream {what} {path}: {reason}")]
    File {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The upstream Herald server refused or could not be reached.
    #[error("upstream Herald server: {0}")]
    Herald(String),
    /// The certificate chain does not end in a self-signed root.
    #[error("upstream certificate file {0}: the last certificate must be the self-signed root of the chain")]
    NoRoot(String),
    /// The key or certificate is not a usable CA.
    #[error("upstream CA {path}: {source}")]
    Ca {
        /// The certificate file.
        path: String,
        /// Why.
        source: X509Error,
    },
}

/// Who signs the server's CA.
#[derive(Debug)]
pub enum Upstream {
    /// A CA read from files.
    Disk(DiskUpstream),
    /// Another Herald server.
    Herald(super::herald_upstream::HeraldUpstream),
}

/// A CA certificate an upstream signed, and what a leaf presents above it.
#[derive(Debug, Clone)]
pub struct UpstreamSigned {
    /// The server's new CA certificate.
    pub cert_der: Vec<u8>,
    /// Certificates above it, up to (excluding) the root.
    pub chain_below_root: Vec<Vec<u8>>,
}

impl Upstream {
    /// Signs a CA certificate for `key` (the server's new CA key).
    pub fn sign_ca(
        &self,
        td: &TrustDomain,
        key: &KeyPair,
        ttl: i64,
        now: i64,
    ) -> Result<UpstreamSigned, UpstreamError> {
        match self {
            Upstream::Disk(d) => {
                let signed = d
                    .signer
                    .sign_ca(td, &key.public_key_spki(), ttl, now)
                    .map_err(|source| UpstreamError::Ca {
                        path: "upstream".into(),
                        source,
                    })?;
                Ok(UpstreamSigned {
                    cert_der: signed.cert_der,
                    chain_below_root: d.chain.clone(),
                })
            }
            Upstream::Herald(h) => h.sign_ca(key, ttl),
        }
    }

    /// The roots every workload trusts.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        match self {
            Upstream::Disk(d) => vec![d.root.clone()],
            Upstream::Herald(h) => h.roots(),
        }
    }
}

/// A loaded disk upstream.
pub struct DiskUpstream {
    signer: X509Authority,
    /// Certificates from the signer up to (excluding) the root.
    chain: Vec<Vec<u8>>,
    root: Vec<u8>,
}

impl std::fmt::Debug for DiskUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl DiskUpstream {
    /// Loads the CA certificate file (signer first, then its chain up to and
    /// including the root; a root alone is fine) and its PKCS#8 key.
    pub fn load(
        td: &TrustDomain,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let cert_name = cert_path.display().to_string();
        let file = |what: &'static str, path: &Path, reason: String| UpstreamError::File {
            what,
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read_to_string(cert_path)
            .map_err(|e| file("certificate", cert_path, e.to_string()))?;
        let certs = pem_blocks(&pem, "CERTIFICATE")
            .map_err(|e| file("certificate", cert_path, e.to_string()))?;
        let (first, rest) = certs
            .split_first()
            .ok_or_else(|| file("certificate", cert_path, "no CERTIFICATE block".into()))?;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key_path)
            .map_err(|e| file("key", key_path, e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(file(
                "key",
                key_path,
                format!(
                    "mode {:o} lets others read it; a private key must be 0600",
                    mode & 0o777
                ),
            ));
        }
        let key_pem =
            std::fs::read_to_string(key_path).map_err(|e| file("key", key_path, e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file("key", key_path, e.to_string()))?;
        let last = certs.last().cloned().unwrap_or_else(|| first.clone());
        let facts = crate::ca::x509::cert_facts(&last).map_err(|source| UpstreamError::Ca {
            path: cert_name.clone(),
            source,
        })?;
        if !facts.self_issued {
            return Err(UpstreamError::NoRoot(cert_name));
        }
        // The chain a leaf presents stops below the root.
        let chain: Vec<Vec<u8>> = if rest.is_empty() {
            Vec::new()
        } else {
            rest[..rest.len() - 1].to_vec()
        };
        let signer_chain = chain.clone();
        let signer = X509Authority::from_parts(td, first.clone(), signer_chain, Arc::new(key))
            .map_err(|source| UpstreamError::Ca {
                path: cert_name.clone(),
                source,
            })?;
        Ok(Arc::new(Upstream::Disk(DiskUpstream {
            signer,
            chain: if rest.is_empty() {
                Vec::new()
            } else {
                std::iter::once(first.clone()).chain(chain).collect()
            },
            root: last,
        })))
    }
}

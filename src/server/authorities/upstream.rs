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
    /// A file could not be used.
    #[error("upstream {what} {path}")]
    File {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        problem: FileProblem,
    },
    /// The upstream Herald server refused or could not be reached.
    #[error("upstream Herald server")]
    Herald(#[from] super::herald_upstream::HeraldUpstreamError),
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

/// What is wrong with an upstream file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The OS refused.
    #[error("cannot be read")]
    Io(#[from] std::io::Error),
    /// Not PEM.
    #[error("is not PEM")]
    Pem(#[from] crate::ca::pem::PemError),
    /// No certificate in it.
    #[error("holds no CERTIFICATE block")]
    NoCertificate,
    /// Readable by others.
    #[error("mode {0:o} lets others read it; a private key must be 0600")]
    Mode(u32),
    /// Not a usable key.
    #[error("is not a usable key")]
    Key(#[from] crate::ca::KeyError),
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

/// A loaded disk upstream. Its Debug shows no key: [`X509Authority`]'s
/// leaves it out.
#[derive(Debug)]
pub struct DiskUpstream {
    signer: X509Authority,
    /// Certificates from the signer up to (excluding) the root.
    chain: Vec<Vec<u8>>,
    root: Vec<u8>,
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
        let cert = |problem: FileProblem| file_error("certificate", cert_path, problem);
        let key = |problem: FileProblem| file_error("key", key_path, problem);
        let pem = std::fs::read_to_string(cert_path).map_err(|e| cert(e.into()))?;
        let certs = pem_blocks(&pem, "CERTIFICATE").map_err(|e| cert(e.into()))?;
        let (first, rest) = certs
            .split_first()
            .ok_or_else(|| cert(FileProblem::NoCertificate))?;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key_path)
            .map_err(|e| key(e.into()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(key(FileProblem::Mode(mode & 0o777)));
        }
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| key(e.into()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| key(e.into()))?;
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

/// An upstream file error naming the file.
pub(super) fn file_error(what: &'static str, path: &Path, problem: FileProblem) -> UpstreamError {
    UpstreamError::File {
        what,
        path: path.display().to_string(),
        problem,
    }
}

//! The agent side of x509pop: the machine's certificate and key, read from
//! disk on every attestation (so a renewed machine certificate is used
//! without a restart), and the proof of possession over a server challenge.
//! A running agent attests again when its SVID is due and when the
//! certificate on disk changes (`agent/manager/reattest.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::SigningKey as _;

use crate::ca::key_pem::{pkcs8_from_pem, KeyPemError};
use crate::ca::pem::{pem_blocks, PemError};
use crate::proto::node;
use crate::x509pop::{fingerprint, signed_message};

/// Where the machine identity lives (`[node_attestor.x509pop]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    /// PEM: the machine certificate first, then optionally intermediates.
    pub certificate_path: PathBuf,
    /// PEM private key (ECDSA P-256/P-384, RSA, Ed25519): PKCS#8, or
    /// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub private_key_path: PathBuf,
    /// PEM intermediates appended to the chain, if set.
    pub intermediates_path: Option<PathBuf>,
    /// How often a running agent reads the certificate file for a renewed
    /// certificate, which it then attests with at once.
    pub check_interval: Duration,
}

/// `certificate_check_interval` when not configured.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Why the machine identity could not be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A file could not be read.
    #[error("x509pop: reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error("x509pop: {path} holds no usable PEM")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PemError,
    },
    /// The key file holds no usable key (form, or encryption).
    #[error("x509pop: {path}")]
    KeyPem {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyPemError,
    },
    /// The key does not load (wrong algorithm).
    #[error("x509pop: {path} is not a supported private key (ECDSA P-256/P-384, RSA, Ed25519)")]
    Key {
        /// The key file.
        path: PathBuf,
    },
    /// The key could not sign.
    #[error("x509pop: signing the challenge with the machine key failed")]
    Sign,
}

fn read(path: &Path) -> Result<String, MachineError> {
    std::fs::read_to_string(path).map_err(|source| MachineError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<Vec<u8>>, MachineError> {
    let pem_error = |source| MachineError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let blocks = pem_blocks(&read(path)?, "CERTIFICATE").map_err(pem_error)?;
    if blocks.is_empty() {
        return Err(pem_error(PemError::Missing {
            label: "CERTIFICATE".into(),
        }));
    }
    Ok(blocks)
}

impl MachineFiles {
    /// The SHA-1 fingerprint of the machine certificate on disk now (the
    /// first block of `certificate_path`): it changes when the certificate
    /// is renewed.
    pub fn leaf_fingerprint(&self) -> Result<String, MachineError> {
        let chain = certs(&self.certificate_path)?;
        // certs() refuses a file without a certificate.
        Ok(chain
            .first()
            .map(|leaf| fingerprint(leaf))
            .unwrap_or_default())
    }

    /// Reads the chain and the key now, and signs the proof for
    /// `challenge` bound to `csr`.
    pub fn proof(
        &self,
        challenge: Vec<u8>,
        csr: &[u8],
    ) -> Result<node::X509PopProof, MachineError> {
        let mut chain = certs(&self.certificate_path)?;
        if let Some(p) = &self.intermediates_path {
            chain.extend(certs(p)?);
        }
        let key_path = &self.private_key_path;
        let pkcs8 = pkcs8_from_pem(&read(key_path)?).map_err(|source| MachineError::KeyPem {
            path: key_path.clone(),
            source,
        })?;
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(|_| MachineError::Key {
            path: key_path.clone(),
        })?;
        let signature = key
            .sign(&signed_message(&challenge, csr))
            .map_err(|_| MachineError::Sign)?;
        Ok(node::X509PopProof {
            chain,
            challenge,
            signature,
        })
    }
}

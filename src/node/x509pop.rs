//! The agent side of x509pop: the machine's certificate and key, read from
//! disk on every attestation (so a renewed machine certificate is used
//! without a restart), and the proof of possession over a server challenge.

use std::path::{Path, PathBuf};

use rcgen::SigningKey as _;

use crate::ca::pem::{pem_blocks, PemError};
use crate::proto::node;
use crate::x509pop::signed_message;

/// Where the machine identity lives (`[node_attestor.x509pop]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    /// PEM: the machine certificate first, then optionally intermediates.
    pub certificate_path: PathBuf,
    /// PEM PKCS#8 private key (ECDSA P-256/P-384, RSA, Ed25519).
    pub private_key_path: PathBuf,
    /// PEM intermediates appended to the chain, if set.
    pub intermediates_path: Option<PathBuf>,
}

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
    /// The key does not load (wrong format or algorithm).
    #[error(
        "x509pop: {path} is not a supported PKCS#8 private key (ECDSA P-256/P-384, RSA, Ed25519)"
    )]
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
        let key = rcgen::KeyPair::from_pem(&read(key_path)?).map_err(|_| MachineError::Key {
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

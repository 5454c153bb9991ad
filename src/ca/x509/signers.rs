//! Our keys in the shapes rcgen signs with and over.

use std::sync::Arc;

use rcgen::{PublicKeyData, SigningKey};

use super::X509Error;
use crate::ca::keys::KeyPair;
use crate::ca::public_key::{self, KeyAlgorithm};

/// A public key to certify, in the form rcgen signs over. Built straight
/// from the SubjectPublicKeyInfo's OIDs: rcgen's own parser re-encodes
/// every algorithm it knows to compare them, which cost more than the
/// certificate's signature on the issuance path.
pub(super) struct CertifiedKey {
    alg: &'static rcgen::SignatureAlgorithm,
    bits: Vec<u8>,
}

impl CertifiedKey {
    /// Reads the key out of SPKI DER; only the algorithms the CA certifies pass.
    pub(super) fn from_spki(spki_der: &[u8]) -> Result<Self, X509Error> {
        let key = public_key::read_spki(spki_der).map_err(X509Error::BadPublicKey)?;
        let alg: &'static rcgen::SignatureAlgorithm = match key.algorithm {
            KeyAlgorithm::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Rsa => &rcgen::PKCS_RSA_SHA256,
        };
        Ok(CertifiedKey {
            alg,
            bits: key.bits.to_vec(),
        })
    }
}

impl PublicKeyData for CertifiedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// A key pair shared between the authority and the key manager, usable by rcgen.
pub(super) struct SharedKey(pub(super) Arc<KeyPair>);

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.rcgen().der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.rcgen().algorithm()
    }
}

impl SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.rcgen().sign(msg)
    }
}

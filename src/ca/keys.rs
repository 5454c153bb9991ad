//! Key pairs: the one type every signer in Herald holds.
//!
//! A [`KeyPair`] keeps the PKCS#8 document it was built from and two views of
//! it: an `rcgen` key that signs certificates (ASN.1 DER signatures, as X.509
//! wants) and a `ring` key that signs JWTs (fixed-width `r||s` for ECDSA, as
//! JWS wants). Both are ring underneath; there is no other crypto backend.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;

pub use super::pem::{der_to_pem, pem_blocks, pem_certs, pem_to_der, PemError};
use crate::spiffe::JwtAlgorithm;

/// The key algorithms Herald can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: the default, fast and universally supported.
    EcP256,
    /// ECDSA on P-384 with SHA-384.
    EcP384,
    /// RSA 2048 (PKCS#1 v1.5, SHA-256). ring cannot generate RSA keys, so these
    /// can only be loaded from a PKCS#8 file.
    Rsa2048,
    /// RSA 4096 (PKCS#1 v1.5, SHA-256). Load only, like [`KeyType::Rsa2048`].
    Rsa4096,
}

impl KeyType {
    /// The name used in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// The JWS algorithm a JWT signed with this key type carries.
    pub fn jwt_algorithm(self) -> JwtAlgorithm {
        match self {
            KeyType::EcP256 => JwtAlgorithm::ES256,
            KeyType::EcP384 => JwtAlgorithm::ES384,
            KeyType::Rsa2048 | KeyType::Rsa4096 => JwtAlgorithm::RS256,
        }
    }

    fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyType {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ec-p256" => Ok(KeyType::EcP256),
            "ec-p384" => Ok(KeyType::EcP384),
            "rsa-2048" => Ok(KeyType::Rsa2048),
            "rsa-4096" => Ok(KeyType::Rsa4096),
            other => Err(KeyError::UnknownKeyType(other.to_string())),
        }
    }
}

/// Why a key could not be generated, loaded or used. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A configuration or flag named a key type we do not know.
    #[error("unknown key type {0:?}: expected one of ec-p256, ec-p384, rsa-2048, rsa-4096")]
    UnknownKeyType(String),
    /// ring has no RSA key generation; RSA keys must come from a file.
    #[error("cannot generate {0} keys with the ring backend: provide an RSA key as a PKCS#8 file instead")]
    RsaGenerationUnsupported(KeyType),
    /// The PKCS#8 document is not a key of the expected type.
    #[error("the private key is not a valid PKCS#8 {expected} key: {reason}")]
    InvalidPkcs8 {
        /// The type the caller expected.
        expected: KeyType,
        /// ring's reason, which never includes key material. Kept as ring's
        /// own type; it is not a `std::error::Error` (that needs ring's `std`
        /// feature), so it cannot be the `source`.
        reason: ring::error::KeyRejected,
    },
    /// ring accepted the key but rcgen cannot sign certificates with it.
    #[error("the PKCS#8 {expected} key cannot sign certificates: {source}")]
    NotACertificateSigner {
        /// The type the caller expected.
        expected: KeyType,
        /// rcgen's reason, which never includes key material.
        source: rcgen::Error,
    },
    /// The PKCS#8 document is not a key type we support.
    #[error("unsupported private key: not an EC P-256, EC P-384 or RSA PKCS#8 key")]
    UnsupportedKey,
    /// RSA key size outside what the key type promises.
    #[error("RSA key is {bits} bits, but {expected} was requested")]
    RsaSizeMismatch {
        /// The size found.
        bits: usize,
        /// The type requested.
        expected: KeyType,
    },
    /// A PEM document could not be read.
    #[error("invalid PEM private key: {0}")]
    Pem(#[from] PemError),
    /// The system random generator or signer failed.
    #[error("signing with a {0} key failed")]
    SigningFailed(KeyType),
}

/// A private key with its signers. `Debug` never prints the key.
pub struct KeyPair {
    key_type: KeyType,
    pkcs8: Vec<u8>,
    rcgen: rcgen::KeyPair,
    jwt: JwtSigner,
}

enum JwtSigner {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a fresh key of `key_type` from the system CSPRNG.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let alg = match key_type {
            KeyType::EcP256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            KeyType::EcP384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            KeyType::Rsa2048 | KeyType::Rsa4096 => {
                return Err(KeyError::RsaGenerationUnsupported(key_type))
            }
        };
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| KeyError::SigningFailed(key_type))?;
        Self::from_pkcs8(key_type, doc.as_ref())
    }

    /// Loads a key of a known type from its PKCS#8 DER document.
    pub fn from_pkcs8(key_type: KeyType, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let invalid = |reason| KeyError::InvalidPkcs8 {
            expected: key_type,
            reason,
        };
        let rng = SystemRandom::new();
        let jwt = match key_type {
            KeyType::EcP256 | KeyType::EcP384 => {
                let alg = if key_type == KeyType::EcP256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                JwtSigner::Ecdsa(EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng).map_err(invalid)?)
            }
            KeyType::Rsa2048 | KeyType::Rsa4096 => {
                let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(invalid)?;
                let bits = kp.public().modulus_len() * 8;
                let want = if key_type == KeyType::Rsa2048 {
                    2048
                } else {
                    4096
                };
                if bits != want {
                    return Err(KeyError::RsaSizeMismatch {
                        bits,
                        expected: key_type,
                    });
                }
                JwtSigner::Rsa(kp)
            }
        };
        let rcgen = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8),
            key_type.rcgen_algorithm(),
        )
        .map_err(|source| KeyError::NotACertificateSigner {
            expected: key_type,
            source,
        })?;
        Ok(KeyPair {
            key_type,
            pkcs8: pkcs8.to_vec(),
            rcgen,
            jwt,
        })
    }

    /// Loads a PKCS#8 key whose type is not known in advance (for example a
    /// disk upstream authority's key), trying each supported type in turn.
    pub fn from_pkcs8_any(pkcs8: &[u8]) -> Result<Self, KeyError> {
        [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Rsa4096,
        ]
        .into_iter()
        .find_map(|t| Self::from_pkcs8(t, pkcs8).ok())
        .ok_or(KeyError::UnsupportedKey)
    }

    /// Loads a key from a PEM `PRIVATE KEY` (PKCS#8) document.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem, "PRIVATE KEY")?;
        Self::from_pkcs8_any(&der)
    }

    /// The key's algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The PKCS#8 DER document. Handle with care: this is the secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The PKCS#8 document as PEM (`PRIVATE KEY`), for files written 0600.
    pub fn to_pkcs8_pem(&self) -> String {
        der_to_pem(&self.pkcs8, "PRIVATE KEY")
    }

    /// The SubjectPublicKeyInfo DER of the public half.
    pub fn public_key_spki(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.rcgen)
    }

    /// The certificate signer view of this key.
    pub fn rcgen(&self) -> &rcgen::KeyPair {
        &self.rcgen
    }

    /// Signs `message` in the JWS encoding of [`KeyType::jwt_algorithm`].
    pub fn sign_jws(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.jwt {
            JwtSigner::Ecdsa(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed(self.key_type)),
            JwtSigner::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::SigningFailed(self.key_type))?;
                Ok(sig)
            }
        }
    }

    /// The raw public key bytes ring uses to verify (an uncompressed EC point,
    /// or an RSAPublicKey DER).
    pub fn public_key_raw(&self) -> &[u8] {
        match &self.jwt {
            JwtSigner::Ecdsa(kp) => kp.public_key().as_ref(),
            JwtSigner::Rsa(kp) => kp.public().as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_ec_keys_and_round_trips_pkcs8() {
        for t in [KeyType::EcP256, KeyType::EcP384] {
            let k = KeyPair::generate(t).unwrap();
            let again = KeyPair::from_pkcs8(t, k.pkcs8_der()).unwrap();
            assert_eq!(k.public_key_spki(), again.public_key_spki());
            let pem = k.to_pkcs8_pem();
            assert_eq!(KeyPair::from_pem(&pem).unwrap().key_type(), t);
        }
    }

    #[test]
    fn rsa_generation_is_a_clear_error() {
        let err = KeyPair::generate(KeyType::Rsa2048).unwrap_err();
        assert!(err.to_string().contains("PKCS#8 file"), "{err}");
    }

    #[test]
    fn wrong_type_and_garbage_are_errors_without_key_bytes() {
        let k = KeyPair::generate(KeyType::EcP256).unwrap();
        assert!(KeyPair::from_pkcs8(KeyType::EcP384, k.pkcs8_der()).is_err());
        assert!(matches!(
            KeyPair::from_pkcs8_any(b"not a key"),
            Err(KeyError::UnsupportedKey)
        ));
        assert!(!format!("{k:?}").contains("pkcs8"));
        assert!("ed448".parse::<KeyType>().is_err());
    }
}

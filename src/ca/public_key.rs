//! The public keys the CA works with, read from SubjectPublicKeyInfo DER.
//!
//! CSR verification and certificate signing must agree on which keys exist:
//! a key the CSR check lets through and the signer then refuses would fail
//! late, after the agent has already proved possession. Both read the SPKI
//! here, so the list is written once.

use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1};
use der::Decode as _;
use spki::SubjectPublicKeyInfoRef;

/// Why a public key is not one the CA certifies.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeyError {
    /// The bytes are not a SubjectPublicKeyInfo.
    #[error("not a DER SubjectPublicKeyInfo: {0}")]
    Der(#[source] der::Error),
    /// id-ecPublicKey on a curve other than P-256 or P-384.
    #[error("EC curve {curve} is not P-256 or P-384")]
    UnsupportedCurve {
        /// Dotted OID of the curve, or `(missing)`.
        curve: String,
    },
    /// Neither id-ecPublicKey nor rsaEncryption.
    #[error("key algorithm {oid} is neither id-ecPublicKey nor rsaEncryption")]
    UnsupportedAlgorithm {
        /// Dotted OID found in the SPKI.
        oid: String,
    },
}

/// The key algorithms the CA certifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyAlgorithm {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// RSA of any size (the verifier or signer bounds it).
    Rsa,
}

/// A public key's algorithm and its subjectPublicKey bits, borrowed from the SPKI DER.
#[derive(Debug)]
pub(crate) struct SpkiKey<'a> {
    /// What kind of key it is.
    pub(crate) algorithm: KeyAlgorithm,
    /// The subjectPublicKey BIT STRING contents (an EC point or an RSAPublicKey).
    pub(crate) bits: &'a [u8],
}

/// Reads the algorithm straight from the SPKI's OIDs, without re-encoding.
pub(crate) fn read_spki(spki_der: &[u8]) -> Result<SpkiKey<'_>, PublicKeyError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(PublicKeyError::Der)?;
    let algorithm = match spki.algorithm.oid {
        oid if oid == ID_EC_PUBLIC_KEY => match spki.algorithm.parameters_oid().ok() {
            Some(curve) if curve == SECP_256_R_1 => KeyAlgorithm::EcP256,
            Some(curve) if curve == SECP_384_R_1 => KeyAlgorithm::EcP384,
            curve => {
                return Err(PublicKeyError::UnsupportedCurve {
                    curve: curve.map_or_else(|| "(missing)".to_owned(), |c| c.to_string()),
                })
            }
        },
        oid if oid == RSA_ENCRYPTION => KeyAlgorithm::Rsa,
        oid => {
            return Err(PublicKeyError::UnsupportedAlgorithm {
                oid: oid.to_string(),
            })
        }
    };
    Ok(SpkiKey {
        algorithm,
        bits: spki.subject_public_key.raw_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ec_and_names_what_it_refuses() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        assert_eq!(read_spki(&spki).unwrap().algorithm, KeyAlgorithm::EcP384);
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let err = read_spki(&rcgen::PublicKeyData::subject_public_key_info(&ed25519)).unwrap_err();
        assert!(err.to_string().contains("1.3.101.112"), "{err}");
        assert!(matches!(
            read_spki(b"\x30\x00"),
            Err(PublicKeyError::Der(_))
        ));
    }
}

//! Certificate signing requests from agents and operators.
//!
//! We trust exactly one thing in a CSR: that its sender holds the private key
//! of the public key inside, which the self-signature proves. Everything else
//! it asks for (subject, SANs, extensions) is the sender's wish; the SPIFFE ID
//! of an SVID always comes from the registration entry, never from here.

use const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ID_EXTENSION_REQ, SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
};
use const_oid::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::CertReq;

use super::public_key::{self, KeyAlgorithm, PublicKeyError};
use super::tlv;

/// Largest CSR we parse; real ones are well under 2 KiB.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Empty input.
    #[error("the CSR is empty")]
    Empty,
    /// Oversized input.
    #[error("the CSR is {0} bytes; at most {MAX_CSR_LEN} are accepted")]
    TooLarge(usize),
    /// Not a DER PKCS#10 request, or a part of it does not decode.
    #[error("the CSR is not a valid DER PKCS#10 request: cannot read its {part}: {source}")]
    Malformed {
        /// The part that failed: the whole request, or an extension in it.
        part: &'static str,
        /// The DER decoder's complaint.
        source: der::Error,
    },
    /// The request decoded, but the bytes its signature covers could not be
    /// located in the input as received.
    #[error(
        "the CSR is not a valid DER PKCS#10 request: cannot locate the certification request info"
    )]
    NoRequestInfo,
    /// Only version 1 (value 0) exists.
    #[error("the CSR has an unsupported version")]
    BadVersion,
    /// Key algorithm or curve we do not sign for.
    #[error("the CSR's public key is not supported: {0} (use EC P-256, EC P-384 or RSA 2048+)")]
    UnsupportedKey(#[source] PublicKeyError),
    /// Signature algorithm we do not verify, or one that does not fit the key.
    #[error("the CSR's signature algorithm {0} is not supported for its key")]
    UnsupportedSignatureAlgorithm(String),
    /// The self-signature does not verify: the sender does not prove key possession.
    #[error("the CSR's signature does not verify against its own public key")]
    BadSignature,
}

/// A CSR whose self-signature has been verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The SubjectPublicKeyInfo DER of the key the certificate will certify.
    pub public_key_spki: Vec<u8>,
    /// URI SANs the sender asked for (only the admin mint API looks at these).
    pub uri_sans: Vec<String>,
    /// DNS SANs the sender asked for.
    pub dns_sans: Vec<String>,
}

/// Parses a DER CSR and verifies its self-signature.
pub fn verify_csr(der_bytes: &[u8]) -> Result<VerifiedCsr, CsrError> {
    if der_bytes.is_empty() {
        return Err(CsrError::Empty);
    }
    if der_bytes.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLarge(der_bytes.len()));
    }
    let req = CertReq::from_der(der_bytes).map_err(malformed("structure"))?;
    if req.info.version != x509_cert::request::Version::V1 {
        return Err(CsrError::BadVersion);
    }
    let public_key_spki = req
        .info
        .public_key
        .to_der()
        .map_err(malformed("subjectPublicKeyInfo"))?;
    let key = public_key::read_spki(&public_key_spki).map_err(CsrError::UnsupportedKey)?;
    let alg = verification_algorithm(key.algorithm, req.algorithm.oid)?;
    // The signed bytes, exactly as received (the parse above already
    // checked they are DER, so this is what a re-encoding would give).
    let info = signed_info(der_bytes).ok_or(CsrError::NoRequestInfo)?;
    UnparsedPublicKey::new(alg, key.bits)
        .verify(info, req.signature.raw_bytes())
        .map_err(|_| CsrError::BadSignature)?;

    let (uri_sans, dns_sans) = requested_sans(&req)?;
    Ok(VerifiedCsr {
        public_key_spki,
        uri_sans,
        dns_sans,
    })
}

/// The error for a part of the request that does not decode.
fn malformed(part: &'static str) -> impl Fn(der::Error) -> CsrError {
    move |source| CsrError::Malformed { part, source }
}

/// The first element inside the outer SEQUENCE: the CertificationRequestInfo.
fn signed_info(der_bytes: &[u8]) -> Option<&[u8]> {
    let (outer_header, _) = tlv::header(der_bytes)?;
    tlv::element(der_bytes.get(outer_header..)?)
}

fn verification_algorithm(
    key: KeyAlgorithm,
    sig_oid: ObjectIdentifier,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let alg: &'static dyn VerificationAlgorithm = match (key, sig_oid) {
        (KeyAlgorithm::EcP256, ECDSA_WITH_SHA_256) => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::EcP256, ECDSA_WITH_SHA_384) => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::EcP384, ECDSA_WITH_SHA_256) => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::EcP384, ECDSA_WITH_SHA_384) => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::Rsa, SHA_256_WITH_RSA_ENCRYPTION) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyAlgorithm::Rsa, SHA_384_WITH_RSA_ENCRYPTION) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyAlgorithm::Rsa, SHA_512_WITH_RSA_ENCRYPTION) => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(CsrError::UnsupportedSignatureAlgorithm(sig_oid.to_string())),
    };
    Ok(alg)
}

fn requested_sans(req: &CertReq) -> Result<(Vec<String>, Vec<String>), CsrError> {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for attr in req.info.attributes.iter() {
        if attr.oid != ID_EXTENSION_REQ {
            continue;
        }
        for value in attr.values.iter() {
            let exts: x509_cert::ext::Extensions = value
                .decode_as()
                .map_err(malformed("extension request attribute"))?;
            for ext in exts.iter().filter(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME) {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(malformed("requested subjectAltName extension"))?;
                for name in san.0 {
                    match name {
                        GeneralName::UniformResourceIdentifier(u) => uris.push(u.to_string()),
                        GeneralName::DnsName(d) => dns.push(d.to_string()),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok((uris, dns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(key: &rcgen::KeyPair, sans: Vec<String>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_p256_and_p384_and_reads_sans() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let der = csr_for(&key, vec!["svc.example.org".into()]);
            let v = verify_csr(&der).unwrap();
            assert_eq!(
                v.public_key_spki,
                rcgen::PublicKeyData::subject_public_key_info(&key)
            );
            assert_eq!(v.dns_sans, vec!["svc.example.org".to_string()]);
        }
    }

    #[test]
    fn rejects_a_tampered_signature() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut der = csr_for(&key, vec![]);
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(matches!(verify_csr(&der), Err(CsrError::BadSignature)));
    }

    #[test]
    fn rejects_a_csr_signed_by_another_key() {
        // Swap the public key of one CSR into another's signed body: the
        // signature no longer matches the key it claims.
        let a = rcgen::KeyPair::generate().unwrap();
        let b = rcgen::KeyPair::generate().unwrap();
        let der = csr_for(&a, vec![]);
        let pa = rcgen::PublicKeyData::der_bytes(&a).to_vec();
        let pb = rcgen::PublicKeyData::der_bytes(&b).to_vec();
        let pos = der
            .windows(pa.len())
            .position(|w| w == pa.as_slice())
            .unwrap();
        let mut forged = der.clone();
        forged[pos..pos + pa.len()].copy_from_slice(&pb);
        assert!(matches!(verify_csr(&forged), Err(CsrError::BadSignature)));
    }

    #[test]
    fn rejects_garbage_empty_and_huge() {
        assert!(matches!(verify_csr(b""), Err(CsrError::Empty)));
        assert!(matches!(
            verify_csr(b"\x30\x03\x02\x01"),
            Err(CsrError::Malformed {
                part: "structure",
                ..
            })
        ));
        assert!(matches!(
            verify_csr(&vec![0u8; MAX_CSR_LEN + 1]),
            Err(CsrError::TooLarge(_))
        ));
    }
}

//! Certificate signing requests from agents and operators.
//!
//! We trust exactly one thing in a CSR: that its sender holds the private key
//! of the public key inside, which the self-signature proves. Everything else
//! it asks for (subject, SANs, extensions) is the sender's wish; the SPIFFE ID
//! of an SVID always comes from the registration entry, never from here.

use der::{Decode as _, Encode as _};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::CertReq;

/// Largest CSR we parse; real ones are well under 2 KiB.
pub const MAX_CSR_LEN: usize = 16 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const OID_RSA_SHA512: &str = "1.2.840.113549.1.1.13";
const OID_EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Empty input.
    #[error("the CSR is empty")]
    Empty,
    /// Oversized input.
    #[error("the CSR is {0} bytes; at most {MAX_CSR_LEN} are accepted")]
    TooLarge(usize),
    /// Not a DER PKCS#10 request.
    #[error("the CSR is not a valid DER PKCS#10 request: {0}")]
    Malformed(String),
    /// Only version 1 (value 0) exists.
    #[error("the CSR has an unsupported version")]
    BadVersion,
    /// Key algorithm or curve we do not sign for.
    #[error("the CSR's public key is not supported: {0} (use EC P-256, EC P-384 or RSA 2048+)")]
    UnsupportedKey(String),
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
    let req = CertReq::from_der(der_bytes).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if req.info.version != x509_cert::request::Version::V1 {
        return Err(CsrError::BadVersion);
    }
    let spki = &req.info.public_key;
    let key_oid = spki.algorithm.oid.to_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let sig_oid = req.algorithm.oid.to_string();
    let alg = verification_algorithm(&key_oid, curve.as_deref(), &sig_oid)?;
    // The signed bytes, exactly as received (the parse above already
    // checked they are DER, so this is what a re-encoding would give).
    let info = signed_info(der_bytes).ok_or_else(|| {
        CsrError::Malformed("cannot locate the certification request info".into())
    })?;
    let key_bytes = spki.subject_public_key.raw_bytes();
    let sig = req.signature.raw_bytes();
    UnparsedPublicKey::new(alg, key_bytes)
        .verify(info, sig)
        .map_err(|_| CsrError::BadSignature)?;

    let public_key_spki = spki
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let (uri_sans, dns_sans) = requested_sans(&req)?;
    Ok(VerifiedCsr {
        public_key_spki,
        uri_sans,
        dns_sans,
    })
}

/// A DER TLV's header length and content length.
fn tlv(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    Some((2 + n, len))
}

/// The first element inside the outer SEQUENCE: the CertificationRequestInfo.
fn signed_info(der_bytes: &[u8]) -> Option<&[u8]> {
    let (outer_header, _) = tlv(der_bytes)?;
    let inner = der_bytes.get(outer_header..)?;
    let (h, len) = tlv(inner)?;
    inner.get(..h.checked_add(len)?)
}

fn verification_algorithm(
    key_oid: &str,
    curve: Option<&str>,
    sig_oid: &str,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let unsupported = || CsrError::UnsupportedSignatureAlgorithm(sig_oid.to_string());
    match key_oid {
        OID_EC_PUBLIC_KEY => match (curve, sig_oid) {
            (Some(OID_P256), OID_ECDSA_SHA256) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (Some(OID_P256), OID_ECDSA_SHA384) => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (Some(OID_P384), OID_ECDSA_SHA256) => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (Some(OID_P384), OID_ECDSA_SHA384) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            (Some(OID_P256 | OID_P384), _) => Err(unsupported()),
            (other, _) => Err(CsrError::UnsupportedKey(format!(
                "EC curve {}",
                other.unwrap_or("(missing)")
            ))),
        },
        OID_RSA_ENCRYPTION => match sig_oid {
            OID_RSA_SHA256 => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
            OID_RSA_SHA384 => Ok(&signature::RSA_PKCS1_2048_8192_SHA384),
            OID_RSA_SHA512 => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
            _ => Err(unsupported()),
        },
        other => Err(CsrError::UnsupportedKey(format!("key algorithm {other}"))),
    }
}

fn requested_sans(req: &CertReq) -> Result<(Vec<String>, Vec<String>), CsrError> {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for attr in req.info.attributes.iter() {
        if attr.oid.to_string() != OID_EXTENSION_REQUEST {
            continue;
        }
        for value in attr.values.iter() {
            let exts: x509_cert::ext::Extensions = value
                .decode_as()
                .map_err(|e| CsrError::Malformed(format!("extension request: {e}")))?;
            for ext in exts
                .iter()
                .filter(|e| e.extn_id.to_string() == OID_SUBJECT_ALT_NAME)
            {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| CsrError::Malformed(format!("subjectAltName: {e}")))?;
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
            Err(CsrError::Malformed(_))
        ));
        assert!(matches!(
            verify_csr(&vec![0u8; MAX_CSR_LEN + 1]),
            Err(CsrError::TooLarge(_))
        ));
    }
}

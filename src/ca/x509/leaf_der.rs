//! Workload leaves written straight to DER, without rcgen.
//!
//! Why by hand: a leaf is signed on every SVID issuance, and rcgen builds
//! each one through a general certificate writer (a parameter struct,
//! re-encoded issuer names and key identifiers, many small allocations)
//! that cost about as much as the ECDSA signature itself. A leaf of ours
//! has one fixed shape (the SPIFFE X509-SVID profile in `template.rs`), so
//! the parts that never change for an authority (its signature algorithm,
//! its subject as the issuer name, its key identifier) are encoded once
//! here and each leaf only writes what is its own: serial, validity,
//! subject CN, key, SANs and SKI.
//!
//! The output is byte for byte what rcgen writes for `template`'s leaf
//! parameters under the same serial (`leaf_der_tests.rs` holds both to it),
//! so the profile has one definition and this is only its fast path.

use std::sync::Arc;

use der::Encode as _;
use rcgen::SigningKey as _;
use time::OffsetDateTime;

use super::{CertFacts, X509Error};
use crate::ca::keys::{KeyPair, KeyType};
use crate::ca::public_key::{KeyAlgorithm, SpkiKey};
use crate::ca::template::{self, TemplateError};
use crate::ca::tlv;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const UTF8_STRING: u8 = 0x0c;

/// AlgorithmIdentifier of ecdsa-with-SHA256 (RFC 5758), no parameters.
const SIG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// AlgorithmIdentifier of ecdsa-with-SHA384 (RFC 5758), no parameters.
const SIG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
/// AlgorithmIdentifier of sha256WithRSAEncryption (RFC 4055), NULL parameters.
const SIG_RSA_SHA256: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// SPKI AlgorithmIdentifier of id-ecPublicKey on prime256v1.
const KEY_EC_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// SPKI AlgorithmIdentifier of id-ecPublicKey on secp384r1.
const KEY_EC_P384: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];
/// SPKI AlgorithmIdentifier of rsaEncryption, NULL parameters.
const KEY_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// `C=US, O=Herald` (country a PrintableString, organization a
/// UTF8String), the RDNs every Herald subject starts with.
const BASE_RDNS: &[u8] = &[
    0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'U', b'S', 0x31, 0x0f, 0x30,
    0x0d, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x06, b'H', b'e', b'r', b'a', b'l', b'd',
];
/// The OID of commonName, as a TLV.
const OID_CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

/// Extension OIDs, as TLVs.
const OID_SAN: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
const OID_SKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0e];
const OID_AKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];

/// keyUsage, critical: digitalSignature.
const EXT_KU_EC: &[u8] = &[
    0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80,
];
/// keyUsage, critical: digitalSignature and keyEncipherment (RSA leaves).
const EXT_KU_RSA: &[u8] = &[
    0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x05, 0xa0,
];
/// extKeyUsage: serverAuth, clientAuth.
const EXT_EKU: &[u8] = &[
    0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x16, 0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01,
    0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];
/// basicConstraints, critical, cA absent (false).
const EXT_BC_LEAF: &[u8] = &[
    0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
];

/// What one authority's leaves share, encoded once.
pub(super) struct LeafTemplate {
    key: Arc<KeyPair>,
    signature_algorithm: &'static [u8],
    issuer_name: Vec<u8>,
    authority_key_id_ext: Vec<u8>,
}

/// One leaf's own fields.
pub(super) struct Leaf<'a> {
    pub(super) serial: &'a [u8],
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) subject_cn: Option<&'a str>,
    pub(super) key: &'a SpkiKey<'a>,
    pub(super) spiffe_id: &'a str,
    pub(super) dns_names: &'a [String],
}

impl LeafTemplate {
    /// The template of the authority whose certificate is `ca`, with its
    /// `facts` (already checked against `key` by the caller).
    pub(super) fn new(
        ca: &x509_cert::Certificate,
        facts: &CertFacts,
        key: Arc<KeyPair>,
    ) -> Result<Self, X509Error> {
        let tbs = &ca.tbs_certificate;
        let issuer_name = tbs
            .subject
            .to_der()
            .map_err(|source| X509Error::BadCertificate {
                part: "subject",
                source,
            })?;
        // The CA's own SKI where it has one (ours always do); else the same
        // method-1 identifier our CAs carry, over its key.
        let key_id = match &facts.subject_key_id {
            Some(ski) => ski.clone(),
            None => {
                template::key_identifier(tbs.subject_public_key_info.subject_public_key.raw_bytes())
            }
        };
        let mut aki = Vec::with_capacity(key_id.len() + 4);
        tlv::write(0x80, &key_id, &mut aki);
        let mut aki_seq = Vec::with_capacity(aki.len() + 4);
        tlv::write(SEQUENCE, &aki, &mut aki_seq);
        let signature_algorithm = match key.key_type() {
            KeyType::EcP256 => SIG_ECDSA_SHA256,
            KeyType::EcP384 => SIG_ECDSA_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa4096 => SIG_RSA_SHA256,
        };
        Ok(LeafTemplate {
            key,
            signature_algorithm,
            issuer_name,
            authority_key_id_ext: extension(OID_AKI, false, &aki_seq),
        })
    }

    /// The signed certificate, DER.
    pub(super) fn sign(&self, leaf: &Leaf<'_>) -> Result<Vec<u8>, X509Error> {
        let tbs = self.tbs(leaf)?;
        let signature = self
            .key
            .rcgen()
            .sign(&tbs)
            .map_err(|source| X509Error::Sign {
                what: "X509-SVID",
                source,
            })?;
        let mut bits = Vec::with_capacity(signature.len() + 1);
        bits.push(0); // no unused bits
        bits.extend_from_slice(&signature);
        let mut body = Vec::with_capacity(tbs.len() + self.signature_algorithm.len() + 80);
        body.extend_from_slice(&tbs);
        body.extend_from_slice(self.signature_algorithm);
        tlv::write(BIT_STRING, &bits, &mut body);
        Ok(wrap(SEQUENCE, &body))
    }

    /// The TBSCertificate: the fields in RFC 5280 order, the extensions in
    /// the order rcgen writes them (AKI, SAN, KU, EKU, SKI, BC).
    pub(super) fn tbs(&self, leaf: &Leaf<'_>) -> Result<Vec<u8>, X509Error> {
        let mut body = Vec::with_capacity(640);
        body.extend_from_slice(&[0xa0, 0x03, 0x02, 0x01, 0x02]); // [0] version v3
        write_positive_integer(leaf.serial, &mut body);
        body.extend_from_slice(self.signature_algorithm);
        body.extend_from_slice(&self.issuer_name);
        let mut validity = Vec::with_capacity(34);
        write_time(leaf.not_before, &mut validity)?;
        write_time(leaf.not_after, &mut validity)?;
        tlv::write(SEQUENCE, &validity, &mut body);
        write_subject(leaf.subject_cn, &mut body);
        write_spki(leaf.key, &mut body);

        let mut exts = Vec::with_capacity(320);
        exts.extend_from_slice(&self.authority_key_id_ext);
        exts.extend_from_slice(&extension(OID_SAN, false, &sans(leaf)?));
        exts.extend_from_slice(if leaf.key.algorithm == KeyAlgorithm::Rsa {
            EXT_KU_RSA
        } else {
            EXT_KU_EC
        });
        exts.extend_from_slice(EXT_EKU);
        let ski = wrap(OCTET_STRING, &template::key_identifier(leaf.key.bits));
        exts.extend_from_slice(&extension(OID_SKI, false, &ski));
        exts.extend_from_slice(EXT_BC_LEAF);
        let exts = wrap(SEQUENCE, &exts);
        tlv::write(0xa3, &exts, &mut body); // [3] extensions
        Ok(wrap(SEQUENCE, &body))
    }
}

/// `value` under `tag`, as a new TLV.
fn wrap(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    tlv::write(tag, value, &mut out);
    out
}

/// An Extension: its OID, criticality (DEFAULT FALSE, so only TRUE is
/// written) and the value's DER in an OCTET STRING.
fn extension(oid_tlv: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(oid_tlv.len() + value.len() + 8);
    body.extend_from_slice(oid_tlv);
    if critical {
        body.extend_from_slice(&[0x01, 0x01, 0xff]);
    }
    tlv::write(OCTET_STRING, value, &mut body);
    wrap(SEQUENCE, &body)
}

/// A non-negative INTEGER from big-endian bytes: leading zeros dropped,
/// one zero byte put back when the top bit is set (else it would read as
/// negative).
fn write_positive_integer(bytes: &[u8], out: &mut Vec<u8>) {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = &bytes[start..];
    let mut value = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(digits);
    tlv::write(INTEGER, &value, out);
}

/// UTCTime for 1950 through 2049, GeneralizedTime otherwise (RFC 5280
/// section 4.1.2.5), always in seconds and Zulu.
fn write_time(unix: i64, out: &mut Vec<u8>) -> Result<(), TemplateError> {
    let t = OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|source| TemplateError::BadTime { unix, source })?;
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return Err(TemplateError::YearOutOfRange { unix, year });
    }
    // Digits written by hand: two `format!`s were a percent of the CPU
    // per SVID, two validity times per leaf.
    let utc = (1950..2050).contains(&year);
    let year = year.unsigned_abs(); // 0..=9999, checked above
    let mut text = [0u8; 15];
    let mut len = 0;
    let mut two_digits = |v: u32| {
        text[len] = b'0' + (v / 10 % 10) as u8;
        text[len + 1] = b'0' + (v % 10) as u8;
        len += 2;
    };
    if !utc {
        two_digits(year / 100);
    }
    two_digits(year % 100);
    two_digits(u32::from(u8::from(t.month())));
    two_digits(u32::from(t.day()));
    two_digits(u32::from(t.hour()));
    two_digits(u32::from(t.minute()));
    two_digits(u32::from(t.second()));
    text[len] = b'Z';
    let tag = if utc { UTC_TIME } else { GENERALIZED_TIME };
    tlv::write(tag, &text[..=len], out);
    Ok(())
}

/// `C=US, O=Herald`, then `CN=<cn>` as a UTF8String when given.
fn write_subject(cn: Option<&str>, out: &mut Vec<u8>) {
    let mut rdns = Vec::with_capacity(BASE_RDNS.len() + 64);
    rdns.extend_from_slice(BASE_RDNS);
    if let Some(cn) = cn {
        let mut atv = OID_CN.to_vec();
        tlv::write(UTF8_STRING, cn.as_bytes(), &mut atv);
        let atv = wrap(SEQUENCE, &atv);
        tlv::write(SET, &atv, &mut rdns);
    }
    tlv::write(SEQUENCE, &rdns, out);
}

/// The SubjectPublicKeyInfo in its canonical form for the key's algorithm.
fn write_spki(key: &SpkiKey<'_>, out: &mut Vec<u8>) {
    let algorithm = match key.algorithm {
        KeyAlgorithm::EcP256 => KEY_EC_P256,
        KeyAlgorithm::EcP384 => KEY_EC_P384,
        KeyAlgorithm::Rsa => KEY_RSA,
    };
    let mut body = Vec::with_capacity(algorithm.len() + key.bits.len() + 8);
    body.extend_from_slice(algorithm);
    let mut bits = Vec::with_capacity(key.bits.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key.bits);
    tlv::write(BIT_STRING, &bits, &mut body);
    tlv::write(SEQUENCE, &body, out);
}

/// The subjectAltName value: the SPIFFE ID as a URI, then each DNS name;
/// both must be IA5 (ASCII) strings.
fn sans(leaf: &Leaf<'_>) -> Result<Vec<u8>, TemplateError> {
    let mut names = Vec::with_capacity(leaf.spiffe_id.len() + 64);
    ia5(leaf.spiffe_id, "URI SAN")?;
    tlv::write(0x86, leaf.spiffe_id.as_bytes(), &mut names); // [6] URI
    for dns in leaf.dns_names {
        ia5(dns, "dns name")?;
        tlv::write(0x82, dns.as_bytes(), &mut names); // [2] dNSName
    }
    Ok(wrap(SEQUENCE, &names))
}

fn ia5(value: &str, field: &str) -> Result<(), TemplateError> {
    if value.is_ascii() {
        Ok(())
    } else {
        Err(TemplateError::NotAscii {
            field: format!("{field} {value:?}"),
        })
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    fn text(unix: i64) -> (u8, String) {
        let mut out = Vec::new();
        write_time(unix, &mut out).unwrap();
        (out[0], String::from_utf8(out[2..].to_vec()).unwrap())
    }

    /// Each side of the 1950 and 2050 switches, and the last second a
    /// certificate can carry.
    #[test]
    fn times_are_utc_from_1950_through_2049_and_generalized_otherwise() {
        assert_eq!(
            text(-631_152_001),
            (GENERALIZED_TIME, "19491231235959Z".into())
        );
        assert_eq!(text(-631_152_000), (UTC_TIME, "500101000000Z".into()));
        assert_eq!(text(1_800_000_000), (UTC_TIME, "270115080000Z".into()));
        assert_eq!(text(2_524_607_999), (UTC_TIME, "491231235959Z".into()));
        assert_eq!(
            text(2_524_608_000),
            (GENERALIZED_TIME, "20500101000000Z".into())
        );
        assert_eq!(
            text(253_402_300_799),
            (GENERALIZED_TIME, "99991231235959Z".into())
        );
        assert!(matches!(
            write_time(253_402_300_800, &mut Vec::new()),
            Err(TemplateError::BadTime { .. } | TemplateError::YearOutOfRange { .. })
        ));
    }
}

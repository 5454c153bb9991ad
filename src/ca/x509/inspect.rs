//! Reading DER certificates we did not necessarily sign: the facts Herald
//! acts on, and the boundaries in a concatenated chain.

use der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::Certificate;

use super::X509Error;
use crate::ca::template;
use crate::ca::tlv;

/// The facts about a certificate that Herald acts on.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// NotBefore, unix seconds.
    pub not_before: i64,
    /// NotAfter, unix seconds.
    pub not_after: i64,
    /// SubjectPublicKeyInfo DER.
    pub public_key_spki: Vec<u8>,
    /// Lowercase hex serial.
    pub serial: String,
    /// Basic constraints cA flag.
    pub is_ca: bool,
    /// Whether issuer equals subject.
    pub self_issued: bool,
    /// The URI SANs (a SPIFFE CA carries `spiffe://<td>`).
    pub uri_sans: Vec<String>,
    /// Subject key identifier, if present.
    pub subject_key_id: Option<Vec<u8>>,
    /// Authority key identifier (key id form), if present.
    pub authority_key_id: Option<Vec<u8>>,
}

/// Reads validity, key, serial and CA flag out of a DER certificate.
pub fn cert_facts(der_bytes: &[u8]) -> Result<CertFacts, X509Error> {
    facts_of(&parse_cert(der_bytes)?)
}

/// Decodes a DER certificate.
pub(super) fn parse_cert(der_bytes: &[u8]) -> Result<Certificate, X509Error> {
    Certificate::from_der(der_bytes).map_err(|source| X509Error::BadCertificate {
        part: "DER encoding",
        source,
    })
}

/// The facts of an already decoded certificate (see [`cert_facts`]).
pub(super) fn facts_of(cert: &Certificate) -> Result<CertFacts, X509Error> {
    let bad = |part: &'static str| move |source| X509Error::BadCertificate { part, source };
    let tbs = &cert.tbs_certificate;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let is_ca = tbs
        .get::<BasicConstraints>()
        .map_err(bad("basicConstraints extension"))?
        .is_some_and(|(_, bc)| bc.ca);
    let uri_sans = tbs
        .get::<SubjectAltName>()
        .map_err(bad("subjectAltName extension"))?
        .map(|(_, san)| {
            san.0
                .into_iter()
                .filter_map(|n| match n {
                    GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let subject_key_id = tbs
        .get::<SubjectKeyIdentifier>()
        .map_err(bad("subjectKeyIdentifier extension"))?
        .map(|(_, ski)| ski.0.as_bytes().to_vec());
    let authority_key_id = tbs
        .get::<AuthorityKeyIdentifier>()
        .map_err(bad("authorityKeyIdentifier extension"))?
        .and_then(|(_, aki)| aki.key_identifier.map(|k| k.as_bytes().to_vec()));
    Ok(CertFacts {
        uri_sans,
        subject_key_id,
        authority_key_id,
        not_before: secs(tbs.validity.not_before),
        not_after: secs(tbs.validity.not_after),
        public_key_spki: tbs
            .subject_public_key_info
            .to_der()
            .map_err(bad("subjectPublicKeyInfo"))?,
        serial: template::serial_hex(tbs.serial_number.as_bytes()),
        is_ca,
        self_issued: tbs.issuer == tbs.subject,
    })
}

/// Splits concatenated DER certificates (the Workload API's encoding of
/// chains and bundles). Stops at the first element that is not a complete
/// DER SEQUENCE; never panics.
pub fn split_der_certs(mut der: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while der.first() == Some(&0x30) {
        let Some(cert) = tlv::element(der) else {
            break;
        };
        out.push(cert.to_vec());
        der = &der[cert.len()..];
    }
    out
}

//! The node selectors of an x509pop agent, as SPIRE's x509pop server
//! plugin names them (kind `x509pop`):
//!
//! - `subject:cn:<common name>` of the machine certificate
//! - `ca:fingerprint:<sha1 hex>` of each intermediate and of the root the
//!   chain was verified to
//! - `san:dns:<name>`, `san:email:<address>`, `san:ip:<address>`,
//!   `san:uri:<uri>` for each subject alternative name
//! - `serialnumber:<hex>` of the machine certificate

use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use der::Decode as _;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use super::{fingerprint, ATTESTATION_TYPE};
use crate::registration::Selector;

/// What the selectors and the agent ID are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// SHA-1 fingerprint, lowercase hex.
    pub fingerprint: String,
    /// Subject common name, if any.
    pub subject_cn: Option<String>,
    /// Serial number, lowercase hex.
    pub serial_number: String,
    /// Subject alternative names as `dns:..`, `uri:..`, `email:..`, `ip:..`.
    pub sans: Vec<String>,
}

/// Reads the leaf's facts (an error is unexpected: webpki accepted it).
pub fn leaf_facts(der: &[u8]) -> Result<LeafFacts, der::Error> {
    let cert = Certificate::from_der(der)?;
    let tbs = &cert.tbs_certificate;
    let cn_oid = const_oid::db::rfc4519::CN;
    let subject_cn = tbs
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == cn_oid)
        .and_then(|atv| {
            let v = &atv.value;
            v.decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    v.decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        });
    let sans = tbs
        .get::<SubjectAltName>()?
        .map(|(_, san)| san.0.iter().filter_map(san_string).collect())
        .unwrap_or_default();
    Ok(LeafFacts {
        fingerprint: fingerprint(der),
        subject_cn,
        serial_number: crate::ca::template::serial_hex(tbs.serial_number.as_bytes()),
        sans,
    })
}

fn san_string(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::DnsName(n) => Some(format!("dns:{n}")),
        GeneralName::UniformResourceIdentifier(u) => Some(format!("uri:{u}")),
        GeneralName::Rfc822Name(e) => Some(format!("email:{e}")),
        GeneralName::IpAddress(ip) => {
            let b = ip.as_bytes();
            let addr: std::net::IpAddr = match b.len() {
                4 => <[u8; 4]>::try_from(b).ok()?.into(),
                16 => <[u8; 16]>::try_from(b).ok()?.into(),
                _ => return None,
            };
            Some(format!("ip:{addr}"))
        }
        _ => None,
    }
}

/// The selectors for a leaf and the DER CA certificates above it. Values
/// a selector cannot hold (empty, NUL) are skipped, not fatal.
pub fn selectors(leaf: &LeafFacts, cas: &[Vec<u8>]) -> Vec<Selector> {
    let mut values = Vec::new();
    if let Some(cn) = &leaf.subject_cn {
        values.push(format!("subject:cn:{cn}"));
    }
    values.extend(
        cas.iter()
            .map(|ca| format!("ca:fingerprint:{}", fingerprint(ca))),
    );
    values.extend(leaf.sans.iter().map(|s| format!("san:{s}")));
    values.push(format!("serialnumber:{}", leaf.serial_number));
    Selector::set_of(ATTESTATION_TYPE, values)
}

//! Certificate templates: the SPIFFE X509-SVID profile (SPIFFE.md section 2)
//! written down once, for the CA certificates and for workload leaves.
//!
//! Choices, and why:
//! - Serials are random from the system CSPRNG, as SPIRE does: 128 bits for
//!   CA certificates; for workload leaves 124 bits per block of 16 and the
//!   index in the block (see [`super::serial`]), so that the issuance log
//!   can store a batch's records in groups.
//! - NotBefore is backdated [`BACKDATE_SECS`] so a peer whose clock is a little
//!   behind does not reject a fresh SVID.
//! - Leaves carry KU digitalSignature only for EC keys (keyEncipherment is an
//!   RSA key-transport usage and is wrong on EC); RSA leaves add keyEncipherment.
//! - Subject key identifiers are the SHA-1 of the subjectPublicKey bits
//!   (RFC 5280 section 4.2.1.2, method 1), the method SPIRE and most CAs use,
//!   so linters and path builders recognise them.
//! - Country is a PrintableString, as X.520 requires (rcgen's default for a
//!   plain string would be UTF8String, which strict parsers reject).
//! - CA certificates carry no pathLen and no EKU (library behaviour with EKU on
//!   intermediates varies; SPIFFE.md 2.1).

use rcgen::string::PrintableString;
#[cfg(test)]
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyIdMethod,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use time::OffsetDateTime;

#[cfg(test)]
use crate::ca::x509::SvidRequest;
use crate::spiffe::TrustDomain;

/// Seconds by which every certificate's NotBefore is moved into the past.
pub const BACKDATE_SECS: i64 = 10;

/// Why a template could not be filled in.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A timestamp outside what X.509 can carry.
    #[error("timestamp {unix} is out of range for a certificate: {source}")]
    BadTime {
        /// The unix time given.
        unix: i64,
        /// The time library's complaint.
        source: time::error::ComponentRange,
    },
    /// The CSPRNG failed.
    #[error("the system random generator failed")]
    Rng,
    /// A year a certificate's time fields cannot carry (before 0 or after 9999).
    #[error("timestamp {unix} falls in year {year}, which a certificate cannot carry")]
    YearOutOfRange {
        /// The unix time given.
        unix: i64,
        /// Its year.
        year: i32,
    },
    /// A name that must be an IA5String (ASCII) is not.
    #[error("invalid certificate field {field}: not ASCII, so not an IA5String")]
    NotAscii {
        /// The field and the value refused, e.g. `dns name "é.example"`.
        field: String,
    },
    /// rcgen refused a value (for example a DNS name it cannot encode).
    #[error("invalid certificate field {field}: {source}")]
    Field {
        /// The field and the value refused, e.g. `dns name "a b"`.
        field: String,
        /// rcgen's complaint.
        source: rcgen::Error,
    },
}

/// A fresh random 128-bit serial and its lowercase hex form.
pub fn random_serial() -> Result<(SerialNumber, String), TemplateError> {
    let bytes = random_serial_bytes()?;
    Ok((SerialNumber::from_slice(&bytes), serial_hex(&bytes)))
}

/// A fresh random, nonzero 128-bit serial.
pub fn random_serial_bytes() -> Result<[u8; 16], TemplateError> {
    let mut bytes = [0u8; 16];
    loop {
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TemplateError::Rng)?;
        // Zero is not a valid serial; the odds are 2^-128 but the loop is free.
        if bytes.iter().any(|b| *b != 0) {
            return Ok(bytes);
        }
    }
}

/// The canonical hex form of a serial: lowercase, no leading zero bytes.
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let s = hex::encode(&bytes[start..]);
    if s.is_empty() {
        "00".to_string()
    } else {
        s
    }
}

/// The RFC 5280 method-1 key identifier: SHA-1 over the subjectPublicKey bits.
pub fn key_identifier(subject_public_key_bits: &[u8]) -> Vec<u8> {
    ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        subject_public_key_bits,
    )
    .as_ref()
    .to_vec()
}

/// `C=US, O=Herald`, with the country encoded as a PrintableString.
fn base_name() -> Result<DistinguishedName, TemplateError> {
    let mut dn = DistinguishedName::new();
    let country = PrintableString::try_from("US").map_err(field("country"))?;
    dn.push(DnType::CountryName, DnValue::PrintableString(country));
    dn.push(DnType::OrganizationName, "Herald");
    Ok(dn)
}

fn time(unix: i64) -> Result<OffsetDateTime, TemplateError> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|source| TemplateError::BadTime { unix, source })
}

/// What every Herald certificate shares: a fresh random serial, the Herald
/// subject (plus the CN `common_name` derives from the serial, if any), a
/// validity backdated against clock skew, and the SKI of the certified key.
/// Returns the parameters and the serial in hex.
fn base_params(
    common_name: impl FnOnce(&str) -> Option<String>,
    subject_key_bits: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<(CertificateParams, String), TemplateError> {
    let (serial, serial_hex) = random_serial()?;
    let mut params = CertificateParams::default();
    let mut dn = base_name()?;
    if let Some(cn) = common_name(&serial_hex) {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.not_before = time(not_before - BACKDATE_SECS)?;
    params.not_after = time(not_after)?;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_identifier(subject_key_bits));
    Ok((params, serial_hex))
}

/// Parameters for a CA certificate (self-signed root or intermediate) of
/// `td`, certifying the key whose subjectPublicKey bits are given.
pub fn ca_params(
    td: &TrustDomain,
    subject_key_bits: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<(CertificateParams, String), TemplateError> {
    // The serial in the subject keeps the names of successive CAs distinct,
    // so chain builders never confuse an old authority with its successor.
    let common_name = |serial_hex: &str| {
        Some(format!(
            "Herald CA {}",
            &serial_hex[..8.min(serial_hex.len())]
        ))
    };
    let (mut params, serial_hex) =
        base_params(common_name, subject_key_bits, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![san_uri(&td.id_string())?];
    Ok((params, serial_hex))
}

/// Parameters for a workload (or agent, or server) X509-SVID, as rcgen
/// would write them: the reference that `x509/leaf_der.rs`, which signs
/// every leaf, is held to byte for byte (`x509/leaf_der_tests.rs`).
/// The names come from `req` (its ID from a registration entry or the
/// admin; the first DNS name is also the subject CN); `rsa_key` adds
/// keyEncipherment; `subject_key_bits` (the leaf key's subjectPublicKey)
/// gives the SKI; `not_before` is backdated here and `not_after` is already
/// capped at the issuer's NotAfter.
#[cfg(test)]
pub fn leaf_params(
    req: &SvidRequest<'_>,
    rsa_key: bool,
    subject_key_bits: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<(CertificateParams, String), TemplateError> {
    let common_name = |_: &str| req.dns_names.first().cloned();
    let (mut params, serial_hex) =
        base_params(common_name, subject_key_bits, not_before, not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = if rsa_key {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let mut sans = vec![san_uri(req.spiffe_id.as_str())?];
    for dns in req.dns_names {
        let name = rcgen::string::Ia5String::try_from(dns.as_str())
            .map_err(field(format!("dns name {dns:?}")))?;
        sans.push(SanType::DnsName(name));
    }
    params.subject_alt_names = sans;
    Ok((params, serial_hex))
}

fn san_uri(uri: &str) -> Result<SanType, TemplateError> {
    rcgen::string::Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(field(format!("URI SAN {uri:?}")))
}

/// The error for a value rcgen refused in `field`.
fn field(field: impl Into<String>) -> impl FnOnce(rcgen::Error) -> TemplateError {
    let field = field.into();
    move |source| TemplateError::Field { field, source }
}

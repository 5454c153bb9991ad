//! What makes a certificate an acceptable X509-SVID: a chain to one of the
//! trust domain's roots, and exactly one SPIFFE ID among its URI SANs.

use der::Decode as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use crate::spiffe::{IdError, SpiffeId, TrustDomain};

/// Why a peer's certificate was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// Chain validation failed.
    #[error("certificate chain does not verify against the trust bundle: {0}")]
    Chain(#[source] webpki::Error),
    /// None of the roots can anchor a chain.
    #[error("certificate chain does not verify against the trust bundle: the trust bundle holds no usable root")]
    NoUsableRoot,
    /// The leaf is not an X509-SVID.
    #[error("peer certificate is not an X509-SVID: {0}")]
    NotAnSvid(#[source] NotAnSvid),
    /// The SPIFFE ID is not the one expected.
    #[error("peer is {found}, expected {expected}")]
    WrongId {
        /// What the peer presented.
        found: SpiffeId,
        /// What we wanted.
        expected: SpiffeId,
    },
    /// The SPIFFE ID belongs to another trust domain than the one expected.
    #[error("peer is {found}, expected an identity of {expected}")]
    WrongTrustDomain {
        /// What the peer presented.
        found: SpiffeId,
        /// The trust domain we wanted.
        expected: TrustDomain,
    },
}

/// Why a certificate is not an X509-SVID.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotAnSvid {
    /// The certificate or its SAN extension does not decode.
    #[error("{0}")]
    Der(#[source] der::Error),
    /// No subjectAltName extension at all.
    #[error("no subjectAltName")]
    NoSan,
    /// Zero or several URI SANs.
    #[error("{0} URI SANs; an X509-SVID has exactly one")]
    UriCount(usize),
    /// The one URI SAN is not a SPIFFE ID.
    #[error("{0}")]
    BadId(#[source] IdError),
}

/// The single SPIFFE ID in a certificate's URI SANs.
pub fn spiffe_id_of(cert_der: &[u8]) -> Result<SpiffeId, PeerError> {
    id_in(&decode(cert_der)?)
}

/// The single SPIFFE ID in a certificate's URI SANs and the certificate's
/// serial number (its DER INTEGER content, sign byte included), from one
/// decoding: what a server needs to tell whether the SVID a client
/// presents is the one its records say is current.
pub fn spiffe_id_and_serial_of(cert_der: &[u8]) -> Result<(SpiffeId, Vec<u8>), PeerError> {
    let cert = decode(cert_der)?;
    let id = id_in(&cert)?;
    Ok((id, cert.tbs_certificate.serial_number.as_bytes().to_vec()))
}

fn decode(cert_der: &[u8]) -> Result<x509_cert::Certificate, PeerError> {
    x509_cert::Certificate::from_der(cert_der).map_err(|e| PeerError::NotAnSvid(NotAnSvid::Der(e)))
}

fn id_in(cert: &x509_cert::Certificate) -> Result<SpiffeId, PeerError> {
    let not_an_svid = PeerError::NotAnSvid;
    let san = cert
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(|e| not_an_svid(NotAnSvid::Der(e)))?
        .ok_or_else(|| not_an_svid(NotAnSvid::NoSan))?
        .1;
    let uris: Vec<String> = san
        .0
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one).map_err(|e| not_an_svid(NotAnSvid::BadId(e))),
        _ => Err(not_an_svid(NotAnSvid::UriCount(uris.len()))),
    }
}

/// Validates `leaf` + `intermediates` up to one of `roots` for `usage`, and
/// returns the leaf's SPIFFE ID.
pub fn verify_svid(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[Vec<u8>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<SpiffeId, PeerError> {
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    if anchors.is_empty() {
        return Err(PeerError::NoUsableRoot);
    }
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(PeerError::Chain)?;
    ee.verify_for_usage(
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
        &anchors,
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(PeerError::Chain)?;
    spiffe_id_of(leaf)
}

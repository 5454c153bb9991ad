//! rustls configuration that authenticates peers by SPIFFE ID.
//!
//! Web PKI verification checks DNS names; SPIFFE peers are named by the one
//! URI SAN of their X509-SVID instead. These verifiers run the same chain
//! validation (rustls-webpki, ring) against the trust domain's current roots
//! and then check the SPIFFE ID. Roots live behind a shared handle so that a
//! bundle change takes effect on the next handshake without rebuilding
//! listeners.

use std::sync::{Arc, RwLock};

use der::Decode as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use crate::spiffe::SpiffeId;

/// Why a peer's certificate was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Chain validation failed.
    #[error("certificate chain does not verify against the trust bundle: {0}")]
    Chain(String),
    /// The leaf is not an X509-SVID.
    #[error("peer certificate is not an X509-SVID: {0}")]
    NotAnSvid(String),
    /// The SPIFFE ID is not the one expected.
    #[error("peer is {found}, expected {expected}")]
    WrongId {
        /// What the peer presented.
        found: SpiffeId,
        /// What we wanted.
        expected: SpiffeId,
    },
}

/// The trust domain's current root certificates (DER), shared and updatable.
#[derive(Debug, Clone, Default)]
pub struct Roots(Arc<RwLock<Vec<Vec<u8>>>>);

impl Roots {
    /// A handle holding `roots`.
    pub fn new(roots: Vec<Vec<u8>>) -> Self {
        Roots(Arc::new(RwLock::new(roots)))
    }

    /// Replaces the roots (a bundle update).
    pub fn set(&self, roots: Vec<Vec<u8>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roots;
    }

    /// The current roots.
    pub fn get(&self) -> Vec<Vec<u8>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The crypto provider every Herald TLS config uses: ring, nothing else.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The single SPIFFE ID in a certificate's URI SANs.
pub fn spiffe_id_of(cert_der: &[u8]) -> Result<SpiffeId, PeerError> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| PeerError::NotAnSvid(e.to_string()))?;
    let san = cert
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(|e| PeerError::NotAnSvid(e.to_string()))?
        .ok_or_else(|| PeerError::NotAnSvid("no subjectAltName".into()))?
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
        [one] => SpiffeId::parse(one).map_err(|e| PeerError::NotAnSvid(e.to_string())),
        _ => Err(PeerError::NotAnSvid(format!(
            "{} URI SANs; an X509-SVID has exactly one",
            uris.len()
        ))),
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
        return Err(PeerError::Chain(
            "the trust bundle holds no usable root".into(),
        ));
    }
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| PeerError::Chain(e.to_string()))?;
    ee.verify_for_usage(
        algorithms().all,
        &anchors,
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(|e| PeerError::Chain(e.to_string()))?;
    spiffe_id_of(leaf)
}

fn tls_error(e: PeerError) -> rustls::Error {
    rustls::Error::General(e.to_string())
}

// === impl ServerIdVerifier ===

/// The agent's view of its server: the server must present an SVID for
/// exactly `expected` that chains to `roots`. With `insecure`, any server is
/// accepted (development bootstrap only).
#[derive(Debug)]
pub struct ServerIdVerifier {
    roots: Roots,
    expected: SpiffeId,
    insecure: bool,
}

impl ServerIdVerifier {
    /// A verifier for server `expected` under `roots`.
    pub fn new(roots: Roots, expected: SpiffeId, insecure: bool) -> Self {
        ServerIdVerifier {
            roots,
            expected,
            insecure,
        }
    }
}

impl ServerCertVerifier for ServerIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let id = verify_svid(
            end_entity,
            intermediates,
            &self.roots.get(),
            now,
            webpki::KeyUsage::server_auth(),
        )
        .map_err(tls_error)?;
        if id != self.expected {
            return Err(tls_error(PeerError::WrongId {
                found: id,
                expected: self.expected.clone(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

// === impl OptionalSvidClientVerifier ===

/// The server's view of a client: no certificate is fine (attestation comes
/// first), but a presented certificate must be an SVID chaining to `roots`.
/// Which SPIFFE IDs may call what is decided per RPC, not here.
#[derive(Debug)]
pub struct OptionalSvidClientVerifier {
    roots: Roots,
}

impl OptionalSvidClientVerifier {
    /// A verifier under `roots`.
    pub fn new(roots: Roots) -> Self {
        OptionalSvidClientVerifier { roots }
    }
}

impl ClientCertVerifier for OptionalSvidClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_svid(
            end_entity,
            intermediates,
            &self.roots.get(),
            now,
            webpki::KeyUsage::client_auth(),
        )
        .map_err(tls_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// A certificate chain and its key, in rustls types.
pub fn certified_key(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec())),
    )
}

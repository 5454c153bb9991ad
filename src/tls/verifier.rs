//! The one SPIFFE certificate verifier, in the two shapes rustls asks for:
//! [`ServerIdVerifier`] (a client checking its server) and
//! [`OptionalSvidClientVerifier`] (a server checking its clients). Both are
//! an [`SvidVerifier`]: chain validation against shared [`Roots`], then an
//! [`ExpectedPeer`] rule on the SPIFFE ID.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};

use super::{verify_svid, PeerError, Roots};
use crate::spiffe::{SpiffeId, TrustDomain};

/// Which SPIFFE IDs a verifier accepts once the chain is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Exactly this ID (a server we connect to).
    Id(SpiffeId),
    /// Any ID of this trust domain.
    MemberOf(TrustDomain),
    /// Any ID at all: who may do what is decided later, per request.
    AnySvid,
}

impl ExpectedPeer {
    fn check(&self, found: SpiffeId) -> Result<SpiffeId, PeerError> {
        match self {
            ExpectedPeer::Id(expected) if &found != expected => Err(PeerError::WrongId {
                found,
                expected: expected.clone(),
            }),
            ExpectedPeer::MemberOf(td) if found.trust_domain() != td => {
                Err(PeerError::WrongTrustDomain {
                    found,
                    expected: td.clone(),
                })
            }
            _ => Ok(found),
        }
    }
}

/// Chain validation up to the current `roots`, then the `expected` rule.
#[derive(Debug)]
pub struct SvidVerifier {
    roots: Roots,
    expected: ExpectedPeer,
}

impl SvidVerifier {
    /// A verifier accepting `expected` under `roots`.
    pub fn new(roots: Roots, expected: ExpectedPeer) -> Self {
        SvidVerifier { roots, expected }
    }

    /// The peer's SPIFFE ID, if its chain (`leaf` + `intermediates`) is valid
    /// for `usage` now and its ID is one we expect.
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, PeerError> {
        let found = verify_svid(leaf, intermediates, &self.roots.get(), now, usage)?;
        self.expected.check(found)
    }

    /// [`Self::verify`] as a rustls verifier answers: the ID is not needed,
    /// a refusal is a [`refusal`].
    fn admit(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<(), rustls::Error> {
        self.verify(leaf, intermediates, now, usage)
            .map(drop)
            .map_err(refusal)
    }
}

/// A refusal as rustls carries it; the [`PeerError`] stays reachable
/// (downcast the `OtherError`) for callers that report why.
fn refusal(e: PeerError) -> rustls::Error {
    rustls::Error::Other(OtherError(Arc::new(e)))
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// What a handshake-signature check answers, in the verifier traits' terms.
type SigCheck = Result<HandshakeSignatureValid, rustls::Error>;
type Cert<'a> = CertificateDer<'a>;
type Dss = DigitallySignedStruct;

/// The handshake-signature checks both verifier traits require, identical
/// for every SPIFFE verifier: ring's algorithms, nothing else.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(&self, msg: &[u8], cert: &Cert<'_>, dss: &Dss) -> SigCheck {
            rustls::crypto::verify_tls12_signature(msg, cert, dss, &algorithms())
        }

        fn verify_tls13_signature(&self, msg: &[u8], cert: &Cert<'_>, dss: &Dss) -> SigCheck {
            rustls::crypto::verify_tls13_signature(msg, cert, dss, &algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            algorithms().supported_schemes()
        }
    };
}

// === impl ServerIdVerifier ===

/// A client's view of its server: the server must present an SVID for
/// exactly the expected ID that chains to the roots. With `insecure`, any
/// server is accepted (development bootstrap only).
#[derive(Debug)]
pub struct ServerIdVerifier {
    svid: SvidVerifier,
    insecure: bool,
}

impl ServerIdVerifier {
    /// A verifier for server `expected` under `roots`.
    pub fn new(roots: Roots, expected: SpiffeId, insecure: bool) -> Self {
        ServerIdVerifier {
            svid: SvidVerifier::new(roots, ExpectedPeer::Id(expected)),
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
        let usage = webpki::KeyUsage::server_auth();
        self.svid.admit(end_entity, intermediates, now, usage)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

// === impl UnverifiedServer ===

/// A client's view of a server it was told not to check: any certificate
/// is accepted (the handshake signature is still checked, so the peer holds
/// the key of what it presented). Only for an operator's explicit choice:
/// the k8s attestor's `skip_kubelet_verification`, and the PostgreSQL
/// store's `sslmode = "require"` (and `prefer`), which like libpq's modes
/// encrypt without authenticating.
#[derive(Debug)]
pub struct UnverifiedServer;

impl ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

// === impl OptionalSvidClientVerifier ===

/// A server's view of a client: no certificate is fine (attestation comes
/// first), but a presented certificate must be an SVID chaining to the
/// roots. Which SPIFFE IDs may call what is decided per RPC, not here.
#[derive(Debug)]
pub struct OptionalSvidClientVerifier {
    svid: SvidVerifier,
}

impl OptionalSvidClientVerifier {
    /// A verifier under `roots`, accepting any SPIFFE ID.
    pub fn new(roots: Roots) -> Self {
        OptionalSvidClientVerifier {
            svid: SvidVerifier::new(roots, ExpectedPeer::AnySvid),
        }
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
        let usage = webpki::KeyUsage::client_auth();
        self.svid.admit(end_entity, intermediates, now, usage)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn expected_peer_rules() {
        let exact = ExpectedPeer::Id(id("spiffe://a.org/server"));
        assert!(exact.check(id("spiffe://a.org/server")).is_ok());
        assert!(matches!(
            exact.check(id("spiffe://a.org/other")),
            Err(PeerError::WrongId { .. })
        ));
        let member = ExpectedPeer::MemberOf(TrustDomain::new("a.org").unwrap());
        assert!(member.check(id("spiffe://a.org/anything")).is_ok());
        assert!(matches!(
            member.check(id("spiffe://b.org/anything")),
            Err(PeerError::WrongTrustDomain { .. })
        ));
        assert!(ExpectedPeer::AnySvid.check(id("spiffe://b.org/x")).is_ok());
    }

    #[test]
    fn refusals_keep_the_peer_error() {
        let e = refusal(PeerError::NoUsableRoot);
        let rustls::Error::Other(OtherError(inner)) = &e else {
            panic!("{e:?}");
        };
        assert!(matches!(
            inner.downcast_ref::<PeerError>(),
            Some(PeerError::NoUsableRoot)
        ));
    }
}

//! x509pop node attestation (SPIRE's "X.509 proof of possession"): a
//! machine that holds a certificate from an existing PKI proves, on each
//! attestation, that it holds the certificate's private key now.
//!
//! The proof is a signature by the machine key over a server challenge and
//! the agent's CSR (see [`signed_message`]), so it can neither be replayed
//! after the challenge expires nor be reused for another agent key.
//!
//! - [`challenge`]: stateless, MAC'd, short-lived nonces.
//! - [`template`]: the agent ID path template over the certificate.
//! - [`verify`]: chain, signature and challenge checks, and the selectors.
//!
//! Shared by the server (verifies) and the agent (signs); imports neither.

pub mod challenge;
pub mod selectors;
pub mod template;
#[doc(hidden)]
pub mod test_pki;
pub mod verify;

pub use challenge::{ChallengeError, ChallengeKey};
pub use template::{PathTemplate, TemplateError};
pub use verify::{Verified, VerifyError, X509PopVerifier};

/// The attestation type recorded on agents and the selector kind.
pub const ATTESTATION_TYPE: &str = "x509pop";

/// Domain separation: a machine key signature made for Herald's x509pop can
/// never be mistaken for a signature of anything else the key signs.
pub const SIGNATURE_LABEL: &[u8] = b"herald-x509pop-v1\0";

/// What the machine key signs: `SIGNATURE_LABEL || challenge || SHA-256(csr)`.
pub fn signed_message(challenge: &[u8], csr: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, csr);
    let mut m = Vec::with_capacity(SIGNATURE_LABEL.len() + challenge.len() + 32);
    m.extend_from_slice(SIGNATURE_LABEL);
    m.extend_from_slice(challenge);
    m.extend_from_slice(digest.as_ref());
    m
}

/// Lowercase hex SHA-1 of a DER certificate: SPIRE's x509pop fingerprint.
/// SHA-1 only names a certificate here (as SPIRE does); nothing is trusted
/// because of it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

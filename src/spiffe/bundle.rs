//! SPIFFE bundles (SPIFFE_Trust_Domain_and_Bundle.md §4; SPIFFE.md §5).
//!
//! A bundle is the set of authorities a relying party trusts for one trust
//! domain. It travels in three shapes, all produced here: the SPIFFE bundle
//! JSON served by bundle endpoints and exchanged in federation, the plain
//! JWKS the Workload API returns for JWT bundles, and concatenated DER for
//! X.509 bundles. Parsing follows go-spiffe where the spec leaves room,
//! because SPIRE peers are what we federate with.

use der::{Decode as _, Encode as _};
use x509_cert::Certificate;

use super::id::TrustDomain;
use super::jwk::JwkError;

mod budget;
mod decode;
mod encode;

pub use budget::VALUES_PER_KEY;

const USE_X509: &str = "x509-svid";
const USE_JWT: &str = "jwt-svid";

/// Why a bundle could not be read or written. Parse errors name the
/// offending `keys[index]` and member so a federation operator can find it.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The document is not JSON (or repeats a member name).
    #[error("bundle is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The top level is not an object.
    #[error("bundle must be a JSON object")]
    NotAnObject,
    /// `keys` is absent; the spec requires it even when there are no keys.
    #[error("bundle has no `keys` member (it is required, even if empty)")]
    MissingKeys,
    /// `keys` holds more elements than the reader accepts (for a peer's
    /// bundle, the server's `limits.federation_max_bundle_keys`).
    #[error("bundle has more than {limit} keys")]
    TooManyKeys {
        /// The most accepted.
        limit: usize,
    },
    /// The document holds more JSON values than its key limit allows
    /// ([`VALUES_PER_KEY`] per key), wherever they are.
    #[error("bundle has more than {limit} JSON values")]
    TooManyValues {
        /// The most accepted.
        limit: usize,
    },
    /// `keys` is not an array.
    #[error("bundle member `keys` must be an array")]
    KeysNotArray,
    /// `spiffe_sequence` or `spiffe_refresh_hint` is negative, fractional, too large or not a number.
    #[error("bundle member `{member}` must be a non-negative integer that fits in 64 bits")]
    BadInteger {
        /// `spiffe_sequence` or `spiffe_refresh_hint`.
        member: &'static str,
    },
    /// An element of `keys` is not an object.
    #[error("keys[{index}] must be a JSON object")]
    KeyNotObject {
        /// Position in `keys`.
        index: usize,
    },
    /// The key parameters of a JWK are invalid.
    #[error("keys[{index}] ({key_use}): {source}")]
    KeyParams {
        /// Position in `keys`.
        index: usize,
        /// The JWK's `use`.
        key_use: &'static str,
        /// What was wrong with the parameters.
        source: JwkError,
    },
    /// `x5c` is absent or not an array.
    #[error("keys[{index}] (x509-svid): `x5c` is missing or not an array")]
    MissingX5c {
        /// Position in `keys`.
        index: usize,
    },
    /// `x5c` must carry exactly the one CA certificate (go-spiffe enforces this).
    #[error("keys[{index}] (x509-svid): `x5c` must hold exactly one certificate, found {count}")]
    X5cCount {
        /// Position in `keys`.
        index: usize,
        /// Number of entries found.
        count: usize,
    },
    /// `x5c[0]` is not a string.
    #[error("keys[{index}] (x509-svid): `x5c[0]` must be a string")]
    X5cNotString {
        /// Position in `keys`.
        index: usize,
    },
    /// `x5c[0]` is not standard padded base64 (it is not base64url).
    #[error("keys[{index}] (x509-svid): `x5c[0]` is not standard base64: {source}")]
    X5cBase64 {
        /// Position in `keys`.
        index: usize,
        /// Decoder's complaint.
        source: base64::DecodeError,
    },
    /// `x5c[0]` does not decode as an X.509 certificate.
    #[error("keys[{index}] (x509-svid): `x5c[0]` is not a DER X.509 certificate: {source}")]
    X5cCertificate {
        /// Position in `keys`.
        index: usize,
        /// DER decoder's complaint.
        source: der::Error,
    },
    /// The certificate's key is of a type JWK cannot express here.
    #[error("keys[{index}] (x509-svid): public key of the `x5c[0]` certificate: {source}")]
    X5cPublicKey {
        /// Position in `keys`.
        index: usize,
        /// Why the key was refused.
        source: JwkError,
    },
    /// The JWK parameters describe a different key than the certificate (go-jose rejects this).
    #[error("keys[{index}] (x509-svid): key parameters do not match the public key of the `x5c[0]` certificate")]
    X5cKeyMismatch {
        /// Position in `keys`.
        index: usize,
    },
    /// A JWT key without a usable `kid`: validators select keys by it.
    #[error("keys[{index}] (jwt-svid): `kid` must be present and a non-empty string")]
    MissingKid {
        /// Position in `keys`.
        index: usize,
    },
    /// Two JWT keys share a `kid`, so a token's key would be ambiguous.
    #[error("keys[{index}] (jwt-svid): `kid` {kid:?} is already used by keys[{first}]")]
    DuplicateKid {
        /// Position of the repeat.
        index: usize,
        /// Position of the first use.
        first: usize,
        /// The repeated key ID.
        kid: String,
    },
    /// An X.509 authority in the bundle is not a DER certificate.
    #[error("x509 authority {index} is not a DER X.509 certificate: {source}")]
    AuthorityCertificate {
        /// Position in `x509_authorities`.
        index: usize,
        /// DER decoder's complaint.
        source: der::Error,
    },
    /// An X.509 authority's public key cannot be written as a JWK.
    #[error("x509 authority {index}: {source}")]
    AuthorityKey {
        /// Position in `x509_authorities`.
        index: usize,
        /// Why the key was refused.
        source: JwkError,
    },
    /// A JWT authority's key cannot be written as a JWK.
    #[error("JWT authority {kid:?}: {source}")]
    JwtAuthorityKey {
        /// The authority's key ID.
        kid: String,
        /// Why the key was refused.
        source: JwkError,
    },
    /// A JWT authority with an empty or repeated key ID, which our own parser would refuse.
    #[error("JWT authority {index} has an empty key ID or one already used by another authority")]
    BadAuthorityKid {
        /// Position in `jwt_authorities`.
        index: usize,
    },
}

/// A key that signs JWT-SVIDs, published under `kid` so validators can pick it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The JWT header `kid` that selects this key.
    pub key_id: String,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// Unix seconds after which the key is retired; kept in our store only,
    /// since the bundle format has no member for it.
    pub expires_at: Option<i64>,
}

/// The trust anchors of one trust domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// Whose authorities these are; never mixed with another domain's.
    pub trust_domain: TrustDomain,
    /// DER CA certificates that X509-SVIDs chain to.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Keys that sign JWT-SVIDs.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// `spiffe_sequence`: must change whenever the contents change.
    pub sequence: u64,
    /// `spiffe_refresh_hint` in seconds: how often consumers should re-poll.
    pub refresh_hint: Option<u64>,
}

// === impl Bundle ===

impl Bundle {
    /// An empty bundle: valid, but it trusts nothing.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            sequence: 0,
            refresh_hint: None,
        }
    }

    /// The JWT authority a token's `kid` names, if this bundle has it.
    pub fn jwt_authority(&self, key_id: &str) -> Option<&JwtAuthority> {
        self.jwt_authorities.iter().find(|a| a.key_id == key_id)
    }

    /// The Workload API's X.509 bundle form.
    pub fn x509_authorities_concat(&self) -> Vec<u8> {
        self.x509_authorities.concat()
    }
}

/// The SubjectPublicKeyInfo DER of a DER certificate: how an X.509
/// authority's key is compared with, and written as, a JWK.
fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, der::Error> {
    Certificate::from_der(cert_der)?
        .tbs_certificate
        .subject_public_key_info
        .to_der()
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;

//! Public keys as JWK parameters (RFC 7517/7518) and back to SubjectPublicKeyInfo.
//!
//! Keys live as SPKI DER everywhere else in Herald (that is what ring, rcgen
//! and certificates speak); bundles and JWKS documents need the JWK form. The
//! conversion is exact in both directions so that the x509-svid consistency
//! check (the JWK must match its `x5c` certificate) is a plain equality, and so
//! that a JWT key read back from a bundle verifies with ring unchanged.

use const_oid::db::rfc5912::{SECP_256_R_1, SECP_384_R_1, SECP_521_R_1};
use const_oid::ObjectIdentifier;

mod checks;
mod members;
mod spki_der;

pub use members::JwkJson;

/// Why a key could not be converted between SPKI DER and JWK form.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    /// The SPKI (or its RSAPublicKey) is not valid DER, or re-encoding failed.
    #[error("public key is not valid DER: {0}")]
    Der(#[from] der::Error),
    /// Neither id-ecPublicKey nor rsaEncryption.
    #[error(
        "public key algorithm {oid} is not supported (expected id-ecPublicKey or rsaEncryption)"
    )]
    UnsupportedAlgorithm {
        /// Dotted OID found in the SPKI.
        oid: String,
    },
    /// id-ecPublicKey whose parameters are not one of the three named NIST curves.
    #[error("EC public key curve is not supported (expected P-256, P-384 or P-521): {detail}")]
    UnsupportedCurveOid {
        /// The OID found, or why none could be read.
        detail: String,
    },
    /// rsaEncryption parameters must be NULL (or absent).
    #[error("rsaEncryption parameters must be NULL")]
    RsaParameters,
    /// The subjectPublicKey BIT STRING has unused bits, so it is not a byte string.
    #[error("subjectPublicKey BIT STRING has unused bits")]
    UnusedBits,
    /// The EC point is compressed, of the wrong size, or otherwise not `04 || x || y`.
    #[error("EC point for {curve} must be uncompressed (0x04 || x || y) and {expected} bytes long, got {got} bytes")]
    BadEcPoint {
        /// JWK curve name.
        curve: &'static str,
        /// Required encoded length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// RSAPublicKey is not exactly `SEQUENCE { INTEGER n, INTEGER e }`.
    #[error("RSAPublicKey must be SEQUENCE {{ n INTEGER, e INTEGER }}, found {count} integers")]
    RsaPublicKeyShape {
        /// How many integers the SEQUENCE held.
        count: usize,
    },
    /// An RSA modulus or exponent of zero.
    #[error("RSA `{member}` is zero or empty")]
    ZeroRsaComponent {
        /// `n` or `e`.
        member: &'static str,
    },
    /// A required JWK member is absent.
    #[error("JWK member `{member}` is missing")]
    MissingMember {
        /// Member name.
        member: &'static str,
    },
    /// A JWK member that must be a string is something else.
    #[error("JWK member `{member}` must be a string")]
    NotAString {
        /// Member name.
        member: &'static str,
    },
    /// A JWK member is not unpadded base64url.
    #[error("JWK member `{member}` is not unpadded base64url: {source}")]
    Base64 {
        /// Member name.
        member: &'static str,
        /// Decoder's complaint.
        source: base64::DecodeError,
    },
    /// An EC coordinate that is not exactly the curve's length (go-jose enforces this).
    #[error("JWK member `{member}` must be {expected} bytes for {curve}, got {got}")]
    CoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// JWK curve name.
        curve: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A `kty` other than `EC` or `RSA`.
    #[error("JWK `kty` {kty:?} is not supported (expected \"EC\" or \"RSA\")")]
    UnsupportedKty {
        /// The value found.
        kty: String,
    },
    /// A `crv` other than the three NIST curves.
    #[error("JWK `crv` {crv:?} is not supported (expected \"P-256\", \"P-384\" or \"P-521\")")]
    UnsupportedCrv {
        /// The value found.
        crv: String,
    },
}

/// The NIST curves JWT-SVIDs and X509-SVIDs use (ES256/ES384/ES512).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// secp256r1 / prime256v1.
    P256,
    /// secp384r1.
    P384,
    /// secp521r1.
    P521,
}

impl EcCurve {
    /// The JWK `crv` value.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// Bytes per coordinate: JWK `x`/`y` must be exactly this long.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The namedCurve OID carried in the SPKI AlgorithmIdentifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => SECP_256_R_1,
            Self::P384 => SECP_384_R_1,
            Self::P521 => SECP_521_R_1,
        }
    }

    /// Inverse of [`EcCurve::jwk_name`].
    pub fn from_jwk_name(crv: &str) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|c| c.jwk_name() == crv)
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|c| c.oid() == oid)
    }
}

/// A public key in JWK terms: raw big-endian numbers, no encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JwkKeyParams {
    /// An uncompressed EC point; `x` and `y` are exactly [`EcCurve::coordinate_len`] bytes.
    Ec {
        /// Curve.
        crv: EcCurve,
        /// X coordinate, left-padded with zeros.
        x: Vec<u8>,
        /// Y coordinate, left-padded with zeros.
        y: Vec<u8>,
    },
    /// An RSA public key with leading zero bytes stripped.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
}

// === impl JwkKeyParams ===

impl JwkKeyParams {
    /// The `kty` value.
    pub fn kty(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "EC",
            Self::Rsa { .. } => "RSA",
        }
    }
}

#[cfg(test)]
#[path = "jwk_tests.rs"]
mod tests;

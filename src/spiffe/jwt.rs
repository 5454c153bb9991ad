//! JWT-SVID shapes (JWT-SVID.md; SPIFFE.md §3): building the signing input
//! and taking a compact token apart.
//!
//! No cryptography happens here: `ca` signs the string [`encode_unsigned`]
//! returns and verifies [`ParsedJwt::signature`] over
//! [`ParsedJwt::signing_input`] with ring. Keeping the shape rules apart means
//! every rule the spec and real clients impose (the closed header set, the
//! algorithm allow-list, integer `exp`, at most 32 audiences) is checked in
//! one place and the same way on both sides, so we never mint a token that
//! our own validator, rust-spiffe or go-spiffe would refuse.
//!
//! This file holds the types; `encode` builds the signing input, `parse`
//! takes a token apart, and `rules` holds the checks both apply.

use serde_json::{Map, Value};

use super::id::{IdError, SpiffeId};
pub use super::jwa::JwtAlgorithm;

mod encode;
mod parse;
mod rules;

pub use encode::encode_unsigned;
pub use parse::parse_compact;

/// Longest token we look at; real JWT-SVIDs are well under 2 KiB.
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// rust-spiffe's cap on `aud` entries; staying within it keeps our tokens
/// parseable by Rust workloads.
const MAX_AUDIENCES: usize = 32;

/// Claims with their own fields in [`JwtClaims`]; `extra` must not repeat them.
const RESERVED_CLAIMS: [&str; 4] = ["sub", "aud", "exp", "iat"];

/// Why a JWT-SVID could not be built or parsed.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Over the 64 KiB cap.
    #[error("token is {len} bytes long; the limit is 65536")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// Not `header.claims.signature` (JWS JSON serialization is forbidden too).
    #[error("token must be three '.'-separated parts (JWS compact), found {count}")]
    PartCount {
        /// Number of parts found.
        count: usize,
    },
    /// A part is not unpadded base64url.
    #[error("token {part} is not unpadded base64url: {source}")]
    Base64 {
        /// `header`, `claims` or `signature`.
        part: &'static str,
        /// Decoder's complaint.
        source: base64::DecodeError,
    },
    /// The signature part is empty, as in an unsecured (`alg: none`) JWT.
    #[error("token signature is empty")]
    EmptySignature,
    /// A part is not JSON, or repeats a member name.
    #[error("token {part} is not valid JSON: {source}")]
    Json {
        /// `header` or `claims`.
        part: &'static str,
        /// Parser's complaint.
        source: serde_json::Error,
    },
    /// A part is JSON but not an object.
    #[error("token {part} must be a JSON object")]
    NotAnObject {
        /// `header` or `claims`.
        part: &'static str,
    },
    /// The spec forbids every header but `alg`, `kid` and `typ`.
    #[error("header member {name:?} is not allowed in a JWT-SVID (only alg, kid and typ)")]
    UnexpectedHeader {
        /// The member found.
        name: String,
    },
    /// `alg` or `kid` is missing.
    #[error("header member `{name}` is missing")]
    MissingHeader {
        /// Member name.
        name: &'static str,
    },
    /// A header member that must be a string is not.
    #[error("header member `{name}` must be a string")]
    HeaderNotString {
        /// Member name.
        name: &'static str,
    },
    /// `alg` outside the nine the spec allows (no `none`, HS*, EdDSA).
    #[error("algorithm {alg:?} is not allowed for JWT-SVIDs (RS/PS/ES 256/384/512 only)")]
    UnsupportedAlgorithm {
        /// The value found.
        alg: String,
    },
    /// An empty `kid`: validators select the key by it.
    #[error("header member `kid` must not be empty")]
    EmptyKid,
    /// `typ` other than `JWT` or `JOSE`.
    #[error("header member `typ` must be \"JWT\" or \"JOSE\", found {typ:?}")]
    BadTyp {
        /// The value found.
        typ: String,
    },
    /// `sub`, `aud` or `exp` is missing.
    #[error("claim `{name}` is missing")]
    MissingClaim {
        /// Claim name.
        name: &'static str,
    },
    /// `sub` is not a string.
    #[error("claim `sub` must be a string")]
    SubjectNotString,
    /// `sub` is not a valid SPIFFE ID.
    #[error("claim `sub` is not a valid SPIFFE ID: {0}")]
    BadSubject(#[source] IdError),
    /// `sub` names a trust domain rather than a workload.
    #[error("claim `sub` must be a workload SPIFFE ID with a path, not a trust-domain ID")]
    SubjectWithoutPath,
    /// `aud` is neither a string nor an array.
    #[error("claim `aud` must be a string or an array of strings")]
    AudienceNotStringOrArray,
    /// An `aud` array element is not a string.
    #[error("claim `aud[{index}]` must be a string")]
    AudienceNotString {
        /// Position in the array.
        index: usize,
    },
    /// `aud` is an empty array.
    #[error("claim `aud` must name at least one audience")]
    EmptyAudience,
    /// More audiences than rust-spiffe accepts.
    #[error("claim `aud` has {count} entries; the limit is 32")]
    TooManyAudiences {
        /// Number of entries.
        count: usize,
    },
    /// `exp` or `iat` is a float, exponent form, out of range or not a number.
    #[error("claim `{name}` must be an integer number of seconds (no fraction or exponent)")]
    NotAnInteger {
        /// Claim name.
        name: &'static str,
    },
    /// [`JwtClaims::extra`] repeats a claim that has its own field.
    #[error("extra claim {name:?} duplicates a standard claim field")]
    ReservedClaim {
        /// The claim name.
        name: String,
    },
    /// Serialising the header or claims failed.
    #[error("cannot serialise token: {0}")]
    Serialize(#[source] serde_json::Error),
}

/// The JOSE header; the spec allows nothing beyond these three members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtHeader {
    /// Signature algorithm.
    pub alg: JwtAlgorithm,
    /// Key ID in the trust domain's JWT bundle; every real client requires it.
    pub kid: String,
    /// `JWT` or `JOSE` when present; SPIRE and Herald write `JWT`.
    pub typ: Option<String>,
}

/// The claims of a JWT-SVID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtClaims {
    /// The workload's SPIFFE ID; its trust domain picks the validating bundle.
    pub sub: SpiffeId,
    /// Audiences; always written as an array, as SPIRE does.
    pub aud: Vec<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issue time, unix seconds.
    pub iat: Option<i64>,
    /// Any other claims (`iss`, `jti`, `nbf`, private ones), kept for
    /// `ValidateJWTSVID` responses.
    pub extra: Map<String, Value>,
}

/// A token taken apart but **not yet verified**: nothing in it may be trusted
/// until `ca` has checked `signature` over `signing_input`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedJwt {
    /// Header.
    pub header: JwtHeader,
    /// Claims.
    pub claims: JwtClaims,
    /// `base64url(header).base64url(claims)` exactly as received.
    pub signing_input: String,
    /// Raw signature bytes (for ECDSA, the fixed-width `r || s` of JWS).
    pub signature: Vec<u8>,
}

// === impl JwtClaims ===

impl JwtClaims {
    /// Whether `aud` names the validator; the check every validator must make.
    pub fn has_audience(&self, aud: &str) -> bool {
        self.aud.iter().any(|a| a == aud)
    }

    /// All claims as one JSON object (`aud` as an array), the form
    /// `ValidateJWTSVID` returns.
    pub fn to_json_object(&self) -> Map<String, Value> {
        let mut out = self.extra.clone();
        out.insert("sub".into(), Value::String(self.sub.as_str().to_owned()));
        out.insert(
            "aud".into(),
            Value::Array(self.aud.iter().cloned().map(Value::String).collect()),
        );
        out.insert("exp".into(), Value::from(self.exp));
        if let Some(iat) = self.iat {
            out.insert("iat".into(), Value::from(iat));
        }
        out
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;

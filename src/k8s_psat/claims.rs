//! A projected service-account token taken apart, without checking its
//! signature: the JOSE header (`alg`, `kid`), the registered claims and
//! Kubernetes' private `kubernetes.io` claim. The shape is the one
//! Kubernetes documents ("Schema for service account private claims",
//! kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin;
//! sample in `tests/fixtures/k8s/`):
//!
//! ```json
//! { "aud": ["herald-server"], "exp": 1729605240, "iat": 1729601640,
//!   "iss": "https://kubernetes.default.svc.cluster.local",
//!   "jti": "…", "nbf": 1729601640,
//!   "sub": "system:serviceaccount:herald:herald-agent",
//!   "kubernetes.io": { "namespace": "herald",
//!     "node": { "name": "…", "uid": "…" }, "pod": { "name": "…", "uid": "…" },
//!     "serviceaccount": { "name": "herald-agent", "uid": "…" } } }
//! ```
//!
//! Legacy Secret-based tokens (no `exp`, flat `kubernetes.io/serviceaccount/*`
//! claims) are refused: they never expire and are bound to nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::PodIdentity;
use crate::spiffe::jwt::JwtAlgorithm;

/// The longest token looked at; projected tokens are about 1 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The longest name or UID taken from a token (Kubernetes names are at
/// most 253 characters).
const MAX_NAME_LEN: usize = 253;

/// Why a token could not be taken apart. The messages never quote the token.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    /// Over [`MAX_TOKEN_LEN`].
    #[error("the token is {len} bytes long; the limit is {MAX_TOKEN_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not `header.claims.signature`.
    #[error("the token is not a JWT (three '.'-separated parts; found {count})")]
    PartCount {
        /// Parts found.
        count: usize,
    },
    /// A part is not unpadded base64url.
    #[error("the token's {part} is not base64url")]
    Base64 {
        /// `header`, `claims` or `signature`.
        part: &'static str,
    },
    /// A part is not the JSON object it should be.
    #[error("the token's {part} is not a valid JSON object")]
    Json {
        /// `header` or `claims`.
        part: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// `alg` is not a signature algorithm we verify (`none`, HMAC, ...).
    #[error("the token's algorithm {alg:?} is not accepted (RS256, ES256 and the other RS/PS/ES algorithms)")]
    Algorithm {
        /// The value found.
        alg: String,
    },
    /// The header lists critical extensions we do not implement (RFC 7515 §4.1.11).
    #[error("the token's header has a `crit` member; no JOSE extension is supported")]
    Critical,
    /// The signature is empty.
    #[error("the token has an empty signature")]
    EmptySignature,
    /// No `exp`: a legacy, non-expiring Secret-based token.
    #[error("the token has no `exp` claim: a legacy service-account token, not a projected one")]
    NoExpiry,
    /// No `kubernetes.io` claim.
    #[error("the token has no `kubernetes.io` claim: not a projected service-account token")]
    NotKubernetes,
    /// A field the identity needs is missing or empty.
    #[error("the token's `{field}` claim is missing or empty")]
    Missing {
        /// The claim path.
        field: &'static str,
    },
    /// A name or UID is too long or holds control characters.
    #[error("the token's `{field}` claim is not a Kubernetes name")]
    BadName {
        /// The claim path.
        field: &'static str,
    },
}

/// What a token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`, a string or an array in the token.
    pub audiences: Vec<String>,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// `nbf`.
    pub not_before: Option<i64>,
    /// `iat`.
    pub issued_at: Option<i64>,
    /// The `kubernetes.io` claim.
    pub identity: PodIdentity,
}

/// A token taken apart; nothing in it is verified yet.
#[derive(Debug, Clone)]
pub struct ParsedToken<'a> {
    /// `alg`.
    pub alg: JwtAlgorithm,
    /// `kid`, if any.
    pub kid: Option<String>,
    /// `header.claims`, what the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The claims.
    pub claims: TokenClaims,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<RawKubernetes>,
}

#[derive(Deserialize)]
struct RawKubernetes {
    namespace: Option<String>,
    serviceaccount: Option<RawRef>,
    pod: Option<RawRef>,
    node: Option<RawRef>,
}

#[derive(Deserialize)]
struct RawRef {
    name: Option<String>,
    uid: Option<String>,
}

/// Splits and decodes `token`; checks its shape, not its signature.
pub fn parse_token(token: &str) -> Result<ParsedToken<'_>, ClaimsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ClaimsError::TooLong { len: token.len() });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(ClaimsError::PartCount { count: parts.len() });
    };
    let header: RawHeader = decode_json(header_b64, "header")?;
    if header.crit.is_some() {
        return Err(ClaimsError::Critical);
    }
    let alg = header
        .alg
        .parse::<JwtAlgorithm>()
        .map_err(|_| ClaimsError::Algorithm { alg: header.alg })?;
    let raw: RawClaims = decode_json(claims_b64, "claims")?;
    let signature = decode(signature_b64, "signature")?;
    if signature.is_empty() {
        return Err(ClaimsError::EmptySignature);
    }
    let signing_input = token
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or(ClaimsError::PartCount { count: 0 })?;
    Ok(ParsedToken {
        alg,
        kid: header.kid,
        signing_input,
        signature,
        claims: claims(raw)?,
    })
}

fn decode(b64: &str, part: &'static str) -> Result<Vec<u8>, ClaimsError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| ClaimsError::Base64 { part })
}

/// A part as JSON, duplicate member names refused (two verifiers must not
/// read two different claims out of one token).
fn decode_json<T: serde::de::DeserializeOwned>(
    b64: &str,
    part: &'static str,
) -> Result<T, ClaimsError> {
    let bytes = decode(b64, part)?;
    let json = |source| ClaimsError::Json { part, source };
    let value = crate::spiffe::json::from_slice(&bytes).map_err(json)?;
    serde_json::from_value(value).map_err(json)
}

fn claims(raw: RawClaims) -> Result<TokenClaims, ClaimsError> {
    let expires_at = raw.exp.ok_or(ClaimsError::NoExpiry)?;
    let k8s = raw.kubernetes.ok_or(ClaimsError::NotKubernetes)?;
    let (pod_name, pod_uid) = reference(k8s.pod, "kubernetes.io.pod")?;
    let (node_name, node_uid) = reference(k8s.node, "kubernetes.io.node")?;
    let sa = k8s.serviceaccount.and_then(|s| s.name);
    let identity = PodIdentity {
        namespace: required(k8s.namespace, "kubernetes.io.namespace")?,
        service_account: required(sa, "kubernetes.io.serviceaccount.name")?,
        pod_name,
        pod_uid,
        node_name,
        node_uid,
    };
    Ok(TokenClaims {
        issuer: raw.iss,
        audiences: match raw.aud {
            None => vec![],
            Some(Audience::One(a)) => vec![a],
            Some(Audience::Many(a)) => a,
        },
        expires_at,
        not_before: raw.nbf,
        issued_at: raw.iat,
        identity,
    })
}

fn reference(
    r: Option<RawRef>,
    field: &'static str,
) -> Result<(Option<String>, Option<String>), ClaimsError> {
    let Some(r) = r else {
        return Ok((None, None));
    };
    Ok((optional(r.name, field)?, optional(r.uid, field)?))
}

fn required(value: Option<String>, field: &'static str) -> Result<String, ClaimsError> {
    optional(value, field)?.ok_or(ClaimsError::Missing { field })
}

/// A name or UID from Kubernetes: absent if empty, refused if it could not
/// be one (too long, control characters).
pub(super) fn optional(
    value: Option<String>,
    field: &'static str,
) -> Result<Option<String>, ClaimsError> {
    match value {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > MAX_NAME_LEN || v.chars().any(char::is_control) => {
            Err(ClaimsError::BadName { field })
        }
        other => Ok(other),
    }
}

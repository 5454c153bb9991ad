//! Offline verification: a cluster's service-account signing keys as its
//! API server publishes them (`GET /openid/v1/jwks`, the OIDC discovery
//! document's `jwks_uri`), and the checks a token must pass against them.
//!
//! The key set is a plain RFC 7517 JWKS; Kubernetes writes
//! `{"keys":[{"use":"sig","kty":"RSA","kid":"…","alg":"RS256","n":"…","e":"AQAB"}]}`
//! (an `EC` key with `crv` for ECDSA signing keys). Keys that are not for
//! signatures, or of a type we cannot use, are skipped, as OIDC libraries
//! do; a set with no usable key is refused.
//!
//! What offline verification cannot know: whether the pod the token is
//! bound to still exists. A token stays valid until `exp`, so keep
//! `expirationSeconds` short where the TokenReview API is out of reach.

use serde_json::Value;

use super::claims::{parse_token, ClaimsError, TokenClaims};
use crate::spiffe::jwk::{JwkError, JwkKeyParams};

/// The most keys a set may hold (Kubernetes publishes one per signing key,
/// a handful during a rotation).
pub const MAX_KEYS: usize = 64;

/// Why a JWKS document is unusable.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("not a JWKS document (a JSON object with a `keys` array): {0}")]
    Shape(String),
    /// More than [`MAX_KEYS`].
    #[error("the JWKS holds {0} keys; the limit is {MAX_KEYS}")]
    TooMany(usize),
    /// No key can verify signatures.
    #[error("the JWKS holds no usable signing key (EC or RSA, `use` absent or \"sig\"){}", .0.as_ref().map(|e| format!("; the first refused: {e}")).unwrap_or_default())]
    NoUsableKey(Option<JwkError>),
}

/// Why a token failed offline verification. Safe to send back.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The token does not parse.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// No key of the set has the token's `kid`.
    #[error("the token's signing key {kid:?} is not in the cluster's JWKS")]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// The signature does not verify with the key(s).
    #[error("the token's signature does not verify with the cluster's JWKS")]
    Signature,
    /// A time, audience or issuer rule failed.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// The claim checks both ways of verifying share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `exp` is past.
    #[error("the token expired at {exp} (unix seconds; now {now})")]
    Expired {
        /// `exp`.
        exp: i64,
        /// The server's time.
        now: i64,
    },
    /// `nbf` or `iat` lies ahead by more than the leeway.
    #[error("the token's `{claim}` ({value}) is in the future (now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value.
        value: i64,
        /// The server's time.
        now: i64,
    },
    /// `aud` lacks the configured audience.
    #[error("the token's audience {found:?} does not include {expected:?} (project the token with `audience: {expected}`)")]
    Audience {
        /// The configured audience.
        expected: String,
        /// The token's `aud`.
        found: Vec<String>,
    },
    /// `iss` is not the configured issuer.
    #[error("the token's issuer {found:?} is not the cluster's {expected:?}")]
    Issuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: Option<String>,
    },
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Must be in `aud`.
    pub audience: &'a str,
    /// `iss` must equal it, when set.
    pub issuer: Option<&'a str>,
    /// Clock skew tolerated on `nbf` and `iat` (never on `exp`).
    pub leeway: i64,
}

impl Rules<'_> {
    /// Expiry, not-before, audience and issuer of `claims` at `now`.
    pub fn check(&self, claims: &TokenClaims, now: i64) -> Result<(), RuleError> {
        check_expiry(claims, now)?;
        for (claim, value) in [("nbf", claims.not_before), ("iat", claims.issued_at)] {
            if let Some(value) = value.filter(|v| *v > now.saturating_add(self.leeway)) {
                return Err(RuleError::NotYetValid { claim, value, now });
            }
        }
        if !claims.audiences.iter().any(|a| a == self.audience) {
            return Err(RuleError::Audience {
                expected: self.audience.to_string(),
                found: claims.audiences.clone(),
            });
        }
        match self.issuer {
            Some(iss) if claims.issuer.as_deref() != Some(iss) => Err(RuleError::Issuer {
                expected: iss.to_string(),
                found: claims.issuer.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// An expired token is refused however it is verified (`exp` gets no leeway).
pub fn check_expiry(claims: &TokenClaims, now: i64) -> Result<(), RuleError> {
    if claims.expires_at <= now {
        return Err(RuleError::Expired {
            exp: claims.expires_at,
            now,
        });
    }
    Ok(())
}

/// One usable key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kid: Option<String>,
    params: JwkKeyParams,
}

/// A cluster's signing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Reads a JWKS document.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        let doc =
            crate::spiffe::json::from_slice(json).map_err(|e| JwksError::Shape(e.to_string()))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::Shape("no `keys` array".into()));
        };
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooMany(entries.len()));
        }
        let mut keys = Vec::new();
        let mut first_error = None;
        for entry in entries {
            let Value::Object(obj) = entry else { continue };
            if obj.get("use").is_some_and(|u| u != "sig") {
                continue;
            }
            match JwkKeyParams::from_jwk_members(obj) {
                Ok(params) => keys.push(Key {
                    kid: obj.get("kid").and_then(Value::as_str).map(str::to_string),
                    params,
                }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(first_error));
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none (only for a default value).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this `kid` (a miss makes the server refresh the set).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Verifies `token` at `now`: signature by a key of the set (the one
    /// with its `kid`, or any if it names none), then `rules`.
    pub fn verify(
        &self,
        token: &str,
        rules: &Rules<'_>,
        now: i64,
    ) -> Result<TokenClaims, OfflineError> {
        let parsed = parse_token(token)?;
        let candidates: Vec<&Key> = match &parsed.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(OfflineError::UnknownKey {
                kid: parsed.kid.unwrap_or_default(),
            });
        }
        let kid = parsed.kid.as_deref().unwrap_or("");
        let signed = candidates.iter().any(|k| {
            crate::ca::jwt::verify_signature(
                parsed.alg,
                kid,
                &k.params,
                parsed.signing_input.as_bytes(),
                &parsed.signature,
            )
            .is_ok()
        });
        if !signed {
            return Err(OfflineError::Signature);
        }
        rules.check(&parsed.claims, now)?;
        Ok(parsed.claims)
    }
}

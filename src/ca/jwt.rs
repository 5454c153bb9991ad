//! JWT-SVID signing and verification (SPIFFE.md section 3).
//!
//! Tokens carry exactly the headers `alg`, `kid` and `typ: "JWT"`, and the
//! claims `sub`, `aud` (always an array), integer `exp` and `iat`, plus `iss`
//! when the server has a `jwt_issuer`: the shape every SPIFFE client accepts. Verification picks the bundle by the trust
//! domain of `sub` and never pools keys across trust domains.

use std::sync::Arc;

use ring::rand::SecureRandom as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use super::keys::{KeyError, KeyPair};
use crate::spiffe::jwk::{EcCurve, JwkError, JwkKeyParams};
use crate::spiffe::jwt::{self, JwtAlgorithm, JwtClaims, JwtError, JwtHeader};
use crate::spiffe::{Bundle, JwtAuthority, SpiffeId, TrustDomain};

/// Why a JWT-SVID could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum JwtSignError {
    /// No audience, or an empty one.
    #[error("a JWT-SVID needs at least one non-empty audience")]
    NoAudience,
    /// A TTL of zero or less.
    #[error("ttl must be at least 1 second, got {0}")]
    BadTtl(i64),
    /// The signing key expired.
    #[error("the JWT signing key {kid} expired at {not_after} (unix)")]
    KeyExpired {
        /// The key's kid.
        kid: String,
        /// Its expiry.
        not_after: i64,
    },
    /// A JWT-SVID needs a path.
    #[error("{0} has no path; a JWT-SVID subject needs one")]
    NotALeafId(SpiffeId),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] JwtError),
    /// The key failed to sign.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a JWT-SVID was rejected. The messages never echo the token.
#[derive(Debug, thiserror::Error)]
pub enum JwtVerifyError {
    /// Malformed token.
    #[error("malformed JWT-SVID: {0}")]
    Malformed(#[from] JwtError),
    /// No bundle for the token's trust domain.
    #[error("no JWT bundle for trust domain {0}")]
    NoBundle(TrustDomain),
    /// The kid is not in that bundle.
    #[error("key {kid:?} is not in the JWT bundle of {trust_domain}")]
    UnknownKey {
        /// The kid from the header.
        kid: String,
        /// The trust domain searched.
        trust_domain: TrustDomain,
    },
    /// The header's alg does not fit the key it names.
    #[error("algorithm {alg} does not match key {kid:?}")]
    AlgorithmMismatch {
        /// The header alg.
        alg: &'static str,
        /// The kid.
        kid: String,
    },
    /// An algorithm ring cannot verify.
    #[error("algorithm {0} is not supported for verification")]
    UnsupportedAlgorithm(&'static str),
    /// The bundle key cannot be used.
    #[error("key {kid:?} in the bundle is unusable: {source}")]
    BadKey {
        /// The kid.
        kid: String,
        /// Why the key could not be read.
        source: JwkError,
    },
    /// The signature does not verify.
    #[error("the JWT-SVID signature does not verify")]
    BadSignature,
    /// The audience is not among the token's.
    #[error("audience {0:?} is not in the token's aud claim")]
    WrongAudience(String),
    /// exp is not in the future.
    #[error("the JWT-SVID expired at {exp} (unix); now is {now}")]
    Expired {
        /// The exp claim.
        exp: i64,
        /// The time of validation.
        now: i64,
    },
    /// `nbf` or `iat` lies further in the future than the leeway allows: a
    /// token minted ahead of time, or by a signer with a runaway clock.
    #[error("the token's {claim} ({value}) is in the future (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// The claim's value.
        value: i64,
        /// The time of validation.
        now: i64,
        /// The allowed clock skew, seconds.
        leeway: i64,
    },
    /// `nbf` is present but not an integer number of seconds.
    #[error("the token's nbf claim is not an integer")]
    BadNotBefore,
    /// The signing key's authority has expired: it may no longer vouch for
    /// anything, even a token that has not.
    #[error("JWT key {kid:?} of {trust_domain} expired at {expired_at}")]
    KeyExpired {
        /// The key.
        kid: String,
        /// Its trust domain.
        trust_domain: TrustDomain,
        /// When it expired.
        expired_at: i64,
    },
}

/// Clock skew tolerated on `nbf` and `iat` unless configured otherwise: the
/// signer's and the validator's clocks may disagree by this much.
pub const DEFAULT_JWT_LEEWAY_SECS: i64 = 30;

/// A JWT signing key with its `kid`.
#[derive(Debug, Clone)]
pub struct JwtKey {
    kid: String,
    key: Arc<KeyPair>,
    not_after: i64,
}

/// A random 32-character `[A-Za-z0-9]` key ID, as SPIRE makes them.
pub fn new_kid() -> Result<String, JwtSignError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::SigningFailed(super::KeyType::EcP256))?;
    // 256 is a multiple of 64 but not of 62; the bias of taking a byte mod 62
    // is a few percent on some letters, harmless for an identifier.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect())
}

impl JwtKey {
    /// Wraps `key` as the JWT signing key `kid`, valid until `not_after`.
    pub fn new(kid: String, key: Arc<KeyPair>, not_after: i64) -> Self {
        JwtKey {
            kid,
            key,
            not_after,
        }
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key stops signing, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The bundle entry that lets others verify this key's tokens.
    pub fn authority(&self) -> JwtAuthority {
        JwtAuthority {
            key_id: self.kid.clone(),
            public_key: self.key.public_key_spki(),
            expires_at: Some(self.not_after),
        }
    }

    /// Signs a JWT-SVID for `sub` with no `iss` claim. `exp` is capped at
    /// the key's expiry.
    pub fn sign(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl_secs: i64,
        now: i64,
    ) -> Result<String, JwtSignError> {
        self.sign_issued(None, sub, audience, ttl_secs, now)
    }

    /// [`JwtKey::sign`], adding `iss` = `issuer` when given: cloud relying
    /// parties (AWS STS, GCP workload identity) reject a token whose `iss`
    /// does not name the OIDC discovery document they fetched.
    pub fn sign_issued(
        &self,
        issuer: Option<&str>,
        sub: &SpiffeId,
        audience: &[String],
        ttl_secs: i64,
        now: i64,
    ) -> Result<String, JwtSignError> {
        let aud: Vec<String> = audience.iter().filter(|a| !a.is_empty()).cloned().collect();
        if aud.is_empty() {
            return Err(JwtSignError::NoAudience);
        }
        if ttl_secs < 1 {
            return Err(JwtSignError::BadTtl(ttl_secs));
        }
        if sub.is_trust_domain_id() {
            return Err(JwtSignError::NotALeafId(sub.clone()));
        }
        if now >= self.not_after {
            return Err(JwtSignError::KeyExpired {
                kid: self.kid.clone(),
                not_after: self.not_after,
            });
        }
        let header = JwtHeader {
            alg: self.key.key_type().jwt_algorithm(),
            kid: self.kid.clone(),
            typ: Some("JWT".to_string()),
        };
        let claims = JwtClaims {
            sub: sub.clone(),
            aud,
            exp: now.saturating_add(ttl_secs).min(self.not_after),
            iat: Some(now),
            extra: issuer
                .map(|iss| [("iss".to_string(), iss.into())].into_iter().collect())
                .unwrap_or_default(),
        };
        let signing_input = jwt::encode_unsigned(&header, &claims)?;
        let sig = self.key.sign_jws(signing_input.as_bytes())?;
        use base64::Engine as _;
        let sig_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        Ok(format!("{signing_input}.{sig_b64}"))
    }
}

/// Verifies a JWT-SVID against the bundle of its subject's trust domain,
/// tolerating [`DEFAULT_JWT_LEEWAY_SECS`] of clock skew on `nbf` and `iat`.
///
/// `bundle_for` returns the bundle of a trust domain (own or federated).
/// Returns the validated claims.
pub fn verify_jwt_svid<'b>(
    token: &str,
    bundle_for: impl Fn(&TrustDomain) -> Option<&'b Bundle>,
    audience: &str,
    now: i64,
) -> Result<JwtClaims, JwtVerifyError> {
    verify_jwt_svid_with_leeway(token, bundle_for, audience, now, DEFAULT_JWT_LEEWAY_SECS)
}

/// [`verify_jwt_svid`] with an explicit leeway, in seconds, on `nbf` and
/// `iat`. `exp` gets none: an expired token is expired.
pub fn verify_jwt_svid_with_leeway<'b>(
    token: &str,
    bundle_for: impl Fn(&TrustDomain) -> Option<&'b Bundle>,
    audience: &str,
    now: i64,
    leeway: i64,
) -> Result<JwtClaims, JwtVerifyError> {
    let parsed = jwt::parse_compact(token)?;
    let td = parsed.claims.sub.trust_domain().clone();
    let bundle = bundle_for(&td).ok_or_else(|| JwtVerifyError::NoBundle(td.clone()))?;
    let kid = &parsed.header.kid;
    let authority = bundle
        .jwt_authorities
        .iter()
        .find(|a| &a.key_id == kid)
        .ok_or_else(|| JwtVerifyError::UnknownKey {
            kid: kid.clone(),
            trust_domain: td.clone(),
        })?;
    if let Some(expired_at) = authority.expires_at.filter(|t| *t != 0 && *t <= now) {
        return Err(JwtVerifyError::KeyExpired {
            kid: kid.clone(),
            trust_domain: td.clone(),
            expired_at,
        });
    }
    let params = JwkKeyParams::from_spki_der(&authority.public_key).map_err(|source| {
        JwtVerifyError::BadKey {
            kid: kid.clone(),
            source,
        }
    })?;
    verify_signature(
        parsed.header.alg,
        kid,
        &params,
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    )?;
    if !parsed.claims.has_audience(audience) {
        return Err(JwtVerifyError::WrongAudience(audience.to_string()));
    }
    if parsed.claims.exp <= now {
        return Err(JwtVerifyError::Expired {
            exp: parsed.claims.exp,
            now,
        });
    }
    let nbf = match parsed.claims.extra.get("nbf") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or(JwtVerifyError::BadNotBefore)?),
    };
    for (claim, value) in [("nbf", nbf), ("iat", parsed.claims.iat)] {
        if let Some(value) = value.filter(|v| *v > now.saturating_add(leeway)) {
            return Err(JwtVerifyError::NotYetValid {
                claim,
                value,
                now,
                leeway,
            });
        }
    }
    Ok(parsed.claims)
}

/// Checks `sig` over `message` with the key `params` under `alg`; also
/// used for Kubernetes service-account tokens (`k8s_psat::jwks`).
pub(crate) fn verify_signature(
    alg: JwtAlgorithm,
    kid: &str,
    params: &JwkKeyParams,
    message: &[u8],
    sig: &[u8],
) -> Result<(), JwtVerifyError> {
    let mismatch = || JwtVerifyError::AlgorithmMismatch {
        alg: alg.as_str(),
        kid: kid.to_string(),
    };
    match params {
        JwkKeyParams::Ec { crv, x, y } => {
            let ring_alg: &'static dyn VerificationAlgorithm = match (alg, crv) {
                (JwtAlgorithm::ES256, EcCurve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                (JwtAlgorithm::ES384, EcCurve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                (JwtAlgorithm::ES512, EcCurve::P521) => {
                    return Err(JwtVerifyError::UnsupportedAlgorithm(alg.as_str()))
                }
                _ => return Err(mismatch()),
            };
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            UnparsedPublicKey::new(ring_alg, point)
                .verify(message, sig)
                .map_err(|_| JwtVerifyError::BadSignature)
        }
        JwkKeyParams::Rsa { n, e } => {
            let ring_alg: &'static signature::RsaParameters = match alg {
                JwtAlgorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                JwtAlgorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                JwtAlgorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                JwtAlgorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                JwtAlgorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                JwtAlgorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return Err(mismatch()),
            };
            RsaPublicKeyComponents { n, e }
                .verify(ring_alg, message, sig)
                .map_err(|_| JwtVerifyError::BadSignature)
        }
    }
}

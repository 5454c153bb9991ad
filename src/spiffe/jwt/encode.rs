//! Building a JWT-SVID's signing input, after the same shape rules the
//! parser applies, so we never mint a token our own validator would refuse.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::rules::{check_audience_count, check_extra_claims, check_kid, check_subject, check_typ};
use super::{JwtClaims, JwtError, JwtHeader, MAX_TOKEN_LEN};

#[derive(Serialize)]
struct HeaderJson<'a> {
    alg: &'static str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

#[derive(Serialize)]
struct ClaimsJson<'a> {
    sub: &'a str,
    aud: &'a [String],
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// The JWS signing input `base64url(header).base64url(claims)`, after the
/// same shape checks [`super::parse_compact`] applies.
pub fn encode_unsigned(header: &JwtHeader, claims: &JwtClaims) -> Result<String, JwtError> {
    check_kid(&header.kid)?;
    if let Some(typ) = &header.typ {
        check_typ(typ)?;
    }
    check_subject(&claims.sub)?;
    check_audience_count(claims.aud.len())?;
    check_extra_claims(&claims.extra)?;
    let header_json = serde_json::to_vec(&HeaderJson {
        alg: header.alg.as_str(),
        kid: &header.kid,
        typ: header.typ.as_deref(),
    })
    .map_err(JwtError::Serialize)?;
    let claims_json = serde_json::to_vec(&ClaimsJson {
        sub: claims.sub.as_str(),
        aud: &claims.aud,
        exp: claims.exp,
        iat: claims.iat,
        extra: &claims.extra,
    })
    .map_err(JwtError::Serialize)?;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    if input.len() >= MAX_TOKEN_LEN {
        return Err(JwtError::TooLong { len: input.len() });
    }
    Ok(input)
}

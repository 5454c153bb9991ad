//! Taking a compact JWS apart into a JWT-SVID's header, claims and
//! signature. The signature is only decoded here; `ca` verifies it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::rules::{check_audience_count, check_kid, check_subject, check_typ};
use super::{JwtClaims, JwtError, JwtHeader, ParsedJwt, MAX_TOKEN_LEN};
use crate::spiffe::id::SpiffeId;

/// Splits and decodes a compact JWS and checks the JWT-SVID shape rules.
/// The signature is only decoded, never checked.
pub fn parse_compact(token: &str) -> Result<ParsedJwt, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong { len: token.len() });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(JwtError::PartCount { count: parts.len() });
    };
    let header = parse_object(header_b64, "header")?;
    let claims = parse_object(claims_b64, "claims")?;
    let signature = decode_part(signature_b64, "signature")?;
    if signature.is_empty() {
        return Err(JwtError::EmptySignature);
    }
    Ok(ParsedJwt {
        header: parse_header(&header)?,
        claims: parse_claims(claims)?,
        signing_input: format!("{header_b64}.{claims_b64}"),
        signature,
    })
}

fn decode_part(b64: &str, part: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|source| JwtError::Base64 { part, source })
}

fn parse_object(b64: &str, part: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = decode_part(b64, part)?;
    match crate::spiffe::json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtError::NotAnObject { part }),
        Err(source) => Err(JwtError::Json { part, source }),
    }
}

fn parse_header(header: &Map<String, Value>) -> Result<JwtHeader, JwtError> {
    if let Some(name) = header
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ"))
    {
        return Err(JwtError::UnexpectedHeader { name: name.clone() });
    }
    let alg = header_string(header, "alg")?.ok_or(JwtError::MissingHeader { name: "alg" })?;
    let kid = header_string(header, "kid")?.ok_or(JwtError::MissingHeader { name: "kid" })?;
    check_kid(kid)?;
    let typ = header_string(header, "typ")?;
    if let Some(typ) = typ {
        check_typ(typ)?;
    }
    Ok(JwtHeader {
        alg: alg.parse()?,
        kid: kid.to_owned(),
        typ: typ.map(str::to_owned),
    })
}

fn header_string<'a>(
    header: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JwtError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::HeaderNotString { name }),
    }
}

fn parse_claims(mut claims: Map<String, Value>) -> Result<JwtClaims, JwtError> {
    let sub = match claims.remove("sub") {
        None => return Err(JwtError::MissingClaim { name: "sub" }),
        Some(Value::String(s)) => SpiffeId::parse(&s).map_err(JwtError::BadSubject)?,
        Some(_) => return Err(JwtError::SubjectNotString),
    };
    check_subject(&sub)?;
    let aud = match claims.remove("aud") {
        None => return Err(JwtError::MissingClaim { name: "aud" }),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => {
            check_audience_count(items.len())?;
            let mut aud = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(JwtError::AudienceNotString { index });
                };
                aud.push(s);
            }
            aud
        }
        Some(_) => return Err(JwtError::AudienceNotStringOrArray),
    };
    let exp = match claims.remove("exp") {
        None => return Err(JwtError::MissingClaim { name: "exp" }),
        Some(v) => integer(&v, "exp")?,
    };
    let iat = claims
        .remove("iat")
        .map(|v| integer(&v, "iat"))
        .transpose()?;
    Ok(JwtClaims {
        sub,
        aud,
        exp,
        iat,
        extra: claims,
    })
}

fn integer(v: &Value, name: &'static str) -> Result<i64, JwtError> {
    v.as_i64().ok_or(JwtError::NotAnInteger { name })
}

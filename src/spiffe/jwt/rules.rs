//! The JWT-SVID shape rules that building and parsing both apply, written
//! once so the two sides cannot drift apart.

use serde_json::{Map, Value};

use super::{JwtError, MAX_AUDIENCES, RESERVED_CLAIMS};
use crate::spiffe::id::SpiffeId;

pub(super) fn check_kid(kid: &str) -> Result<(), JwtError> {
    if kid.is_empty() {
        return Err(JwtError::EmptyKid);
    }
    Ok(())
}

pub(super) fn check_typ(typ: &str) -> Result<(), JwtError> {
    if typ != "JWT" && typ != "JOSE" {
        return Err(JwtError::BadTyp {
            typ: typ.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn check_subject(sub: &SpiffeId) -> Result<(), JwtError> {
    if sub.is_trust_domain_id() {
        return Err(JwtError::SubjectWithoutPath);
    }
    Ok(())
}

pub(super) fn check_audience_count(count: usize) -> Result<(), JwtError> {
    match count {
        0 => Err(JwtError::EmptyAudience),
        n if n > MAX_AUDIENCES => Err(JwtError::TooManyAudiences { count: n }),
        _ => Ok(()),
    }
}

/// `extra` must not repeat a claim that has its own field in [`super::JwtClaims`].
pub(super) fn check_extra_claims(extra: &Map<String, Value>) -> Result<(), JwtError> {
    if let Some(name) = extra.keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str())) {
        return Err(JwtError::ReservedClaim { name: name.clone() });
    }
    Ok(())
}

//! Reading a SPIFFE bundle document (SPIFFE_Trust_Domain_and_Bundle.md §4),
//! with go-spiffe's strictness where the spec leaves room.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{certificate_spki, Bundle, BundleError, JwtAuthority, USE_JWT, USE_X509};
use crate::spiffe::id::TrustDomain;
use crate::spiffe::jwk::{JwkError, JwkKeyParams};

impl Bundle {
    /// [`Bundle::from_spiffe_json`] for a document from outside (a
    /// federation peer): refused, before anything is built from it, if
    /// `keys` holds more than `max_keys` elements (skipped ones included)
    /// or the document more values than that many keys need.
    pub fn from_spiffe_json_limited(
        trust_domain: TrustDomain,
        json: &[u8],
        max_keys: usize,
    ) -> Result<Bundle, BundleError> {
        super::budget::check(json, max_keys)?;
        Self::from_spiffe_json(trust_domain, json)
    }

    /// Reads a SPIFFE bundle document for `trust_domain` (the document does
    /// not name its own domain). JWKs with a missing or unknown `use` or an
    /// unknown `kty` are skipped, as the spec requires; everything else must
    /// be well formed.
    pub fn from_spiffe_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Bundle, BundleError> {
        let doc = crate::spiffe::json::from_slice(json).map_err(BundleError::Json)?;
        let Value::Object(doc) = doc else {
            return Err(BundleError::NotAnObject);
        };
        let keys = match doc.get("keys") {
            None => return Err(BundleError::MissingKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(BundleError::KeysNotArray),
        };
        let mut bundle = Bundle::new(trust_domain);
        bundle.sequence = optional_u64(&doc, "spiffe_sequence")?.unwrap_or(0);
        bundle.refresh_hint = optional_u64(&doc, "spiffe_refresh_hint")?;

        let mut kids: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let Value::Object(key) = key else {
                return Err(BundleError::KeyNotObject { index });
            };
            let key_use = match key.get("use").and_then(Value::as_str) {
                Some(USE_X509) => USE_X509,
                Some(USE_JWT) => USE_JWT,
                _ => continue,
            };
            let params_error = |source| BundleError::KeyParams {
                index,
                key_use,
                source,
            };
            match key.get("kty") {
                Some(Value::String(kty)) if kty == "EC" || kty == "RSA" => {}
                Some(Value::String(_)) => continue,
                None => return Err(params_error(JwkError::MissingMember { member: "kty" })),
                Some(_) => return Err(params_error(JwkError::NotAString { member: "kty" })),
            }
            let params = JwkKeyParams::from_jwk_members(key).map_err(params_error)?;
            if key_use == USE_X509 {
                bundle
                    .x509_authorities
                    .push(x509_authority(index, key, &params)?);
            } else {
                let kid = match key.get("kid") {
                    Some(Value::String(kid)) if !kid.is_empty() => kid,
                    _ => return Err(BundleError::MissingKid { index }),
                };
                if let Some(&first) = kids.get(kid.as_str()) {
                    return Err(BundleError::DuplicateKid {
                        index,
                        first,
                        kid: kid.clone(),
                    });
                }
                kids.insert(kid, index);
                bundle.jwt_authorities.push(JwtAuthority {
                    key_id: kid.clone(),
                    public_key: params.to_spki_der().map_err(params_error)?,
                    expires_at: None,
                });
            }
        }
        Ok(bundle)
    }
}

/// Checks an x509-svid JWK and returns its certificate's DER.
fn x509_authority(
    index: usize,
    key: &Map<String, Value>,
    params: &JwkKeyParams,
) -> Result<Vec<u8>, BundleError> {
    let x5c = match key.get("x5c") {
        Some(Value::Array(x5c)) => x5c,
        _ => return Err(BundleError::MissingX5c { index }),
    };
    let [cert] = x5c.as_slice() else {
        return Err(BundleError::X5cCount {
            index,
            count: x5c.len(),
        });
    };
    let Value::String(cert) = cert else {
        return Err(BundleError::X5cNotString { index });
    };
    let der = STANDARD
        .decode(cert)
        .map_err(|source| BundleError::X5cBase64 { index, source })?;
    let spki =
        certificate_spki(&der).map_err(|source| BundleError::X5cCertificate { index, source })?;
    let cert_params = JwkKeyParams::from_spki_der(&spki)
        .map_err(|source| BundleError::X5cPublicKey { index, source })?;
    if &cert_params != params {
        return Err(BundleError::X5cKeyMismatch { index });
    }
    Ok(der)
}

fn optional_u64(
    doc: &Map<String, Value>,
    member: &'static str,
) -> Result<Option<u64>, BundleError> {
    match doc.get(member) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(BundleError::BadInteger { member }),
    }
}

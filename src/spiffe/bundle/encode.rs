//! Writing bundles: the SPIFFE bundle JSON and the Workload API's plain JWKS.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use super::{certificate_spki, Bundle, BundleError, USE_JWT, USE_X509};
use crate::spiffe::jwk::{JwkJson, JwkKeyParams};

#[derive(Serialize)]
struct BundleJson {
    keys: Vec<JwkJson>,
    #[serde(skip_serializing_if = "is_zero")]
    spiffe_sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Bundle {
    /// The SPIFFE bundle document as SPIRE's bundle endpoint serves it; the
    /// sequence and refresh hint are omitted when zero, as SPIRE does.
    pub fn to_spiffe_json(&self) -> Result<String, BundleError> {
        let mut keys = self.x509_jwks()?;
        for mut jwk in self.jwt_jwks()? {
            jwk.key_use = Some(USE_JWT.to_owned());
            keys.push(jwk);
        }
        let doc = BundleJson {
            keys,
            spiffe_sequence: self.sequence,
            spiffe_refresh_hint: self.refresh_hint.filter(|h| *h != 0),
        };
        serde_json::to_string(&doc).map_err(BundleError::Json)
    }

    /// The Workload API's JWT bundle: JWT keys only, without `use` or the
    /// `spiffe_*` members (SPIFFE.md §5.3).
    pub fn jwt_jwks_json(&self) -> Result<String, BundleError> {
        #[derive(Serialize)]
        struct Jwks {
            keys: Vec<JwkJson>,
        }
        let doc = Jwks {
            keys: self.jwt_jwks()?,
        };
        serde_json::to_string(&doc).map_err(BundleError::Json)
    }

    fn x509_jwks(&self) -> Result<Vec<JwkJson>, BundleError> {
        let mut out = Vec::with_capacity(self.x509_authorities.len());
        for (index, der) in self.x509_authorities.iter().enumerate() {
            let spki = certificate_spki(der)
                .map_err(|source| BundleError::AuthorityCertificate { index, source })?;
            let mut jwk = JwkKeyParams::from_spki_der(&spki)
                .and_then(|p| p.to_jwk_json())
                .map_err(|source| BundleError::AuthorityKey { index, source })?;
            jwk.key_use = Some(USE_X509.to_owned());
            jwk.x5c = Some(vec![STANDARD.encode(der)]);
            out.push(jwk);
        }
        Ok(out)
    }

    /// JWT keys with `kid` and no `use`, checked so that our parser would
    /// accept them back. Key IDs are checked for uniqueness through a set:
    /// a peer's bundle may hold thousands of keys, and every FetchJWTBundles
    /// encodes them again (issue 18: a pairwise check cost seconds).
    fn jwt_jwks(&self) -> Result<Vec<JwkJson>, BundleError> {
        let mut out = Vec::with_capacity(self.jwt_authorities.len());
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.jwt_authorities.len());
        for (index, authority) in self.jwt_authorities.iter().enumerate() {
            let kid = &authority.key_id;
            if kid.is_empty() || !seen.insert(kid.as_str()) {
                return Err(BundleError::BadAuthorityKid { index });
            }
            let mut jwk = JwkKeyParams::from_spki_der(&authority.public_key)
                .and_then(|p| p.to_jwk_json())
                .map_err(|source| BundleError::JwtAuthorityKey {
                    kid: kid.clone(),
                    source,
                })?;
            jwk.kid = Some(kid.clone());
            out.push(jwk);
        }
        Ok(out)
    }
}

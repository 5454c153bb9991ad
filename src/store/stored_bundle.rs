//! The stored form of a bundle, shared by both backends.
//!
//! A bundle is stored as its SPIFFE bundle JSON, the format it is served
//! and fetched in, so that loading it runs the same validation as receiving
//! it from a peer: a damaged bundle is reported as `Corrupt` instead of
//! being handed to agents. JWT key expiries have no place in that JSON and
//! are kept beside it, by key id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::spiffe::{Bundle, TrustDomain};

/// The stored form of a bundle.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredBundle {
    /// The SPIFFE bundle JSON (JWK set with sequence and refresh hint).
    pub(crate) spiffe_json: String,
    /// `expires_at` of each JWT authority that has one, by `kid`.
    #[serde(default)]
    pub(crate) jwt_expires_at: BTreeMap<String, i64>,
}

impl StoredBundle {
    /// The stored form of `bundle`; `Invalid` if it has no SPIFFE JSON form.
    pub(crate) fn from_bundle(bundle: &Bundle) -> Result<StoredBundle, StoreError> {
        let td = bundle.trust_domain.name();
        let spiffe_json = bundle.to_spiffe_json().map_err(|e| StoreError::Invalid {
            record: format!("bundle of trust domain {td:?}"),
            field: "bundle",
            reason: format!("cannot be encoded as a SPIFFE bundle: {e}"),
        })?;
        let jwt_expires_at = bundle
            .jwt_authorities
            .iter()
            .filter_map(|a| a.expires_at.map(|t| (a.key_id.clone(), t)))
            .collect();
        Ok(StoredBundle {
            spiffe_json,
            jwt_expires_at,
        })
    }

    /// The bundle of `td`, re-validated; failure is `Corrupt` in `tree`.
    pub(crate) fn into_bundle(
        self,
        td: TrustDomain,
        tree: &'static str,
    ) -> Result<Bundle, StoreError> {
        let key = td.name().to_owned();
        let mut bundle =
            Bundle::from_spiffe_json(td, self.spiffe_json.as_bytes()).map_err(|e| {
                StoreError::Corrupt {
                    tree,
                    key,
                    reason: format!("stored bundle fails validation: {e}"),
                }
            })?;
        for authority in &mut bundle.jwt_authorities {
            authority.expires_at = self.jwt_expires_at.get(&authority.key_id).copied();
        }
        Ok(bundle)
    }
}

/// A stored trust domain name (a key), re-validated as it is read.
pub(crate) fn trust_domain_of(tree: &'static str, key: &[u8]) -> Result<TrustDomain, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let name = std::str::from_utf8(key).map_err(|e| corrupt(format!("key is not UTF-8: {e}")))?;
    TrustDomain::new(name).map_err(|e| corrupt(format!("key is not a trust domain name: {e}")))
}

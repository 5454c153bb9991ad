//! Trust bundles (our own and federated ones) and federation relationships,
//! both keyed by trust domain name.
//!
//! A bundle is stored as its SPIFFE bundle JSON, the format it is served
//! and fetched in, so that loading it runs the same validation as receiving
//! it from a peer: a damaged bundle is reported as `Corrupt` instead of
//! being handed to agents. JWT key expiries have no place in that JSON and
//! are kept beside it, by key id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{decode, delete_with, encode, key_str};
use super::{SledStore, BUNDLES};
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::{FederationRelationship, StoreError};

/// The stored form of a bundle.
#[derive(Debug, Serialize, Deserialize)]
struct StoredBundle {
    /// The SPIFFE bundle JSON (JWK set with sequence and refresh hint).
    spiffe_json: String,
    /// `expires_at` of each JWT authority that has one, by `kid`.
    #[serde(default)]
    jwt_expires_at: BTreeMap<String, i64>,
}

fn bundle_from_stored(td: TrustDomain, key: &[u8], bytes: &[u8]) -> Result<Bundle, StoreError> {
    let stored: StoredBundle = decode(BUNDLES, key, bytes)?;
    let mut bundle = Bundle::from_spiffe_json(td, stored.spiffe_json.as_bytes()).map_err(|e| {
        StoreError::Corrupt {
            tree: BUNDLES,
            key: key_str(key),
            reason: format!("stored bundle fails validation: {e}"),
        }
    })?;
    for authority in &mut bundle.jwt_authorities {
        authority.expires_at = stored.jwt_expires_at.get(&authority.key_id).copied();
    }
    Ok(bundle)
}

fn trust_domain_of_key(key: &[u8]) -> Result<TrustDomain, StoreError> {
    let name = std::str::from_utf8(key).map_err(|e| StoreError::Corrupt {
        tree: BUNDLES,
        key: key_str(key),
        reason: format!("key is not UTF-8: {e}"),
    })?;
    TrustDomain::new(name).map_err(|e| StoreError::Corrupt {
        tree: BUNDLES,
        key: key_str(key),
        reason: format!("key is not a trust domain name: {e}"),
    })
}

impl SledStore {
    pub(super) fn set_bundle_impl(&self, bundle: &Bundle) -> Result<(), StoreError> {
        let td = bundle.trust_domain.name();
        let _span = tracing::debug_span!(
            "store.set_bundle",
            trust_domain = td,
            sequence = bundle.sequence
        )
        .entered();
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
        let stored = StoredBundle {
            spiffe_json,
            jwt_expires_at,
        };
        let bytes = encode("bundle", td, &stored)?;
        self.bundles
            .insert(td.as_bytes(), bytes)
            .map_err(StoreError::sled("write a bundle"))?;
        self.flush("flush a bundle")
    }

    pub(super) fn get_bundle_impl(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        let key = td.name().as_bytes();
        match self
            .bundles
            .get(key)
            .map_err(StoreError::sled("read a bundle"))?
        {
            Some(bytes) => bundle_from_stored(td.clone(), key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn list_bundles_impl(&self) -> Result<Vec<Bundle>, StoreError> {
        self.bundles
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(StoreError::sled("scan bundles"))?;
                bundle_from_stored(trust_domain_of_key(&key)?, &key, &bytes)
            })
            .collect()
    }

    pub(super) fn delete_bundle_impl(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        let _span = tracing::debug_span!("store.delete_bundle", trust_domain = td.name()).entered();
        let key = td.name().as_bytes();
        delete_with(self, &self.bundles, "bundle", key, td.name(), |bytes| {
            bundle_from_stored(td.clone(), key, bytes)
        })
    }

    pub(super) fn put_federation_relationship_impl(
        &self,
        rel: &FederationRelationship,
    ) -> Result<(), StoreError> {
        let td = rel.trust_domain.name();
        let _span =
            tracing::debug_span!("store.put_federation_relationship", trust_domain = td).entered();
        if rel.bundle_endpoint_url.is_empty() {
            return Err(StoreError::Invalid {
                record: format!("federation relationship with {td:?}"),
                field: "bundle_endpoint_url",
                reason: "must not be empty".into(),
            });
        }
        let bytes = encode("federation relationship", td, rel)?;
        self.federation
            .insert(td.as_bytes(), bytes)
            .map_err(StoreError::sled("write a federation relationship"))?;
        self.flush("flush a federation relationship")
    }
}

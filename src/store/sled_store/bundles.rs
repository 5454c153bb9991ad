//! Trust bundles (our own and federated ones) and federation relationships,
//! both keyed by trust domain name. Bundles are kept in their
//! [`StoredBundle`] form.

use super::codec::{decode, delete_with, encode};
use super::{SledStore, BUNDLES};
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::common::{check_relationship, set_bundle_span};
use crate::store::stored_bundle::{trust_domain_of, StoredBundle};
use crate::store::{FederationRelationship, StoreError};

fn bundle_from_stored(td: TrustDomain, key: &[u8], bytes: &[u8]) -> Result<Bundle, StoreError> {
    let stored: StoredBundle = decode(BUNDLES, key, bytes)?;
    stored.into_bundle(td, BUNDLES)
}

impl SledStore {
    pub(super) fn set_bundle_impl(&self, bundle: &Bundle) -> Result<(), StoreError> {
        let td = bundle.trust_domain.name();
        let _span = set_bundle_span(bundle);
        let stored = StoredBundle::from_bundle(bundle)?;
        let bytes = encode("bundle", td, &stored)?;
        self.bundles
            .insert(td.as_bytes(), bytes)
            .map_err(StoreError::sled("write a bundle"))?;
        self.flush("flush a bundle")
    }

    /// Compare-and-swap on the stored bytes: they are read, their sequence
    /// checked, and replaced only if still the same bytes.
    pub(super) fn swap_bundle_impl(
        &self,
        bundle: &Bundle,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let td = bundle.trust_domain.name();
        let _span = set_bundle_span(bundle);
        let key = td.as_bytes();
        let current = self
            .bundles
            .get(key)
            .map_err(StoreError::sled("read a bundle"))?;
        let sequence = match &current {
            Some(bytes) => bundle_from_stored(bundle.trust_domain.clone(), key, bytes)?.sequence,
            None => 0,
        };
        if sequence != expected {
            return Ok(false);
        }
        let stored = StoredBundle::from_bundle(bundle)?;
        let bytes = encode("bundle", td, &stored)?;
        let swapped = self
            .bundles
            .compare_and_swap(key, current, Some(bytes))
            .map_err(StoreError::sled("swap a bundle"))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.flush("flush a bundle")?;
        Ok(true)
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
                bundle_from_stored(trust_domain_of(BUNDLES, &key)?, &key, &bytes)
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
        check_relationship(rel)?;
        let bytes = encode("federation relationship", td, rel)?;
        self.federation
            .insert(td.as_bytes(), bytes)
            .map_err(StoreError::sled("write a federation relationship"))?;
        self.flush("flush a federation relationship")
    }
}

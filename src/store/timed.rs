//! A [`DataStore`] that times every operation of the store it wraps into
//! a histogram labelled by operation (`herald_server_store_operation_duration_seconds`).
//! The label is the method's name: a fixed set, never a key or a value.

use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    AttestedAgent, AuthorityRecord, DataStore, EntryFilter, FederationRelationship, IssuanceRecord,
    JoinToken, Page, PageRequest, StoreError,
};
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

/// Store latency by operation: `[("op", name)]`.
pub type StoreLatency = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

/// Times each call into `inner`.
pub struct TimedStore<S> {
    inner: S,
    latency: StoreLatency,
}

impl<S: DataStore> TimedStore<S> {
    /// Wraps `inner`, observing into `latency`.
    pub fn new(inner: S, latency: StoreLatency) -> Self {
        TimedStore { inner, latency }
    }

    fn timed<T>(&self, op: &'static str, call: impl FnOnce(&S) -> T) -> T {
        let start = Instant::now();
        let out = call(&self.inner);
        self.latency
            .get_or_create(&[("op", op)])
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

type Results = Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError>;

impl<S: DataStore> DataStore for TimedStore<S> {
    fn create_entries(&self, entries: Vec<RegistrationEntry>) -> Results {
        self.timed("create_entries", |s| s.create_entries(entries))
    }
    fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        self.timed("update_entry", |s| s.update_entry(entry))
    }
    fn delete_entries(&self, ids: &[String]) -> Results {
        self.timed("delete_entries", |s| s.delete_entries(ids))
    }
    fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        self.timed("get_entry", |s| s.get_entry(id))
    }
    fn get_entries(&self, ids: &[String]) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.timed("get_entries", |s| s.get_entries(ids))
    }
    fn list_entries(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError> {
        self.timed("list_entries", |s| s.list_entries(filter, page))
    }
    fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.timed("entries_by_parent", |s| s.entries_by_parent(parent))
    }
    fn entries_by_parents(
        &self,
        parents: &[SpiffeId],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.timed("entries_by_parents", |s| s.entries_by_parents(parents))
    }
    fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.timed("entries_by_selector", |s| s.entries_by_selector(selector))
    }
    fn count_entries(&self) -> Result<u64, StoreError> {
        self.timed("count_entries", |s| s.count_entries())
    }
    fn prune_expired_entries(&self, now: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.timed("prune_expired_entries", |s| s.prune_expired_entries(now))
    }
    fn attest_agent(&self, agent: &AttestedAgent) -> Result<(), StoreError> {
        self.timed("attest_agent", |s| s.attest_agent(agent))
    }
    fn update_agent(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError> {
        self.timed("update_agent", |s| s.update_agent(id, change))
    }
    fn get_agent(&self, id: &SpiffeId) -> Result<Option<AttestedAgent>, StoreError> {
        self.timed("get_agent", |s| s.get_agent(id))
    }
    fn list_agents(&self, page: &PageRequest) -> Result<Page<AttestedAgent>, StoreError> {
        self.timed("list_agents", |s| s.list_agents(page))
    }
    fn delete_agent(&self, id: &SpiffeId) -> Result<AttestedAgent, StoreError> {
        self.timed("delete_agent", |s| s.delete_agent(id))
    }
    fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        self.timed("create_join_token", |s| s.create_join_token(token))
    }
    fn consume_join_token(&self, token: &str, now: i64) -> Result<JoinToken, StoreError> {
        self.timed("consume_join_token", |s| s.consume_join_token(token, now))
    }
    fn prune_join_tokens(&self, now: i64) -> Result<usize, StoreError> {
        self.timed("prune_join_tokens", |s| s.prune_join_tokens(now))
    }
    fn set_bundle(&self, bundle: &Bundle) -> Result<(), StoreError> {
        self.timed("set_bundle", |s| s.set_bundle(bundle))
    }
    fn swap_bundle(&self, bundle: &Bundle, expected: u64) -> Result<bool, StoreError> {
        self.timed("swap_bundle", |s| s.swap_bundle(bundle, expected))
    }
    fn get_bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        self.timed("get_bundle", |s| s.get_bundle(td))
    }
    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        self.timed("list_bundles", |s| s.list_bundles())
    }
    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        self.timed("delete_bundle", |s| s.delete_bundle(td))
    }
    fn put_federation_relationship(&self, rel: &FederationRelationship) -> Result<(), StoreError> {
        self.timed("put_federation_relationship", |s| {
            s.put_federation_relationship(rel)
        })
    }
    fn get_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<FederationRelationship>, StoreError> {
        self.timed("get_federation_relationship", |s| {
            s.get_federation_relationship(td)
        })
    }
    fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, StoreError> {
        self.timed("list_federation_relationships", |s| {
            s.list_federation_relationships()
        })
    }
    fn delete_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<FederationRelationship, StoreError> {
        self.timed("delete_federation_relationship", |s| {
            s.delete_federation_relationship(td)
        })
    }
    fn put_authority(&self, record: &AuthorityRecord) -> Result<(), StoreError> {
        self.timed("put_authority", |s| s.put_authority(record))
    }
    fn list_authorities(&self) -> Result<Vec<AuthorityRecord>, StoreError> {
        self.timed("list_authorities", |s| s.list_authorities())
    }
    fn delete_authority(&self, id: &str) -> Result<AuthorityRecord, StoreError> {
        self.timed("delete_authority", |s| s.delete_authority(id))
    }
    fn append_issuances(&self, records: &[IssuanceRecord]) -> Result<(), StoreError> {
        self.timed("append_issuances", |s| s.append_issuances(records))
    }
    fn get_issuance(&self, serial: &str) -> Result<Option<IssuanceRecord>, StoreError> {
        self.timed("get_issuance", |s| s.get_issuance(serial))
    }
    fn count_issuances(&self) -> Result<u64, StoreError> {
        self.timed("count_issuances", |s| s.count_issuances())
    }
    fn prune_issuances(&self, before: i64) -> Result<usize, StoreError> {
        self.timed("prune_issuances", |s| s.prune_issuances(before))
    }
    fn cluster(&self) -> Option<&dyn super::Cluster> {
        self.inner.cluster()
    }
}

//! The server's durable state: registration entries, attested agents, join
//! tokens, bundles, federation relationships, the CA journal and the
//! issuance log.
//!
//! [`DataStore`] is the contract the server codes against; [`SledStore`] is
//! the embedded backend, [`PostgresStore`] the PostgreSQL one (chosen by the
//! `[store]` table of `server.toml`); [`TimedStore`] wraps either to measure
//! each operation's latency for the metrics. The trait is synchronous
//! because sled is: the server calls it through `spawn_blocking`, and the
//! PostgreSQL store drives its async client on a runtime of its own.
//!
//! Durability contract: a write method returns `Ok` only after its changes
//! are on disk (sled `flush`, i.e. fsync; a committed PostgreSQL
//! transaction). A write that touches several trees or rows (an entry and
//! its index rows) is atomic.

pub mod cluster;
mod combine;
mod common;
mod error;
pub mod migrate;
pub mod postgres;
mod records;
mod sled_store;
mod stored_bundle;
#[cfg(test)]
mod tests;
mod timed;

pub use cluster::{Change, ChangeFeed, Cluster, FeedHealth, Presence};
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::{
    AttestedAgent, AuthorityKind, AuthorityRecord, AuthorityState, BundleEndpointProfile,
    EntryFilter, FederationRelationship, IssuanceRecord, JoinToken, Page, PageRequest,
    SelectorMatch,
};
pub use sled_store::SledStore;
pub use timed::{StoreLatency, TimedStore};

use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

/// The layout version of the data directory. Bumped whenever a stored record
/// or index changes shape, so an older or newer Herald refuses the directory
/// instead of misreading it.
pub const SCHEMA_VERSION: u32 = 1;

/// Page size used when a [`PageRequest`] asks for 0 items: large enough for
/// most listings in one round trip, small enough to bound a response.
pub const DEFAULT_PAGE_SIZE: usize = 500;

/// Largest page a listing returns, whatever the request asks for, so that a
/// single call cannot make the server decode the whole store into memory.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Whether an entry with this `expires_at` has stopped applying at `now`:
/// from its expiry second on (0 or absent means it never expires). The one
/// definition used by authorization, signing and pruning alike.
pub fn entry_expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|t| t != 0 && t <= now)
}

/// The server's durable state. Every write is durable when it returns `Ok`.
pub trait DataStore: Send + Sync {
    // --- registration entries ---

    /// Creates a batch of entries with one durable commit, so that bulk
    /// imports stay fast. Each entry gets a UUID v4 id if its id is empty and
    /// revision 1. Results are per item, in request order: an entry fails
    /// with `Invalid` (no selectors, bad selector), or `AlreadyExists` if its
    /// id is taken or an entry with the same SPIFFE ID, parent ID and
    /// selector set exists (the error names that entry's id) — including an
    /// earlier entry of the same batch. The outer error means nothing was
    /// written. (sled serializes transactions, so other writes wait while a
    /// very large batch commits: about a few seconds for 100,000 entries.)
    fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError>;

    /// Creates one entry; see [`DataStore::create_entries`].
    fn create_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        let mut results = self.create_entries(vec![entry])?;
        match results.pop() {
            Some(result) => result,
            // create_entries answers one result per input entry; a backend
            // breaking that is reported, not a reason to panic the server.
            None => Err(StoreError::NotFound {
                kind: "result of create_entries (the backend returned none)",
                id: String::new(),
            }),
        }
    }

    /// Replaces the entry with the same id and bumps its revision; the
    /// stored `created_at` is kept. `NotFound` if there is no such entry,
    /// `AlreadyExists` if the change would make it similar to another entry.
    fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError>;

    /// Deletes entries in one durable commit; per-id results in request order
    /// (the deleted entry, or `NotFound`).
    fn delete_entries(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError>;

    /// The entry with this id, if any.
    fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError>;

    /// The entries with these ids that exist, each once, in no promised
    /// order. A batch of CSRs names one entry each: a store a network round
    /// trip away (PostgreSQL) reads them in one query instead of one per
    /// CSR. The default asks [`DataStore::get_entry`] per id, which costs
    /// an embedded store (sled) nothing more.
    fn get_entries(&self, ids: &[String]) -> Result<Vec<RegistrationEntry>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for id in ids {
            if seen.insert(id.as_str()) {
                out.extend(self.get_entry(id)?);
            }
        }
        Ok(out)
    }

    /// Entries matching `filter`, ordered by id. A page size of 0 means
    /// [`DEFAULT_PAGE_SIZE`]; sizes above [`MAX_PAGE_SIZE`] are capped. Pass
    /// back `next_token` to continue; it is opaque to callers.
    fn list_entries(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError>;

    /// Every entry whose parent is `parent`, ordered by id (served by an index).
    fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError>;

    /// Every entry whose parent is one of `parents`, in no promised order.
    /// An agent's authorized set is walked one nesting level at a time
    /// through this: a store a network round trip away (PostgreSQL) answers
    /// a level in one query, where one query per entry made every change
    /// cost a round trip per entry the agent holds. The default asks
    /// [`DataStore::entries_by_parent`] once per parent, which costs an
    /// embedded store (sled) nothing more.
    fn entries_by_parents(
        &self,
        parents: &[SpiffeId],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let mut out = Vec::new();
        for parent in parents {
            out.extend(self.entries_by_parent(parent)?);
        }
        Ok(out)
    }

    /// Every entry having `selector` among its selectors, ordered by id
    /// (served by an index).
    fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError>;

    /// Number of registration entries.
    fn count_entries(&self) -> Result<u64, StoreError>;

    /// Deletes every entry expired at `now` (see [`entry_expired`]), with
    /// its index rows, and returns them. An entry updated to a later expiry
    /// while the scan ran is kept; one that does not decode is left for the
    /// operator to inspect.
    fn prune_expired_entries(&self, now: i64) -> Result<Vec<RegistrationEntry>, StoreError>;

    // --- attested agents ---

    /// Records an attestation by creating the agent's record. An ID that
    /// has a record cannot be attested again until the record is deleted
    /// (eviction): `AgentBanned` if it is banned, `AlreadyExists` otherwise,
    /// so no token can take over a live agent's identity.
    fn attest_agent(&self, agent: &AttestedAgent) -> Result<(), StoreError>;

    /// Changes an agent record by compare-and-swap. `change` sees the
    /// current record and returns the new one, or an error that aborts; it
    /// runs again if the record changed in between, so no change is lost
    /// to a concurrent one. `NotFound` if there is no record (an evicted
    /// agent is never brought back), `AgentBanned` if the change would
    /// unban a banned agent.
    fn update_agent(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError>;

    /// The agent with this SPIFFE ID, if attested.
    fn get_agent(&self, id: &SpiffeId) -> Result<Option<AttestedAgent>, StoreError>;

    /// Agents ordered by SPIFFE ID, paged like [`DataStore::list_entries`].
    fn list_agents(&self, page: &PageRequest) -> Result<Page<AttestedAgent>, StoreError>;

    /// Removes the agent (it must attest again); `NotFound` if absent.
    fn delete_agent(&self, id: &SpiffeId) -> Result<AttestedAgent, StoreError>;

    // --- join tokens ---

    /// Stores a new token; `AlreadyExists` if the value is taken.
    fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError>;

    /// Takes the token out of the store: it can be used once. Of concurrent
    /// callers only one succeeds. `NotFound` if unknown or already used;
    /// `TokenExpired` if `expires_at <= now` (the token is removed anyway).
    fn consume_join_token(&self, token: &str, now: i64) -> Result<JoinToken, StoreError>;

    /// Removes tokens with `expires_at <= now`; returns how many.
    fn prune_join_tokens(&self, now: i64) -> Result<usize, StoreError>;

    // --- bundles ---

    /// Creates or replaces the bundle of its trust domain (own or federated).
    fn set_bundle(&self, bundle: &Bundle) -> Result<(), StoreError>;

    /// Replaces the bundle of its trust domain only if the stored one
    /// still has sequence `expected` (0: none is stored): the
    /// compare-and-swap by which servers sharing a store publish the own
    /// trust domain's bundle without dropping each other's authorities.
    /// `Ok(false)` if it changed meanwhile (read it again and retry).
    fn swap_bundle(&self, bundle: &Bundle, expected: u64) -> Result<bool, StoreError>;

    /// The bundle of `td`, re-validated as it is read.
    fn get_bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError>;

    /// Every bundle, ordered by trust domain name.
    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError>;

    /// Removes the bundle of `td`; `NotFound` if absent.
    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError>;

    // --- federation relationships ---

    /// Creates or replaces the relationship with its trust domain.
    fn put_federation_relationship(&self, rel: &FederationRelationship) -> Result<(), StoreError>;

    /// The relationship with `td`, if any.
    fn get_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<FederationRelationship>, StoreError>;

    /// Every relationship, ordered by trust domain name.
    fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, StoreError>;

    /// Removes the relationship with `td`; `NotFound` if absent.
    fn delete_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<FederationRelationship, StoreError>;

    // --- CA journal ---

    /// Creates or replaces the journal record with this id.
    fn put_authority(&self, record: &AuthorityRecord) -> Result<(), StoreError>;

    /// The whole journal, ordered by `created_at` then id, so that rotation
    /// state is rebuilt in the order it was made.
    fn list_authorities(&self) -> Result<Vec<AuthorityRecord>, StoreError>;

    /// Removes a journal record; `NotFound` if absent.
    fn delete_authority(&self, id: &str) -> Result<AuthorityRecord, StoreError>;

    // --- issuance log ---

    /// Records issued certificates with one durable commit; a serial already
    /// present is replaced.
    fn append_issuances(&self, records: &[IssuanceRecord]) -> Result<(), StoreError>;

    /// The record of this serial (hex, any case), if any.
    fn get_issuance(&self, serial: &str) -> Result<Option<IssuanceRecord>, StoreError>;

    /// Number of records in the issuance log.
    fn count_issuances(&self) -> Result<u64, StoreError>;

    /// Removes records whose certificate expired (`not_after < before`);
    /// returns how many.
    fn prune_issuances(&self, before: i64) -> Result<usize, StoreError>;

    // --- several servers ---

    /// The side of a store that several servers share (PostgreSQL): its
    /// change feed and presence. `None` for a store of one server (sled).
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

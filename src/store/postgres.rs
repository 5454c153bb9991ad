//! The PostgreSQL backend: the same records as the sled store, in tables
//! with real constraints (see `migrations/postgres/`), so that several
//! servers can later share one database.
//!
//! The [`DataStore`] trait is synchronous; this store owns a small tokio
//! runtime of its own and drives every query to completion on it with
//! `block_on`. **Call it only from threads that are not running async
//! tasks** — `spawn_blocking` (as the server does), plain threads, the CLI:
//! `block_on` inside an async task panics. Its own runtime holds the
//! connection pool's background tasks, so it works the same whether or not
//! the caller has a runtime.
//!
//! Durability: a write returns `Ok` after its transaction committed
//! (PostgreSQL's default `synchronous_commit = on` makes a commit durable).
//! Compare-and-swap, single use and uniqueness are the database's: row
//! locks (`SELECT … FOR UPDATE`), `DELETE … RETURNING` and unique
//! constraints, never a read-then-write in the client.

mod agents;
mod bundles;
mod codec;
mod entries;
mod entry_queries;
mod federation;
mod feed;
mod import;
mod issuances;
mod journal;
mod migrations;
mod presence;
mod settings;
pub mod test_database;
mod tls;
mod tokens;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use migrations::LATEST_VERSION;
pub use settings::{ConnectionString, PostgresSettings, SslMode, DEFAULT_POOL_SIZE};

use super::{
    AttestedAgent, AuthorityRecord, DataStore, EntryFilter, FederationRelationship, IssuanceRecord,
    JoinToken, Page, PageRequest, RegistrationEntry, Selector, StoreError,
};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

/// How long a new connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The PostgreSQL datastore: a connection pool and the runtime it runs on.
pub struct PostgresStore {
    pool: Pool,
    /// Always `Some` until dropped; taken in `drop` to shut it down without
    /// blocking (dropping a runtime inside async code would panic).
    runtime: Option<tokio::runtime::Runtime>,
    /// The connection string without its password, for logs.
    target: String,
    /// How to open a connection of its own (the change feed's doorbell).
    pg_config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Concurrent issuance appends share one statement and one commit
    /// (a signing call each, so they arrive together under load).
    issuance_log: super::combine::Combiner<IssuanceRecord>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, then brings the schema up to date under an advisory lock
    /// (see [`migrations`]); refuses a database migrated by a newer Herald.
    /// Blocking: call from a non-async thread (see the module docs).
    pub fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let mut pg_config = settings.url.parse()?;
        let (tls, sslmode) = tls::connector(settings)?;
        pg_config.ssl_mode(sslmode);
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("herald");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Setup(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            // The pool spawns its timers on the current runtime.
            let _guard = runtime.enter();
            Pool::builder(manager)
                .max_size(settings.pool_size.max(1))
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Setup(format!("cannot build the connection pool: {e}")))?
        };
        let store = PostgresStore {
            pool,
            runtime: Some(runtime),
            target: settings.url.redacted(),
            pg_config,
            tls,
            issuance_log: Default::default(),
        };
        store.run(migrations::migrate(&store.pool))?;
        tracing::info!(target = %store.target, pool_size = settings.pool_size, "PostgreSQL store ready");
        Ok(store)
    }

    /// Drives `fut` to completion on the store's runtime.
    fn run<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match &self.runtime {
            Some(rt) => rt.block_on(fut),
            // Only `drop` takes the runtime, and nothing runs after it.
            None => Err(StoreError::Setup("the store is shut down".into())),
        }
    }

    /// A pooled connection, for `op`.
    async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|source| StoreError::Pool { op, source })
    }
}

#[cfg(test)]
impl PostgresStore {
    /// Runs `sql` and returns the first column of the first row as text
    /// (tests inspect and tamper with the schema through this).
    pub(crate) fn sql_scalar(&self, sql: &str) -> Result<Option<String>, StoreError> {
        self.run(async {
            let client = self.client("test query").await?;
            let rows = client
                .simple_query(sql)
                .await
                .map_err(StoreError::pg("test query"))?;
            Ok(rows.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            }))
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

// === impl DataStore ===

impl DataStore for PostgresStore {
    fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        self.run(self.create_entries_impl(entries))
    }

    fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        self.run(self.update_entry_impl(entry))
    }

    fn delete_entries(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        self.run(self.delete_entries_impl(ids))
    }

    fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        self.run(self.get_entry_impl(id))
    }

    fn get_entries(&self, ids: &[String]) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.run(self.get_entries_impl(ids))
    }

    fn list_entries(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError> {
        self.run(self.list_entries_impl(filter, page))
    }

    fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.run(self.entries_by_parent_impl(parent))
    }

    fn entries_by_parents(
        &self,
        parents: &[SpiffeId],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.run(self.entries_by_parents_impl(parents))
    }

    fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.run(self.entries_by_selector_impl(selector))
    }

    fn count_entries(&self) -> Result<u64, StoreError> {
        self.run(self.count("entries", "count registration entries"))
    }

    fn prune_expired_entries(&self, now: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.run(self.prune_expired_entries_impl(now))
    }

    fn attest_agent(&self, agent: &AttestedAgent) -> Result<(), StoreError> {
        self.run(self.attest_agent_impl(agent))
    }

    fn update_agent(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError> {
        self.run(self.update_agent_impl(id, change))
    }

    fn get_agent(&self, id: &SpiffeId) -> Result<Option<AttestedAgent>, StoreError> {
        self.run(self.get_agent_impl(id))
    }

    fn list_agents(&self, page: &PageRequest) -> Result<Page<AttestedAgent>, StoreError> {
        self.run(self.list_agents_impl(page))
    }

    fn delete_agent(&self, id: &SpiffeId) -> Result<AttestedAgent, StoreError> {
        self.run(self.delete_agent_impl(id))
    }

    fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        self.run(self.create_join_token_impl(token))
    }

    fn consume_join_token(&self, token: &str, now: i64) -> Result<JoinToken, StoreError> {
        self.run(self.consume_join_token_impl(token, now))
    }

    fn prune_join_tokens(&self, now: i64) -> Result<usize, StoreError> {
        self.run(self.prune_join_tokens_impl(now))
    }

    fn set_bundle(&self, bundle: &Bundle) -> Result<(), StoreError> {
        self.run(self.set_bundle_impl(bundle))
    }

    fn swap_bundle(&self, bundle: &Bundle, expected: u64) -> Result<bool, StoreError> {
        self.run(self.swap_bundle_impl(bundle, expected))
    }

    fn get_bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        self.run(self.get_bundle_impl(td))
    }

    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        self.run(self.list_bundles_impl())
    }

    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        self.run(self.delete_bundle_impl(td))
    }

    fn put_federation_relationship(&self, rel: &FederationRelationship) -> Result<(), StoreError> {
        self.run(self.put_federation_relationship_impl(rel))
    }

    fn get_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<FederationRelationship>, StoreError> {
        self.run(self.get_federation_relationship_impl(td))
    }

    fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, StoreError> {
        self.run(self.list_federation_relationships_impl())
    }

    fn delete_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<FederationRelationship, StoreError> {
        self.run(self.delete_federation_relationship_impl(td))
    }

    fn put_authority(&self, record: &AuthorityRecord) -> Result<(), StoreError> {
        self.run(self.put_authority_impl(record))
    }

    fn list_authorities(&self) -> Result<Vec<AuthorityRecord>, StoreError> {
        self.run(self.list_authorities_impl())
    }

    fn delete_authority(&self, id: &str) -> Result<AuthorityRecord, StoreError> {
        self.run(self.delete_authority_impl(id))
    }

    fn append_issuances(&self, records: &[IssuanceRecord]) -> Result<(), StoreError> {
        // Checked before joining a group, so a bad record fails its own
        // caller without failing the group it would have joined.
        for r in records {
            r.validate()?;
        }
        self.issuance_log
            .append(records, |group| self.run(self.append_issuances_impl(group)))
    }

    fn get_issuance(&self, serial: &str) -> Result<Option<IssuanceRecord>, StoreError> {
        self.run(self.get_issuance_impl(serial))
    }

    fn count_issuances(&self) -> Result<u64, StoreError> {
        self.run(self.count("issuances", "count issuance records"))
    }

    fn prune_issuances(&self, before: i64) -> Result<usize, StoreError> {
        self.run(self.prune_issuances_impl(before))
    }

    fn cluster(&self) -> Option<&dyn crate::store::Cluster> {
        Some(self)
    }
}

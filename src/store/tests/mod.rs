//! Tests of the datastore contract, run against both backends: every test
//! in `entries`, `records` and `concurrency` takes a [`Store`] and is
//! instantiated once on a sled store in a temporary directory and once on a
//! PostgreSQL store in a database of its own (see [`contract_tests!`]).
//! `persistence` holds the sled-only tests, `postgres` the PostgreSQL-only
//! ones (migrations, several stores on one database).

mod concurrency;
mod entries;
mod feed;
mod persistence;
mod postgres;
mod records;

use std::sync::Arc;

use tempfile::TempDir;

use super::postgres::test_database::TempDatabase;
use super::postgres::{PostgresSettings, PostgresStore};
use super::{DataStore, RegistrationEntry, Selector, SledStore};
use crate::spiffe::{SpiffeId, TrustDomain};

/// The store a contract test runs against, shareable with its threads.
type Store = Arc<dyn DataStore>;

/// A sled store in a fresh directory; keep the `TempDir` alive as long as
/// the store.
fn open_sled() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    (dir, Arc::new(store))
}

fn temp_database() -> Option<TempDatabase> {
    TempDatabase::for_test()
}

/// A PostgreSQL store on a fresh database; the database is dropped with the
/// returned guard (after the store, which the test owns).
fn open_postgres() -> Option<(TempDatabase, Store)> {
    let db = temp_database()?;
    let store = PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap();
    Some((db, Arc::new(store)))
}

/// Instantiates each `module::test` once per backend, as
/// `sled::test` and `postgres::test`.
macro_rules! contract_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sled {
            $(
                #[test]
                fn $name() {
                    let (_dir, store) = super::open_sled();
                    super::$module::$name(store);
                }
            )*
        }
        mod pg {
            $(
                #[test]
                fn $name() {
                    if let Some((_db, store)) = super::open_postgres() {
                        super::$module::$name(store);
                    }
                }
            )*
        }
    };
}

contract_tests!(
    entries::create_get_update_delete,
    entries::update_of_missing_entry_is_not_found,
    entries::batch_create_reports_per_item_in_order,
    entries::update_keeps_indexes_consistent,
    entries::filters,
    entries::paging_returns_every_entry_once,
    entries::batch_of_100_000_entries,
    entries::pruning_removes_expired_entries_with_their_index_rows,
    entries::entries_by_parents_lists_every_level_entry_once,
    entries::get_entries_reads_each_existing_entry_once,
    records::agents_crud_and_paging,
    records::join_token_is_single_use,
    records::expired_join_token_is_refused_and_removed,
    records::bundles_crud,
    records::federation_relationships_crud,
    records::authority_journal,
    records::issuance_log,
    concurrency::a_ban_survives_every_concurrent_renewal_and_reattestation,
    concurrency::concurrent_agent_updates_lose_nothing,
    concurrency::racing_consumers_exactly_one_wins,
    concurrency::racing_bundle_swaps_exactly_one_wins,
);

fn id(path: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// An entry with an empty id (the store generates one).
fn entry(spiffe_path: &str, parent_path: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        created_at: 1_700_000_000,
        ..RegistrationEntry::new(
            id(spiffe_path),
            id(parent_path),
            selectors.iter().map(|s| sel(s)).collect(),
        )
    }
}

/// Creates `entry(spiffe_path, parent_path, selectors)` in `store`, which
/// the test expects to succeed, and returns the stored entry.
fn add_entry(
    store: &dyn DataStore,
    spiffe_path: &str,
    parent_path: &str,
    selectors: &[&str],
) -> RegistrationEntry {
    store
        .create_entry(entry(spiffe_path, parent_path, selectors))
        .unwrap()
}

//! Tests of the sled backend, run against temporary data directories.

mod entries;
mod persistence;
mod records;

use tempfile::TempDir;

use super::{DataStore, RegistrationEntry, Selector, SledStore};
use crate::spiffe::{SpiffeId, TrustDomain};

/// A store in a fresh directory; keep the `TempDir` alive as long as the store.
fn open_temp() -> (TempDir, SledStore) {
    let dir = TempDir::new().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    (dir, store)
}

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
    store: &SledStore,
    spiffe_path: &str,
    parent_path: &str,
    selectors: &[&str],
) -> RegistrationEntry {
    store
        .create_entry(entry(spiffe_path, parent_path, selectors))
        .unwrap()
}

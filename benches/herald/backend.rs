//! Which datastore the bench runs on: `HERALD_BENCH_STORE=sled` (the
//! default) or `postgres` (a fresh database per server, on the PostgreSQL
//! named by `HERALD_TEST_PG_URL`, see `harness::postgres`). The in-process
//! servers and item 6 (the store) follow it, so the same command run twice
//! puts the two backends' figures side by side.

use std::path::Path;
use std::sync::Arc;

use herald::store::postgres::test_database::TempDatabase;
use herald::store::postgres::{PostgresSettings, PostgresStore};
use herald::store::{DataStore, SledStore};

/// The backend chosen for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    pub fn from_env() -> Backend {
        match std::env::var("HERALD_BENCH_STORE").as_deref() {
            Ok("postgres") => Backend::Postgres,
            Ok("sled") | Err(_) => Backend::Sled,
            Ok(other) => panic!("HERALD_BENCH_STORE={other}: not sled or postgres"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "postgres",
        }
    }

    /// A database for a server or store of this run (`None` for sled).
    pub fn database(self) -> Option<TempDatabase> {
        match self {
            Backend::Sled => None,
            Backend::Postgres => {
                Some(TempDatabase::create().expect("HERALD_BENCH_STORE=postgres needs PostgreSQL"))
            }
        }
    }

    /// A store of this backend (sled under `dir`), and the database it
    /// lives in, to keep until the store is dropped.
    pub fn open(self, dir: &Path) -> (Arc<dyn DataStore>, Option<TempDatabase>) {
        match self.database() {
            None => (Arc::new(SledStore::open(&dir.join("store")).unwrap()), None),
            Some(db) => {
                let store = PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap();
                (Arc::new(store), Some(db))
            }
        }
    }
}

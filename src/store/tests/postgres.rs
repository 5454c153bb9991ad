//! PostgreSQL only: schema migrations, several stores (servers) on one
//! database, what survives a reconnect, and what errors show.

use std::sync::{Arc, Barrier};

use super::concurrency::race_for_tokens;
use super::records::{sample_bundle, token};
use super::{add_entry, id, sel, td, temp_database, Store};
use crate::store::postgres::{ConnectionString, PostgresSettings, PostgresStore, LATEST_VERSION};
use crate::store::{DataStore, StoreError};

fn connect(url: &ConnectionString) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(&PostgresSettings::new(url.clone()))
}

#[test]
fn stores_migrating_one_empty_database_at_once_make_one_schema() {
    let Some(db) = temp_database() else { return };
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, start) = (db.url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                connect(&url)
            })
        })
        .collect();
    let stores: Vec<PostgresStore> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let versions = stores[0]
        .sql_scalar("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")
        .unwrap();
    assert_eq!(versions.as_deref(), Some("1,2"));
    // Every store works on the one schema.
    for (i, s) in stores.iter().enumerate() {
        add_entry(s, &format!("/w{i}"), "/agent", &["unix:uid:1"]);
    }
    assert_eq!(stores[3].count_entries().unwrap(), 4);
}

#[test]
fn a_database_migrated_by_a_newer_herald_is_refused() {
    let Some(db) = temp_database() else { return };
    let store = connect(&db.url).unwrap();
    let newer = LATEST_VERSION + 1;
    store
        .sql_scalar(&format!(
            "INSERT INTO schema_version (version, name) VALUES ({newer}, 'from the future')"
        ))
        .unwrap();
    drop(store);
    let err = connect(&db.url).unwrap_err();
    assert!(
        matches!(err, StoreError::DatabaseSchemaTooNew { found, supported }
            if found == newer && supported == LATEST_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn two_stores_racing_for_one_token_exactly_one_wins() {
    let Some(db) = temp_database() else { return };
    let stores: [Store; 2] = [
        Arc::new(connect(&db.url).unwrap()),
        Arc::new(connect(&db.url).unwrap()),
    ];
    race_for_tokens(stores);
}

#[test]
fn reconnect_keeps_everything_and_tokens_are_stored_hashed() {
    let Some(db) = temp_database() else { return };
    let bundle = sample_bundle("example.org");
    let created = {
        let store = connect(&db.url).unwrap();
        store.set_bundle(&bundle).unwrap();
        store.create_join_token(token("tok-secret", 100)).unwrap();
        add_entry(&store, "/web", "/agent", &["unix:uid:1"])
    };
    let store = connect(&db.url).unwrap();
    assert_eq!(store.get_entry(&created.id).unwrap(), Some(created.clone()));
    assert_eq!(
        store.entries_by_selector(&sel("unix:uid:1")).unwrap(),
        vec![created.clone()]
    );
    assert_eq!(
        store.entries_by_parent(&id("/agent")).unwrap(),
        vec![created]
    );
    assert_eq!(store.get_bundle(&td("example.org")).unwrap(), Some(bundle));
    let hashed = store
        .sql_scalar(
            "SELECT count(*) FROM join_tokens WHERE token_hash = sha256('tok-secret'::bytea)",
        )
        .unwrap();
    assert_eq!(hashed.as_deref(), Some("1"));
    assert_eq!(
        store.consume_join_token("tok-secret", 0).unwrap(),
        token("tok-secret", 100)
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let url = ConnectionString::new("host=127.0.0.1 port=1 user=herald password=s3cret dbname=x");
    let err = connect(&url).unwrap_err();
    let msg = format!("{err} / {err:?}");
    assert!(matches!(err, StoreError::Pool { .. }), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
}

//! What survives a restart, and what the store refuses to read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::records::sample_bundle;
use super::{add_entry, id, sel, td};
use crate::store::{
    AttestedAgent, DataStore, IssuanceRecord, JoinToken, SledStore, StoreError, SCHEMA_VERSION,
};

/// Writes raw bytes into a tree with sled directly, as disk damage or
/// another program would.
fn poke(path: &Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = retry_locked(|| sled::open(path)).unwrap();
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

/// Asserts that opening `path` fails because its schema stamp in the
/// `meta` tree is missing or unreadable.
#[track_caller]
fn assert_meta_refused(path: &Path) {
    let got = open(path);
    assert!(
        matches!(got, Err(StoreError::Corrupt { tree: "meta", .. })),
        "{:?}",
        got.err()
    );
}

/// Opens the store at `path`, waiting out the file lock of a handle this
/// process dropped a moment ago.
fn open(path: &Path) -> Result<SledStore, StoreError> {
    retry_locked(|| SledStore::open(path))
}

/// sled releases a database's file lock from its flusher thread shortly
/// after the last handle is dropped, so reopening in the same process can
/// race it (EWOULDBLOCK). Retries such an open for a while; any other
/// outcome is returned as is.
fn retry_locked<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Err(e) if format!("{e:?}").contains("WouldBlock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// A fresh temporary directory and the data path inside it; keep the
/// `TempDir` alive as long as the path is used.
fn temp_data_path() -> (TempDir, PathBuf) {
    crate::testing::temp_path("data")
}

#[test]
fn reopen_keeps_everything() {
    let (_dir, path) = temp_data_path();
    let bundle = sample_bundle("example.org");
    let created = {
        let store = open(&path).unwrap();
        let created = add_entry(&store, "/web", "/agent", &["unix:uid:1"]);
        store
            .attest_agent(&AttestedAgent {
                spiffe_id: id("/agent"),
                attestation_type: "join_token".into(),
                serial: "01".into(),
                expires_at: 10,
                banned: false,
                selectors: vec![],
                created_at: 1,
                updated_at: 1,
            })
            .unwrap();
        store
            .create_join_token(JoinToken {
                token: "tok".into(),
                expires_at: 100,
                agent_id: None,
            })
            .unwrap();
        store.set_bundle(&bundle).unwrap();
        store
            .append_issuances(&[IssuanceRecord {
                serial: "ab".into(),
                spiffe_id: id("/web"),
                agent_id: None,
                entry_id: Some(created.id.clone()),
                not_after: 50,
                issued_at: 40,
            }])
            .unwrap();
        created
    };

    let store = open(&path).unwrap();
    assert_eq!(store.get_entry(&created.id).unwrap(), Some(created.clone()));
    assert_eq!(
        store.entries_by_parent(&id("/agent")).unwrap(),
        vec![created.clone()]
    );
    assert_eq!(
        store.entries_by_selector(&sel("unix:uid:1")).unwrap(),
        vec![created]
    );
    assert!(store.get_agent(&id("/agent")).unwrap().is_some());
    assert_eq!(store.get_bundle(&td("example.org")).unwrap(), Some(bundle));
    assert_eq!(store.count_issuances().unwrap(), 1);
    assert!(store.consume_join_token("tok", 0).is_ok());
}

#[cfg(unix)]
#[test]
fn new_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested").join("data");
    let _store = open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn unknown_schema_version_is_refused() {
    let (_dir, path) = temp_data_path();
    drop(open(&path).unwrap());
    poke(&path, "meta", b"schema_version", b"999");
    let err = open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedSchemaVersion {
                found: 999,
                supported: SCHEMA_VERSION
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("different Herald version"),
        "{err}"
    );

    poke(&path, "meta", b"schema_version", b"one");
    assert_meta_refused(&path);
}

#[test]
fn unstamped_directory_with_data_is_refused() {
    let (_dir, path) = temp_data_path();
    poke(&path, "entries", b"x", b"{}");
    assert_meta_refused(&path);
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let (_dir, path) = temp_data_path();
    let created = {
        let store = open(&path).unwrap();
        store.set_bundle(&sample_bundle("example.org")).unwrap();
        add_entry(&store, "/web", "/agent", &["unix:uid:1"])
    };
    poke(&path, "entries", b"garbage", &[0xff, 0x00, 0x13, 0x37]);
    poke(&path, "entries", created.id.as_bytes(), b"{\"id\": 1}");
    // Well-formed stored record, but the bundle inside fails validation.
    poke(
        &path,
        "bundles",
        b"example.org",
        br#"{"spiffe_json":"{\"keys\":[{\"use\":\"jwt-svid\",\"kty\":\"EC\"}]}"}"#,
    );
    let store = open(&path).unwrap();

    let err = store.get_entry("garbage").unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { tree: "entries", key, .. } if key == "garbage"),
        "{err:?}"
    );
    assert!(matches!(
        store.get_entry(&created.id),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.entries_by_parent(&id("/agent")),
        Err(StoreError::Corrupt { .. })
    ));
    let deleted = store
        .delete_entries(std::slice::from_ref(&created.id))
        .unwrap();
    assert!(matches!(deleted[0], Err(StoreError::Corrupt { .. })));
    assert!(matches!(
        store.get_bundle(&td("example.org")),
        Err(StoreError::Corrupt {
            tree: "bundles",
            ..
        })
    ));
    assert!(matches!(
        store.list_bundles(),
        Err(StoreError::Corrupt { .. })
    ));
}

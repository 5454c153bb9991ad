//! Durability across processes: a writer process acknowledges records one by
//! one and is killed with SIGKILL at an arbitrary point; a new process then
//! opens the same store and must find every acknowledged record.
//!
//! The writer is this same test binary, re-run with `--exact
//! durability_writer_child --include-ignored` and an environment variable
//! naming the store directory. `durability_writer_child` is ignored in normal
//! runs because it is only the child half of the test below.

mod harness;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use harness::bin::herald;
use herald::registration::{RegistrationEntry, Selector};
use herald::spiffe::SpiffeId;
use herald::store::{AttestedAgent, DataStore, IssuanceRecord, JoinToken, SledStore, StoreError};

const DIR_ENV: &str = "HERALD_DURABILITY_DIR";
const ACKS_BEFORE_KILL: usize = 150;

fn entry(i: usize) -> RegistrationEntry {
    RegistrationEntry {
        id: format!("entry-{i:06}"),
        ..RegistrationEntry::new(
            SpiffeId::parse(&format!("spiffe://example.org/w/{i}")).unwrap(),
            SpiffeId::parse("spiffe://example.org/herald/agent/join_token/x").unwrap(),
            vec![Selector::parse(&format!("unix:uid:{i}")).unwrap()],
        )
    }
}

#[test]
#[ignore = "child half of acknowledged_writes_survive_sigkill; run by it"]
fn durability_writer_child() {
    let dir = std::env::var(DIR_ENV).expect("run by acknowledged_writes_survive_sigkill");
    let store = SledStore::open(std::path::Path::new(&dir)).unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    for i in 0.. {
        // Each kind of record, each acknowledged only once its write returned.
        let e = store.create_entry(entry(i)).unwrap();
        writeln!(out, "entry {}", e.id).unwrap();
        store
            .append_issuances(&[IssuanceRecord {
                serial: format!("{i:032x}"),
                spiffe_id: e.spiffe_id.clone(),
                agent_id: None,
                entry_id: Some(e.id.clone()),
                not_after: 2_000_000_000,
                issued_at: 1_800_000_000,
            }])
            .unwrap();
        writeln!(out, "issuance {i:032x}").unwrap();
        let agent = SpiffeId::parse(&format!("spiffe://example.org/herald/agent/n{i}")).unwrap();
        store
            .attest_agent(&AttestedAgent {
                spiffe_id: agent.clone(),
                attestation_type: "join_token".into(),
                serial: "01".into(),
                expires_at: 2_000_000_000,
                banned: i % 2 == 0,
                selectors: vec![],
                created_at: 0,
                updated_at: 0,
            })
            .unwrap();
        writeln!(out, "agent {agent}").unwrap();
        store
            .create_join_token(JoinToken {
                token: format!("token-{i}"),
                expires_at: 2_000_000_000,
                agent_id: None,
            })
            .unwrap();
        writeln!(out, "token token-{i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_writer_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, &store_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some((kind, key)) = line.split_once(' ') else {
            continue;
        };
        if !["entry", "issuance", "agent", "token"].contains(&kind) {
            continue; // the test harness's own lines
        }
        acked.push((kind.to_string(), key.to_string()));
        if acked.len() >= ACKS_BEFORE_KILL * 4 + 2 {
            // Mid-record: between two acknowledged writes of different kinds.
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush on exit
    child.wait().unwrap();
    assert!(
        acked.len() > ACKS_BEFORE_KILL,
        "writer acknowledged only {}",
        acked.len()
    );

    let store = SledStore::open(&store_dir).unwrap();
    for (kind, key) in &acked {
        let found = match kind.as_str() {
            "entry" => store.get_entry(key).unwrap().is_some(),
            "issuance" => store.get_issuance(key).unwrap().is_some(),
            "agent" => store
                .get_agent(&SpiffeId::parse(key).unwrap())
                .unwrap()
                .is_some(),
            "token" => match store.consume_join_token(key, 1_800_000_000) {
                Ok(t) => t.token == *key,
                Err(StoreError::NotFound { .. }) => false,
                Err(e) => panic!("token {key}: {e}"),
            },
            _ => unreachable!(),
        };
        assert!(found, "acknowledged {kind} {key} is missing after SIGKILL");
    }
    // The indexes came back consistent with the records.
    let parent = SpiffeId::parse("spiffe://example.org/herald/agent/join_token/x").unwrap();
    let by_parent = store.entries_by_parent(&parent).unwrap();
    let acked_entries = acked.iter().filter(|(k, _)| k == "entry").count();
    assert!(by_parent.len() >= acked_entries);
}

#[test]
fn unknown_schema_version_is_a_clear_error_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A real data directory, made by the CLI.
    let out = herald()
        .args([
            "x509",
            "mint",
            "--data-dir",
            data.to_str().unwrap(),
            "--spiffe-id",
            "spiffe://example.org/a",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Pretend a future Herald wrote it.
    {
        let db = sled::open(data.join("store")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "999")
            .unwrap();
        db.flush().unwrap();
    }
    let out = herald()
        .args(["bundle", "show", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("999"),
        "error should name the version found: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    match SledStore::open(&data.join("store")) {
        Err(StoreError::UnsupportedSchemaVersion { found, .. }) => assert_eq!(found, 999),
        other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
    }
}

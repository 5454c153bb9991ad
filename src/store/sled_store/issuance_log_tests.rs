use super::*;
use crate::ca::serial::SerialBlock;
use crate::ca::template::serial_hex;
use crate::spiffe::SpiffeId;
use crate::store::DataStore as _;

fn record(serial: &str, not_after: i64) -> IssuanceRecord {
    IssuanceRecord {
        serial: serial.into(),
        spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
        agent_id: None,
        entry_id: None,
        not_after,
        issued_at: 0,
    }
}

/// Writes `records` the way the log was kept before groups: one value per
/// serial in `issuances`, one index row per serial with an empty value.
fn write_old_format(store: &SledStore, records: &[IssuanceRecord]) {
    for r in records {
        let bytes = encode("issuance record", &r.serial, r).unwrap();
        store.issuances.insert(r.serial.as_bytes(), bytes).unwrap();
        store
            .issuances_by_expiry
            .insert(expiry_key(r.not_after, &r.serial), &[][..])
            .unwrap();
    }
    store.db.flush().unwrap();
}

/// A batch's serials drawn in blocks land in one group per block: 40
/// records are 3 stored values (16, 16, 8), each readable by serial.
#[test]
fn a_batch_of_block_serials_is_stored_in_one_group_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut block = SerialBlock::new();
    let now = crate::clock::now_unix();
    let batch: Vec<_> = (0..40)
        .map(|_| record(&serial_hex(&block.next_serial(now).unwrap()), 100))
        .collect();
    store.append_issuances(&batch).unwrap();
    assert_eq!(store.issuance_groups.len(), 3);
    assert_eq!(store.count_issuances().unwrap(), 40);
    for r in &batch {
        assert_eq!(store.get_issuance(&r.serial).unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.export_issuances().unwrap().len(), 40);
}

/// Pruning removes the expired records of a group and keeps the rest of
/// it, and removes a group once it is empty.
#[test]
fn pruning_takes_the_expired_records_out_of_a_group_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // One group ("a"), two expiries.
    store
        .append_issuances(&[record("a0", 100), record("a1", 200), record("a2", 100)])
        .unwrap();
    assert_eq!(store.issuance_groups.len(), 1);
    assert_eq!(store.prune_issuances(101).unwrap(), 2);
    assert_eq!(store.get_issuance("a0").unwrap(), None);
    assert_eq!(store.get_issuance("a1").unwrap(), Some(record("a1", 200)));
    assert_eq!(store.count_issuances().unwrap(), 1);
    assert_eq!(store.prune_issuances(201).unwrap(), 1);
    assert!(store.issuance_groups.is_empty());
    assert!(store.issuances_by_expiry.is_empty());
}

/// A batch sharing one expiry writes one index row naming all its
/// serials; a row from before grouping (serial in the key, empty value)
/// is still pruned.
#[test]
fn one_index_row_per_expiry_and_old_rows_still_prune() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        write_old_format(&store, &[record("0b", 150)]);
    }
    let store = SledStore::open(dir.path()).unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| record(&format!("a{i}"), if i < 3 { 100 } else { 200 }))
        .collect();
    store.append_issuances(&batch).unwrap();
    assert_eq!(store.issuances_by_expiry.len(), 3);

    assert_eq!(store.prune_issuances(101).unwrap(), 3);
    assert_eq!(store.get_issuance("a3").unwrap(), Some(record("a3", 200)));
    assert_eq!(store.prune_issuances(151).unwrap(), 1);
    assert_eq!(store.get_issuance("0b").unwrap(), None);
    assert_eq!(store.prune_issuances(201).unwrap(), 2);
    assert_eq!(store.count_issuances().unwrap(), 0);
    assert!(store.issuances_by_expiry.is_empty());
}

/// A serial appended again with the same expiry (a retry) shares its
/// index row with the first append's other serials; none is orphaned.
#[test]
fn appending_a_serial_again_keeps_its_row_mates_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .append_issuances(&[record("a0", 100), record("a1", 100)])
        .unwrap();
    store.append_issuances(&[record("a0", 100)]).unwrap();
    assert_eq!(store.issuances_by_expiry.len(), 1);
    assert_eq!(store.count_issuances().unwrap(), 2);
    assert_eq!(store.prune_issuances(101).unwrap(), 2);
    assert_eq!(store.count_issuances().unwrap(), 0);
}

/// A one-digit serial's group key is empty; it is stored and found all
/// the same.
#[test]
fn a_one_digit_serial_has_a_group_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .append_issuances(&[record("a", 100), record("b", 100)])
        .unwrap();
    assert_eq!(store.get_issuance("a").unwrap(), Some(record("a", 100)));
    assert_eq!(store.get_issuance("b").unwrap(), Some(record("b", 100)));
    assert_eq!(store.prune_issuances(101).unwrap(), 2);
}

/// Opening a store written before groups moves its records into groups
/// (and out of the old tree); one that does not decode stays where it was
/// and is reported as corrupt when read, not dropped.
#[test]
fn opening_an_old_log_moves_its_records_into_groups_and_keeps_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<_> = (0..30).map(|i| record(&format!("{i:04x}"), 100)).collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        write_old_format(&store, &old);
        store.issuances.insert(b"ffff", &b"{not json"[..]).unwrap();
        store.db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.issuances.len(), 1, "only the unreadable record stays");
    assert_eq!(
        store.issuance_groups.len(),
        2,
        "serials 0000-000f and 0010-001d"
    );
    for r in &old {
        assert_eq!(store.get_issuance(&r.serial).unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.count_issuances().unwrap(), 31);
    assert!(matches!(
        store.get_issuance("ffff"),
        Err(StoreError::Corrupt {
            tree: ISSUANCES,
            ..
        })
    ));
    // The old index rows find the moved records.
    assert_eq!(store.prune_issuances(101).unwrap(), 30);
    drop(store);
    // Opening again moves nothing more and loses nothing.
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.count_issuances().unwrap(), 1);
}

/// An upgrade stopped midway (some records moved, the rest still in the
/// old tree, a moved one still there too) ends with each record once.
#[test]
fn an_interrupted_upgrade_finishes_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .append_issuances(&[record("a0", 100), record("a1", 100)])
            .unwrap();
        // "a1" also left in the old tree, as if the crash came before the
        // transaction that moved it committed; "b0" not moved at all.
        write_old_format(&store, &[record("a1", 100), record("b0", 100)]);
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert!(store.issuances.is_empty());
    assert_eq!(store.count_issuances().unwrap(), 3);
    assert_eq!(store.prune_issuances(101).unwrap(), 3);
}

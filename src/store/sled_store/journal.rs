//! The CA journal (authority records) and the issuance log.
//!
//! The issuance log has a second tree ordered by expiry, so that pruning
//! reads only the expired rows instead of the whole log. One index row
//! names every serial of one append that expires at the same second (a
//! batch of SVIDs for one agent mostly shares one TTL): a sled insert cost
//! about 8 µs per SVID on the issuance path (node copies and splits), an
//! eighth of the server's CPU per SVID, so one index row per SVID was half
//! of the log's cost.

use std::collections::BTreeMap;

use sled::Transactional;

use super::codec::{decode, encode, list_json, tx_result};
use super::{SledStore, ISSUANCES};
use crate::store::common::{check_authority, put_authority_span};
use crate::store::{AuthorityRecord, IssuanceRecord, StoreError};

/// Records removed per transaction when pruning (at least), to bound the memory a single
/// transaction holds however large the backlog.
const PRUNE_CHUNK: usize = 10_000;

/// Maps a signed time onto bytes whose lexicographic order is numeric order.
fn time_prefix(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn expiry_key(not_after: i64, serial: &str) -> Vec<u8> {
    let mut key = time_prefix(not_after).to_vec();
    key.extend_from_slice(serial.as_bytes());
    key
}

/// The serials an index row names: those in its value, or, for a row
/// written before rows were grouped (empty value), the one in its key.
fn index_row_serials(key: &[u8], value: &[u8]) -> Vec<Vec<u8>> {
    if value.is_empty() {
        key.get(8..).map(|s| vec![s.to_vec()]).unwrap_or_default()
    } else {
        value.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
    }
}

/// An index row naming `serials` and whatever `old` (the row at `key`, if
/// any) named already, each once.
fn merged_row(key: &[u8], old: Option<&[u8]>, serials: &[&str]) -> Vec<u8> {
    let Some(old) = old else {
        return serials.join("\n").into_bytes();
    };
    let mut all = index_row_serials(key, old);
    for serial in serials {
        if !all.iter().any(|s| s == serial.as_bytes()) {
            all.push(serial.as_bytes().to_vec());
        }
    }
    all.join(&b'\n')
}

impl SledStore {
    pub(super) fn put_authority_impl(&self, record: &AuthorityRecord) -> Result<(), StoreError> {
        let _span = put_authority_span(record);
        check_authority(record)?;
        let bytes = encode("authority", &record.id, record)?;
        self.authorities
            .insert(record.id.as_bytes(), bytes)
            .map_err(StoreError::sled("write an authority record"))?;
        self.flush("flush an authority record")
    }

    /// Every issuance record, by serial (for `herald store migrate`).
    pub fn export_issuances(&self) -> Result<Vec<IssuanceRecord>, StoreError> {
        list_json(&self.issuances, ISSUANCES)
    }

    pub(super) fn append_issuances_impl(
        &self,
        records: &[IssuanceRecord],
    ) -> Result<(), StoreError> {
        let _span = tracing::debug_span!("store.append_issuances", count = records.len()).entered();
        if records.is_empty() {
            return Ok(());
        }
        let encoded = records
            .iter()
            .map(|r| {
                r.validate()?;
                encode("issuance record", &r.serial, r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Plain inserts, neither a transaction (~9 µs per record, a tenth
        // of an issuance) nor `apply_batch`: both take sled's global
        // exclusive lock, which waits for every flush in progress (a flush
        // holds the shared side through its disk write) and, while it
        // waits, holds back every reader. Writers queued there cannot join
        // the flush group below, so concurrent issuances paid one flush
        // each; inserts take the shared side and apply during a flush.
        // The index rows go first, so a crash between the two leaves at
        // worst an index row whose records are missing, which pruning
        // skips; never an unindexed record.
        //
        // A serial written again with another expiry (serials are 128
        // random bits: a retry repeats the record) would leave its old
        // expiry row behind; pruning re-reads the record before removing
        // it, so such a row only ever removes itself. Not reading every
        // serial first saves a tree read per SVID.
        let mut by_expiry: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
        for record in records {
            by_expiry
                .entry(record.not_after)
                .or_default()
                .push(&record.serial);
        }
        for (not_after, serials) in by_expiry {
            // Keyed by the first serial. A row already there (that serial
            // appended again with the same expiry) is merged with, not
            // replaced: its other serials would lose their only index row.
            let key = expiry_key(not_after, serials[0]);
            self.issuances_by_expiry
                .fetch_and_update(&key, |old| Some(merged_row(&key, old, &serials)))
                .map_err(StoreError::sled("append an issuance index row"))?;
        }
        for (record, bytes) in records.iter().zip(encoded) {
            self.issuances
                .insert(record.serial.as_bytes(), bytes)
                .map_err(StoreError::sled("append an issuance record"))?;
        }
        self.flush("flush issuance records")
    }

    pub(super) fn prune_issuances_impl(&self, before: i64) -> Result<usize, StoreError> {
        let _span = tracing::debug_span!("store.prune_issuances", before).entered();
        let end = time_prefix(before).to_vec();
        let mut removed = 0;
        loop {
            let mut chunk = Vec::new();
            let mut serials = 0;
            for item in self.issuances_by_expiry.range(..end.clone()) {
                let (key, value) =
                    item.map_err(StoreError::sled("scan the issuance expiry index"))?;
                let row = index_row_serials(&key, &value);
                serials += row.len();
                chunk.push((key, row));
                if serials >= PRUNE_CHUNK {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            let result = (&self.issuances, &self.issuances_by_expiry).transaction(
                |(issuances, by_expiry)| {
                    let mut count = 0;
                    for (key, serials) in &chunk {
                        by_expiry.remove(key)?;
                        for serial in serials {
                            // Re-read inside the transaction: the serial may
                            // have been re-appended with a later expiry.
                            let Some(bytes) = issuances.get(serial)? else {
                                continue;
                            };
                            match decode::<IssuanceRecord>(ISSUANCES, serial, &bytes) {
                                Ok(record) if record.not_after < before => {
                                    issuances.remove(serial.as_slice())?;
                                    count += 1;
                                }
                                // Still valid, or unreadable (kept for the
                                // operator to inspect): leave the record.
                                _ => {}
                            }
                        }
                    }
                    Ok(count)
                },
            );
            removed += tx_result("prune issuance records", result)?;
        }
        self.flush("flush pruned issuance records")?;
        tracing::debug!(removed, "pruned expired issuance records");
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// A batch sharing one expiry writes one index row naming all its
    /// serials; a row from before grouping (serial in the key, empty value)
    /// is still pruned.
    #[test]
    fn one_index_row_per_expiry_and_old_rows_still_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let batch: Vec<_> = (0..5)
            .map(|i| record(&format!("a{i}"), if i < 3 { 100 } else { 200 }))
            .collect();
        store.append_issuances(&batch).unwrap();
        assert_eq!(store.issuances_by_expiry.len(), 2);
        let old = record("0b", 150);
        store
            .issuances
            .insert(
                old.serial.as_bytes(),
                encode("issuance record", "0b", &old).unwrap(),
            )
            .unwrap();
        store
            .issuances_by_expiry
            .insert(expiry_key(150, "0b"), &[][..])
            .unwrap();

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
        assert_eq!(store.prune_issuances(101).unwrap(), 2);
        assert_eq!(store.count_issuances().unwrap(), 0);
    }
}

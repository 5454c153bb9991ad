//! The CA journal (authority records) and the issuance log.
//!
//! The issuance log has a second tree ordered by expiry, so that pruning
//! reads only the expired rows instead of the whole log.

use sled::Transactional;

use super::codec::{decode, encode, list_json, tx_result};
use super::{SledStore, ISSUANCES};
use crate::store::common::{check_authority, put_authority_span};
use crate::store::{AuthorityRecord, IssuanceRecord, StoreError};

/// Rows removed per transaction when pruning, to bound the memory a single
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
        // The index row goes first, so a crash between the two leaves at
        // worst an index row whose record is missing, which pruning skips;
        // never an unindexed record.
        //
        // A serial written again with another expiry (serials are 128
        // random bits: a retry repeats the record) would leave its old
        // expiry row behind; pruning re-reads the record before removing
        // it, so such a row only ever removes itself. Not reading every
        // serial first saves a tree read per SVID.
        for (record, bytes) in records.iter().zip(encoded) {
            self.issuances_by_expiry
                .insert(expiry_key(record.not_after, &record.serial), &[][..])
                .map_err(StoreError::sled("append an issuance index row"))?;
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
            let mut chunk = Vec::with_capacity(PRUNE_CHUNK);
            for item in self.issuances_by_expiry.range(..end.clone()) {
                let (key, _) = item.map_err(StoreError::sled("scan the issuance expiry index"))?;
                chunk.push(key);
                if chunk.len() == PRUNE_CHUNK {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            let result = (&self.issuances, &self.issuances_by_expiry).transaction(
                |(issuances, by_expiry)| {
                    let mut count = 0;
                    for key in &chunk {
                        by_expiry.remove(key)?;
                        let serial = &key[8..];
                        // Re-read inside the transaction: the serial may
                        // have been re-appended with a later expiry.
                        let Some(bytes) = issuances.get(serial)? else {
                            continue;
                        };
                        match decode::<IssuanceRecord>(ISSUANCES, serial, &bytes) {
                            Ok(record) if record.not_after < before => {
                                issuances.remove(serial)?;
                                count += 1;
                            }
                            // Still valid, or unreadable (kept for the
                            // operator to inspect): leave the record.
                            _ => {}
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

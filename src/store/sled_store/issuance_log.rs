//! The issuance log: one record per issued certificate, kept in groups of
//! serials that differ only in their last hex digit, and indexed by expiry.
//!
//! Why groups: a sled insert cost about 8 µs per SVID on the issuance path
//! (a tree walk to a random leaf, then a node update), a tenth of the
//! server's CPU per SVID. The CA draws the serials of one batch in blocks of
//! 16 that share all but that digit ([`crate::ca::serial`]), so a batch of
//! 500 writes 32 group values instead of 500 records. A group holds at most
//! 16 records (~4 KB), which keeps sled's leaves (16 values) far below the
//! size sled moves to its separate blob files, which our fdatasync does not
//! cover. Any serial has a group key, so records of serials drawn otherwise
//! (older certificates, other paths) are stored the same way. Serials start
//! with the second their block was drawn in, so new groups go to the end of
//! the tree, next to each other, instead of each to a random leaf.
//!
//! The expiry index has one row per expiry second of an append, naming its
//! serials, so that pruning reads only the expired rows.
//!
//! Records from before groups (the `issuances` tree, one record per serial)
//! are moved into groups when the store opens ([`SledStore::upgrade_issuance_log`]).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::codec::{abort, decode, encode, tx_result};
use super::{SledStore, ISSUANCES, ISSUANCE_GROUPS};
use crate::ca::serial::group_key;
use crate::store::{IssuanceRecord, StoreError};

/// Serials handled per transaction when pruning or upgrading (at least), to
/// bound the memory a single transaction holds however large the backlog.
const CHUNK: usize = 10_000;

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

fn decode_group(key: &[u8], bytes: &[u8]) -> Result<Vec<IssuanceRecord>, StoreError> {
    decode(ISSUANCE_GROUPS, key, bytes)
}

fn encode_group(key: &str, group: &[IssuanceRecord]) -> Result<Vec<u8>, StoreError> {
    encode("issuance group", key, &group)
}

/// The stored form of group `key` (now `stored`, if it exists) with
/// `records` put in, each replacing the record of its serial if there is
/// one.
fn merged_group<'a>(
    key: &str,
    stored: Option<&[u8]>,
    records: impl IntoIterator<Item = &'a IssuanceRecord>,
) -> Result<Vec<u8>, StoreError> {
    let mut group = match stored {
        Some(bytes) => decode_group(key.as_bytes(), bytes)?,
        None => Vec::new(),
    };
    for record in records {
        match group.iter_mut().find(|r| r.serial == record.serial) {
            Some(slot) => *slot = record.clone(),
            None => group.push(record.clone()),
        }
    }
    encode_group(key, &group)
}

/// Puts `records` (all of group `key`) into their group inside a
/// transaction.
fn merge_in_tx<'a>(
    groups: &TransactionalTree,
    key: &str,
    records: impl IntoIterator<Item = &'a IssuanceRecord>,
) -> Result<(), sled::transaction::ConflictableTransactionError<StoreError>> {
    let stored = groups.get(key)?;
    let merged = merged_group(key, stored.as_deref(), records).map_err(abort)?;
    groups.insert(key.as_bytes(), merged)?;
    Ok(())
}

impl SledStore {
    pub(super) fn append_issuances_impl(
        &self,
        records: &[IssuanceRecord],
    ) -> Result<(), StoreError> {
        let _span = tracing::debug_span!("store.append_issuances", count = records.len()).entered();
        if records.is_empty() {
            return Ok(());
        }
        for record in records {
            record.validate()?;
        }
        // Plain writes, neither a transaction nor `apply_batch`: both take
        // sled's global exclusive lock, which waits for every flush in
        // progress (a flush holds the shared side through its disk write)
        // and, while it waits, holds back every reader. Writers queued there
        // cannot join the flush group below, so concurrent issuances paid
        // one flush each; plain writes take the shared side and apply during
        // a flush. The index rows go first, so a crash between the two
        // leaves at worst an index row whose records are missing, which
        // pruning skips; never an unindexed record.
        //
        // A serial written again with another expiry (a retry repeats the
        // record) would leave its old expiry row behind; pruning re-reads
        // the record before removing it, so such a row only ever removes
        // itself. Not reading every serial first saves a read per SVID.
        let mut by_expiry: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
        let mut by_group: BTreeMap<&str, Vec<&IssuanceRecord>> = BTreeMap::new();
        for record in records {
            by_expiry
                .entry(record.not_after)
                .or_default()
                .push(&record.serial);
            by_group
                .entry(group_key(&record.serial))
                .or_default()
                .push(record);
        }
        const OP: &str = "append an issuance index row";
        for (not_after, serials) in by_expiry {
            // Keyed by the first serial. A row already there (that serial
            // appended again with the same expiry) is merged with, not
            // replaced: its other serials would lose their only index row.
            let key = expiry_key(not_after, serials[0]);
            // A fresh serial's row is new: one tree operation, no read.
            let fresh = serials.join("\n").into_bytes();
            let created = self
                .issuances_by_expiry
                .compare_and_swap(&key, None::<&[u8]>, Some(fresh))
                .map_err(StoreError::sled(OP))?;
            if created.is_err() {
                self.issuances_by_expiry
                    .fetch_and_update(&key, |old| Some(merged_row(&key, old, &serials)))
                    .map_err(StoreError::sled(OP))?;
            }
        }
        for (key, records) in by_group {
            self.put_in_group(key, &records)?;
        }
        self.flush("flush issuance records")
    }

    /// Merges `records` into group `key`: a compare-and-swap from the group
    /// as last read (at first, from no group), read again and merged again
    /// whenever it was not that (a group already there, or another writer
    /// in between, which only a retry of the same serials can be).
    fn put_in_group(&self, key: &str, records: &[&IssuanceRecord]) -> Result<(), StoreError> {
        // Fresh serials make a new group: try that first, without a read.
        let mut old: Option<sled::IVec> = None;
        loop {
            let new = merged_group(key, old.as_deref(), records.iter().copied())?;
            let swapped = self
                .issuance_groups
                .compare_and_swap(key, old, Some(new))
                .map_err(StoreError::sled("write an issuance group"))?;
            match swapped {
                Ok(()) => return Ok(()),
                Err(conflict) => old = conflict.current,
            }
        }
    }

    /// The record of `serial` (lowercase hex), if any: in its group, or,
    /// for a record the upgrade could not read, in the old per-serial tree
    /// (whose unreadable value is then reported as corrupt).
    pub(super) fn get_issuance_impl(
        &self,
        serial: &str,
    ) -> Result<Option<IssuanceRecord>, StoreError> {
        let key = group_key(serial);
        if let Some(bytes) = self
            .issuance_groups
            .get(key)
            .map_err(StoreError::sled("read an issuance group"))?
        {
            let group = decode_group(key.as_bytes(), &bytes)?;
            if let Some(record) = group.into_iter().find(|r| r.serial == serial) {
                return Ok(Some(record));
            }
        }
        match self
            .issuances
            .get(serial)
            .map_err(StoreError::sled("read an issuance record"))?
        {
            Some(bytes) => decode(ISSUANCES, serial.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records in the log: in groups, plus any the upgrade left behind.
    pub(super) fn count_issuances_impl(&self) -> Result<u64, StoreError> {
        let mut count = self.issuances.len() as u64;
        for item in self.issuance_groups.iter() {
            let (key, bytes) = item.map_err(StoreError::sled("read an issuance group"))?;
            let group: Vec<IgnoredAny> = decode(ISSUANCE_GROUPS, &key, &bytes)?;
            count += group.len() as u64;
        }
        Ok(count)
    }

    /// Every issuance record, by serial (for `herald store migrate`).
    pub fn export_issuances(&self) -> Result<Vec<IssuanceRecord>, StoreError> {
        let mut all = Vec::new();
        for item in self.issuance_groups.iter() {
            let (key, bytes) = item.map_err(StoreError::sled("read an issuance group"))?;
            all.extend(decode_group(&key, &bytes)?);
        }
        for item in self.issuances.iter() {
            let (key, bytes) = item.map_err(StoreError::sled("read an issuance record"))?;
            all.push(decode(ISSUANCES, &key, &bytes)?);
        }
        all.sort_by(|a, b| a.serial.cmp(&b.serial));
        Ok(all)
    }

    pub(super) fn prune_issuances_impl(&self, before: i64) -> Result<usize, StoreError> {
        let _span = tracing::debug_span!("store.prune_issuances", before).entered();
        let end = time_prefix(before).to_vec();
        let mut removed = 0;
        loop {
            let mut rows = Vec::new();
            let mut by_group: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
            let mut serials = 0;
            for item in self.issuances_by_expiry.range(..end.clone()) {
                let (key, value) =
                    item.map_err(StoreError::sled("scan the issuance expiry index"))?;
                for serial in index_row_serials(&key, &value) {
                    let group = group_key(&String::from_utf8_lossy(&serial)).to_owned();
                    by_group.entry(group).or_default().push(serial);
                    serials += 1;
                }
                rows.push(key);
                if serials >= CHUNK {
                    break;
                }
            }
            if rows.is_empty() {
                break;
            }
            let result = (&self.issuance_groups, &self.issuances_by_expiry).transaction(
                |(groups, by_expiry)| {
                    for key in &rows {
                        by_expiry.remove(key)?;
                    }
                    let mut count = 0;
                    for (key, serials) in &by_group {
                        let Some(bytes) = groups.get(key)? else {
                            continue;
                        };
                        // Unreadable: kept for the operator to inspect.
                        let Ok(mut group) = decode_group(key.as_bytes(), &bytes) else {
                            continue;
                        };
                        let had = group.len();
                        // Re-read inside the transaction: a serial may have
                        // been re-appended with a later expiry.
                        group.retain(|r| {
                            r.not_after >= before
                                || !serials.iter().any(|s| s == r.serial.as_bytes())
                        });
                        count += had - group.len();
                        if group.is_empty() {
                            groups.remove(key.as_bytes())?;
                        } else if group.len() != had {
                            let bytes = encode_group(key, &group).map_err(abort)?;
                            groups.insert(key.as_bytes(), bytes)?;
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

    /// Moves the records of the old per-serial tree into groups, a chunk
    /// per transaction; each record leaves the old tree in the transaction
    /// that puts it in its group, so a crash midway loses nothing and the
    /// next open moves the rest. A record that does not decode stays where
    /// it is (reported as corrupt when read) rather than be lost.
    pub(super) fn upgrade_issuance_log(&self) -> Result<(), StoreError> {
        let mut from: Vec<u8> = Vec::new();
        let (mut moved, mut unreadable) = (0usize, 0usize);
        loop {
            let mut chunk: BTreeMap<String, Vec<IssuanceRecord>> = BTreeMap::new();
            let mut serials = Vec::new();
            let mut last = None;
            for item in self.issuances.range(from.clone()..).take(CHUNK) {
                let (key, bytes) = item.map_err(StoreError::sled("read an issuance record"))?;
                last = Some(key.to_vec());
                match decode::<IssuanceRecord>(ISSUANCES, &key, &bytes) {
                    Ok(record) => {
                        serials.push(key.to_vec());
                        chunk
                            .entry(group_key(&record.serial).to_owned())
                            .or_default()
                            .push(record);
                    }
                    Err(e) => {
                        unreadable += 1;
                        tracing::warn!(error = %e, "an old issuance record does not decode; left in place");
                    }
                }
            }
            let Some(mut last) = last else { break };
            let result = (&self.issuances, &self.issuance_groups).transaction(|(old, groups)| {
                for (key, records) in &chunk {
                    merge_in_tx(groups, key, records)?;
                }
                for serial in &serials {
                    old.remove(serial.as_slice())?;
                }
                Ok(())
            });
            tx_result("move issuance records into groups", result)?;
            moved += serials.len();
            // The next chunk starts after this one's last key.
            last.push(0);
            from = last;
        }
        if moved > 0 {
            self.flush("flush the upgraded issuance log")?;
            tracing::info!(moved, unreadable, "moved issuance records into groups");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "issuance_log_tests.rs"]
mod tests;

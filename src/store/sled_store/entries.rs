//! Registration entries and their three index trees (by parent, by
//! selector, by "similarity"), always written together in one transaction.

use sled::transaction::{ConflictableTransactionError, TransactionResult, TransactionalTree};
use sled::{Transactional, Tree};

use super::codec::{abort, decode, encode, key_str, tx_result};
use super::{SledStore, ENTRIES};
use crate::registration::RegistrationEntry;
use crate::store::common::{log_created, new_entry, similar_key};
use crate::store::{entry_expired, StoreError};

const KIND: &str = "registration entry";
/// The `AlreadyExists` kind when another entry has the same SPIFFE ID,
/// parent ID and selector set (SPIRE calls these "similar" entries).
const SIMILAR_KIND: &str = "registration entry with the same SPIFFE ID, parent ID and selectors";

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// `value\0`: the prefix of every index row for a parent ID or selector.
pub(super) fn index_prefix(value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(value.len() + 1);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key
}

fn index_key(prefix: &str, id: &str) -> Vec<u8> {
    let mut key = index_prefix(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The four trees of an entry, as seen inside one transaction.
struct EntryTrees<'a> {
    entries: &'a TransactionalTree,
    by_parent: &'a TransactionalTree,
    by_selector: &'a TransactionalTree,
    similar: &'a TransactionalTree,
}

impl EntryTrees<'_> {
    fn insert(&self, entry: &RegistrationEntry, bytes: &[u8], similar: &[u8]) -> TxResult<()> {
        let id = entry.id.as_str();
        self.entries.insert(id.as_bytes(), bytes)?;
        self.by_parent
            .insert(index_key(entry.parent_id.as_str(), id), &[][..])?;
        for selector in entry.selector_set() {
            self.by_selector
                .insert(index_key(&selector.to_string(), id), &[][..])?;
        }
        self.similar.insert(similar, id.as_bytes())?;
        Ok(())
    }

    /// Removes the entry and every index row it owns.
    fn remove(&self, entry: &RegistrationEntry) -> TxResult<()> {
        let id = entry.id.as_str();
        self.entries.remove(id.as_bytes())?;
        self.by_parent
            .remove(index_key(entry.parent_id.as_str(), id))?;
        for selector in entry.selector_set() {
            self.by_selector
                .remove(index_key(&selector.to_string(), id))?;
        }
        let similar = similar_key(entry);
        if self.similar.get(&similar)?.as_deref() == Some(id.as_bytes()) {
            self.similar.remove(similar)?;
        }
        Ok(())
    }

    fn load(&self, id: &str) -> TxResult<Option<RegistrationEntry>> {
        match self.entries.get(id.as_bytes())? {
            Some(bytes) => decode(ENTRIES, id.as_bytes(), &bytes)
                .map(Some)
                .map_err(abort),
            None => Ok(None),
        }
    }
}

/// An entry checked and encoded before the transaction, so that the
/// transaction itself does only lookups and writes.
struct Prepared {
    entry: RegistrationEntry,
    bytes: Vec<u8>,
    similar: Vec<u8>,
}

fn prepare(entry: RegistrationEntry) -> Result<Prepared, StoreError> {
    let entry = new_entry(entry)?;
    let bytes = encode(KIND, &entry.id, &entry)?;
    let similar = similar_key(&entry);
    Ok(Prepared {
        entry,
        bytes,
        similar,
    })
}

/// Entries per transaction in a batch create.
const CREATE_CHUNK: usize = 1000;

impl SledStore {
    /// Runs `f` in one transaction over the four entry trees.
    fn in_entry_transaction<T>(
        &self,
        f: impl Fn(&EntryTrees<'_>) -> TxResult<T>,
    ) -> TransactionResult<T, StoreError> {
        let trees: (&Tree, &Tree, &Tree, &Tree) = (
            &self.entries,
            &self.entries_by_parent,
            &self.entries_by_selector,
            &self.entries_similar,
        );
        trees.transaction(|(entries, by_parent, by_selector, similar)| {
            f(&EntryTrees {
                entries,
                by_parent,
                by_selector,
                similar,
            })
        })
    }

    pub(super) fn create_entries_impl(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        let _span = tracing::debug_span!("store.create_entries", count = entries.len()).entered();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<Result<Prepared, StoreError>> =
            entries.into_iter().map(prepare).collect();

        // Transactions of CREATE_CHUNK entries: each entry appears with its
        // index rows or not at all, and the duplicate checks see the earlier
        // entries of the batch. One giant transaction would hold every
        // pending write in memory (a 10,000-entry batch cost ~200 MiB in
        // sled's transaction buffers); the batch still ends in one flush.
        let mut outcomes: Vec<Option<StoreError>> = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(CREATE_CHUNK) {
            let chunk_outcomes = self.in_entry_transaction(|trees| {
                let mut outcomes: Vec<Option<StoreError>> = Vec::with_capacity(chunk.len());
                for p in chunk {
                    let Ok(p) = p else {
                        outcomes.push(None);
                        continue;
                    };
                    let id = p.entry.id.as_str();
                    if trees.entries.get(id.as_bytes())?.is_some() {
                        outcomes.push(Some(StoreError::AlreadyExists {
                            kind: KIND,
                            id: id.to_owned(),
                        }));
                    } else if let Some(existing) = trees.similar.get(&p.similar)? {
                        outcomes.push(Some(StoreError::AlreadyExists {
                            kind: SIMILAR_KIND,
                            id: key_str(&existing),
                        }));
                    } else {
                        trees.insert(&p.entry, &p.bytes, &p.similar)?;
                        outcomes.push(None);
                    }
                }
                Ok(outcomes)
            });
            outcomes.extend(tx_result("create registration entries", chunk_outcomes)?);
        }
        self.flush("flush created registration entries")?;

        let results: Vec<_> = prepared
            .into_iter()
            .zip(outcomes)
            .map(|(p, outcome)| match (p, outcome) {
                (Err(e), _) => Err(e),
                (Ok(_), Some(e)) => Err(e),
                (Ok(p), None) => Ok(p.entry),
            })
            .collect();
        log_created(&results);
        Ok(results)
    }

    pub(super) fn update_entry_impl(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        let _span = tracing::debug_span!("store.update_entry", entry_id = %entry.id).entered();
        entry.validate()?;
        let similar_new = similar_key(&entry);
        let updated = self.in_entry_transaction(|trees| {
            let id = entry.id.as_str();
            let Some(old) = trees.load(id)? else {
                return Err(abort(StoreError::NotFound {
                    kind: KIND,
                    id: id.to_owned(),
                }));
            };
            if let Some(owner) = trees.similar.get(&similar_new)? {
                if owner.as_ref() != id.as_bytes() {
                    return Err(abort(StoreError::AlreadyExists {
                        kind: SIMILAR_KIND,
                        id: key_str(&owner),
                    }));
                }
            }
            let mut new = entry.clone();
            new.revision = old.revision.saturating_add(1);
            new.created_at = old.created_at;
            let bytes = encode(KIND, id, &new).map_err(abort)?;
            trees.remove(&old)?;
            trees.insert(&new, &bytes, &similar_new)?;
            Ok(new)
        });
        let updated = tx_result("update a registration entry", updated)?;
        self.flush("flush an updated registration entry")?;
        tracing::debug!(revision = updated.revision, "updated registration entry");
        Ok(updated)
    }

    pub(super) fn delete_entries_impl(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        let _span = tracing::debug_span!("store.delete_entries", count = ids.len()).entered();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let results = self.in_entry_transaction(|trees| {
            let mut results = Vec::with_capacity(ids.len());
            for id in ids {
                // A record that does not decode is reported, not
                // removed: we could not find its index rows.
                let loaded = match trees.entries.get(id.as_bytes())? {
                    None => Err(StoreError::NotFound {
                        kind: KIND,
                        id: id.clone(),
                    }),
                    Some(bytes) => decode::<RegistrationEntry>(ENTRIES, id.as_bytes(), &bytes),
                };
                if let Ok(entry) = &loaded {
                    trees.remove(entry)?;
                }
                results.push(loaded);
            }
            Ok(results)
        });
        let results = tx_result("delete registration entries", results)?;
        self.flush("flush deleted registration entries")?;
        Ok(results)
    }
}

/// The one field the expiry scan reads, so that a scan of every entry does
/// not decode whole entries.
#[derive(serde::Deserialize)]
struct ExpiryOnly {
    #[serde(default)]
    expires_at: Option<i64>,
}

impl SledStore {
    pub(super) fn prune_expired_entries_impl(
        &self,
        now: i64,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let _span = tracing::debug_span!("store.prune_expired_entries", now).entered();
        let mut expired = Vec::new();
        for item in self.entries.iter() {
            let (key, bytes) = item.map_err(StoreError::sled("scan registration entries"))?;
            // Unreadable records are skipped here as in the transaction below.
            if let Ok(e) = serde_json::from_slice::<ExpiryOnly>(&bytes) {
                if entry_expired(e.expires_at, now) {
                    expired.push(key_str(&key));
                }
            }
        }
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let mut removed = Vec::with_capacity(expired.len());
        for chunk in expired.chunks(CREATE_CHUNK) {
            let pruned = self.in_entry_transaction(|trees| {
                let mut pruned = Vec::new();
                for id in chunk {
                    let Some(bytes) = trees.entries.get(id.as_bytes())? else {
                        continue; // deleted since the scan
                    };
                    // Re-read inside the transaction: the entry may have
                    // been given a later expiry since the scan.
                    match decode::<RegistrationEntry>(ENTRIES, id.as_bytes(), &bytes) {
                        Ok(entry) if entry_expired(entry.expires_at, now) => {
                            trees.remove(&entry)?;
                            pruned.push(entry);
                        }
                        _ => {}
                    }
                }
                Ok(pruned)
            });
            removed.extend(tx_result("prune expired registration entries", pruned)?);
        }
        self.flush("flush pruned registration entries")?;
        tracing::debug!(
            removed = removed.len(),
            "pruned expired registration entries"
        );
        Ok(removed)
    }
}

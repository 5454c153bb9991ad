//! Registration entries and their three index trees (by parent, by
//! selector, by "similarity"), always written together in one transaction.

use std::ops::Bound;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::{abort, decode, encode, key_str, page_size, tx_result, SledStore, ENTRIES};
use crate::store::{EntryFilter, Page, PageRequest, RegistrationEntry, Selector, StoreError};

const KIND: &str = "registration entry";
/// The `AlreadyExists` kind when another entry has the same SPIFFE ID,
/// parent ID and selector set (SPIRE calls these "similar" entries).
const SIMILAR_KIND: &str = "registration entry with the same SPIFFE ID, parent ID and selectors";

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn parent_prefix(parent: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(parent.len() + 1);
    key.extend_from_slice(parent.as_bytes());
    key.push(0);
    key
}

fn index_key(prefix: &str, id: &str) -> Vec<u8> {
    let mut key = parent_prefix(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The key that makes "same SPIFFE ID, parent ID and selector set" a single
/// point lookup, so that duplicate detection stays O(1) per entry even for
/// a batch of 100,000.
fn similar_key(entry: &RegistrationEntry) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(entry.spiffe_id.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(entry.parent_id.as_str().as_bytes());
    for selector in entry.selector_set() {
        key.push(0);
        key.extend_from_slice(selector.to_string().as_bytes());
    }
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

fn prepare(mut entry: RegistrationEntry) -> Result<Prepared, StoreError> {
    if entry.id.is_empty() {
        entry.id = uuid::Uuid::new_v4().to_string();
    }
    entry.revision = 1;
    entry.validate()?;
    let bytes = encode(KIND, &entry.id, &entry)?;
    let similar = similar_key(&entry);
    Ok(Prepared {
        entry,
        bytes,
        similar,
    })
}

impl SledStore {
    fn entry_trees(&self) -> (&Tree, &Tree, &Tree, &Tree) {
        (
            &self.entries,
            &self.entries_by_parent,
            &self.entries_by_selector,
            &self.entries_similar,
        )
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

        // One transaction for the batch: the entries and their index rows
        // appear together or not at all, and the duplicate checks see the
        // earlier entries of the same batch.
        let outcomes =
            self.entry_trees()
                .transaction(|(entries, by_parent, by_selector, similar)| {
                    let trees = EntryTrees {
                        entries,
                        by_parent,
                        by_selector,
                        similar,
                    };
                    let mut outcomes: Vec<Option<StoreError>> = Vec::with_capacity(prepared.len());
                    for p in &prepared {
                        let Ok(p) = p else {
                            outcomes.push(None);
                            continue;
                        };
                        let id = p.entry.id.as_str();
                        if entries.get(id.as_bytes())?.is_some() {
                            outcomes.push(Some(StoreError::AlreadyExists {
                                kind: KIND,
                                id: id.to_owned(),
                            }));
                        } else if let Some(existing) = similar.get(&p.similar)? {
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
        let outcomes = tx_result("create registration entries", outcomes)?;
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
        let created = results.iter().filter(|r| r.is_ok()).count();
        tracing::debug!(
            created,
            failed = results.len() - created,
            "created registration entries"
        );
        Ok(results)
    }

    pub(super) fn update_entry_impl(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        let _span = tracing::debug_span!("store.update_entry", entry_id = %entry.id).entered();
        entry.validate()?;
        let similar_new = similar_key(&entry);
        let updated =
            self.entry_trees()
                .transaction(|(entries, by_parent, by_selector, similar)| {
                    let trees = EntryTrees {
                        entries,
                        by_parent,
                        by_selector,
                        similar,
                    };
                    let id = entry.id.as_str();
                    let Some(old) = trees.load(id)? else {
                        return Err(abort(StoreError::NotFound {
                            kind: KIND,
                            id: id.to_owned(),
                        }));
                    };
                    if let Some(owner) = similar.get(&similar_new)? {
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
        let results =
            self.entry_trees()
                .transaction(|(entries, by_parent, by_selector, similar)| {
                    let trees = EntryTrees {
                        entries,
                        by_parent,
                        by_selector,
                        similar,
                    };
                    let mut results = Vec::with_capacity(ids.len());
                    for id in ids {
                        // A record that does not decode is reported, not
                        // removed: we could not find its index rows.
                        let loaded = match entries.get(id.as_bytes())? {
                            None => Err(StoreError::NotFound {
                                kind: KIND,
                                id: id.clone(),
                            }),
                            Some(bytes) => {
                                decode::<RegistrationEntry>(ENTRIES, id.as_bytes(), &bytes)
                            }
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

    pub(super) fn list_entries_impl(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError> {
        let size = page_size(page);
        let token = page.token.as_deref();
        match &filter.by_parent_id {
            // The parent index is ordered by id within a parent, so it pages
            // the same way as the entries tree, without a full scan.
            Some(parent) => {
                let prefix = parent_prefix(parent.as_str());
                let ids = self.index_ids(&self.entries_by_parent, &prefix, token);
                collect_page(self.load_ids(ids), filter, size)
            }
            None => {
                let start = match token {
                    Some(token) => Bound::Excluded(token.as_bytes().to_vec()),
                    None => Bound::Unbounded,
                };
                let iter = self
                    .entries
                    .range::<Vec<u8>, _>((start, Bound::Unbounded))
                    .map(|item| {
                        let (key, value) = item.map_err(StoreError::sled("scan entries"))?;
                        decode(ENTRIES, &key, &value)
                    });
                collect_page(iter, filter, size)
            }
        }
    }

    /// Entries listed by an index under `prefix` (without the `\0`). The
    /// index and the entries are read at different instants, so an entry
    /// deleted or changed in between is re-checked against `prefix` rather
    /// than reported as corrupt.
    pub(super) fn entries_by_index(
        &self,
        index: &Tree,
        prefix: &str,
        still_matches: impl Fn(&RegistrationEntry) -> bool,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let prefix = parent_prefix(prefix);
        let ids = self.index_ids(index, &prefix, None);
        let mut out = Vec::new();
        for entry in self.load_ids(ids) {
            let entry = entry?;
            if still_matches(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Ids of the index rows under `prefix` (which ends in `\0`), after
    /// `token` if given, in id order.
    fn index_ids<'a>(
        &self,
        index: &Tree,
        prefix: &'a [u8],
        token: Option<&str>,
    ) -> impl Iterator<Item = Result<String, StoreError>> + 'a {
        let start = match token {
            Some(token) => {
                let mut key = prefix.to_vec();
                key.extend_from_slice(token.as_bytes());
                Bound::Excluded(key)
            }
            None => Bound::Included(prefix.to_vec()),
        };
        index
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |item| match item {
                Ok((key, _)) => key.starts_with(prefix),
                Err(_) => true,
            })
            .map(move |item| {
                let (key, _) = item.map_err(StoreError::sled("scan an entry index"))?;
                Ok(key_str(&key[prefix.len()..]))
            })
    }

    /// Loads the entries named by `ids`, skipping ids whose entry has gone
    /// (deleted after the index was read).
    fn load_ids<'a>(
        &'a self,
        ids: impl Iterator<Item = Result<String, StoreError>> + 'a,
    ) -> impl Iterator<Item = Result<RegistrationEntry, StoreError>> + 'a {
        ids.filter_map(move |id| {
            let id = match id {
                Ok(id) => id,
                Err(e) => return Some(Err(e)),
            };
            match self.entries.get(id.as_bytes()) {
                Ok(Some(bytes)) => Some(decode(ENTRIES, id.as_bytes(), &bytes)),
                Ok(None) => None,
                Err(source) => Some(Err(StoreError::Sled {
                    op: "read an indexed entry",
                    source,
                })),
            }
        })
    }
}

/// Takes up to `size` entries passing `filter`, and looks one further so
/// that the last page carries no token.
fn collect_page(
    iter: impl Iterator<Item = Result<RegistrationEntry, StoreError>>,
    filter: &EntryFilter,
    size: usize,
) -> Result<Page<RegistrationEntry>, StoreError> {
    let mut items: Vec<RegistrationEntry> = Vec::new();
    let mut more = false;
    for entry in iter {
        let entry = entry?;
        if !filter.matches(&entry) {
            continue;
        }
        if items.len() == size {
            more = true;
            break;
        }
        items.push(entry);
    }
    let next_token = match (more, items.last()) {
        (true, Some(last)) => Some(last.id.clone()),
        _ => None,
    };
    Ok(Page { items, next_token })
}

/// Whether `entry` carries `selector`; re-checks a selector index row.
pub(super) fn has_selector(entry: &RegistrationEntry, selector: &Selector) -> bool {
    entry.selectors.iter().any(|s| s == selector)
}

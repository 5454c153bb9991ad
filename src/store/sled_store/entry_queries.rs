//! Reading registration entries: filtered, paged listings and the lookups
//! served by the parent and selector indexes.

use std::ops::Bound;

use sled::Tree;

use super::codec::{decode, key_str, page_size};
use super::entries::index_prefix;
use super::{SledStore, ENTRIES};
use crate::registration::RegistrationEntry;
use crate::store::{EntryFilter, Page, PageRequest, StoreError};

impl SledStore {
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
                let prefix = index_prefix(parent.as_str());
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
        let prefix = index_prefix(prefix);
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

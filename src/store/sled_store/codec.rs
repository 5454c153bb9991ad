//! Encoding of stored values, and the read/delete/page helpers shared by
//! the simple keyed trees (agents, federation relationships, authorities).
//!
//! Decoding never panics: whatever sled hands back is untrusted input, and a
//! value that does not decode is reported as `Corrupt` with its tree and key.

use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Tree;

use super::SledStore;
pub(super) use crate::store::common::{page_size, secret_prefix};
use crate::store::{Page, PageRequest, StoreError};

/// Renders a key for error messages; keys are UTF-8 except the expiry index.
pub(super) fn key_str(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

pub(super) fn encode<T: Serialize>(
    kind: &'static str,
    id: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        kind,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Decodes a stored value; failure is `Corrupt`, never a panic.
pub(super) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: key_str(key),
        reason: e.to_string(),
    })
}

/// Turns an error raised inside a transaction closure into an abort.
pub(super) fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Flattens a transaction's outcome into our error type.
pub(super) fn tx_result<T>(
    op: &'static str,
    r: Result<T, TransactionError<StoreError>>,
) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(source) => StoreError::Sled { op, source },
    })
}

/// Decodes the value at `key` of a simple keyed tree.
pub(super) fn get_json<T: DeserializeOwned>(
    tree: &Tree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match tree.get(key).map_err(StoreError::sled("read a record"))? {
        Some(bytes) => decode(name, key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Decodes every value of a simple keyed tree, in key order.
pub(super) fn list_json<T: DeserializeOwned>(
    tree: &Tree,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|item| {
            let (key, value) = item.map_err(StoreError::sled("scan records"))?;
            decode(name, &key, &value)
        })
        .collect()
}

/// Removes the record at `key` and returns it decoded. The removal is a
/// compare-and-swap against the bytes we decoded, so a concurrent replace is
/// never reported as the deleted value. Flushes before returning.
pub(super) fn delete_with<T>(
    store: &SledStore,
    tree: &Tree,
    kind: &'static str,
    key: &[u8],
    shown_id: &str,
    decode: impl Fn(&[u8]) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    loop {
        let Some(bytes) = tree.get(key).map_err(StoreError::sled("read a record"))? else {
            return Err(StoreError::NotFound {
                kind,
                id: shown_id.to_owned(),
            });
        };
        let value = decode(&bytes)?;
        let swapped = tree
            .compare_and_swap(key, Some(&bytes), None::<&[u8]>)
            .map_err(StoreError::sled("delete a record"))?;
        if swapped.is_ok() {
            store.flush("flush a delete")?;
            return Ok(value);
        }
    }
}

/// [`delete_with`] for trees holding plain JSON records.
pub(super) fn delete_json<T: DeserializeOwned>(
    store: &SledStore,
    tree: &Tree,
    name: &'static str,
    kind: &'static str,
    key: &[u8],
    shown_id: &str,
) -> Result<T, StoreError> {
    delete_with(store, tree, kind, key, shown_id, |bytes| {
        decode(name, key, bytes)
    })
}

/// One page of a simple keyed tree whose keys are the page tokens.
pub(super) fn page_json<T: DeserializeOwned>(
    tree: &Tree,
    name: &'static str,
    page: &PageRequest,
) -> Result<Page<T>, StoreError> {
    let size = page_size(page);
    let start = match &page.token {
        Some(token) => Bound::Excluded(token.as_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more = false;
    for item in tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
        let (key, value) = item.map_err(StoreError::sled("scan records"))?;
        if items.len() == size {
            more = true;
            break;
        }
        items.push(decode(name, &key, &value)?);
        last_key = Some(key);
    }
    let next_token = match (more, last_key) {
        (true, Some(key)) => Some(key_str(&key)),
        _ => None,
    };
    Ok(Page { items, next_token })
}

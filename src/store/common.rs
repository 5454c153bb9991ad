//! Rules both backends apply the same way: page sizes, how a secret is
//! shown, and what makes two registration entries "similar".

use super::{PageRequest, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::registration::RegistrationEntry;

/// The number of items a page request asks for, defaulted and capped.
pub(crate) fn page_size(page: &PageRequest) -> usize {
    match page.size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// The first four characters of a secret: enough to tell tokens apart in
/// logs and error messages, too few to use.
pub(crate) fn secret_prefix(secret: &str) -> String {
    secret.chars().take(4).collect()
}

/// The canonical form of "same SPIFFE ID, parent ID and selector set":
/// `spiffe_id\0parent_id\0sel\0sel…` with the selectors sorted and
/// deduplicated. SPIFFE IDs and selectors never contain NUL, so two entries
/// have the same key exactly when they are similar.
pub(crate) fn similar_key(entry: &RegistrationEntry) -> Vec<u8> {
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

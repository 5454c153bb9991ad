//! Resuming a Sync stream without a full re-download. An agent that
//! connects again (to the same server, or to another one of the trust
//! domain after a failover) says in its `SyncRequest` what it already
//! holds: the own bundle's sequence, its entries as (ID, revision) pairs
//! (or, when that list is too long, their digest), and the digest of the
//! federated set as the server last sent it. The server then sends a
//! *resumed* snapshot: only the entries that are new or changed and the
//! IDs to drop, the bundle only if its sequence moved, the federated set
//! only if it differs.
//!
//! Both ends use this file, so they compute the digests the same way. An
//! entry's revision changes with every change to it (the store bumps it),
//! so (ID, revision) names its content. An old server ignores the new
//! fields and sends a full snapshot, which the agent applies as before.

use std::collections::BTreeMap;

use ring::digest::{Context, SHA256};

use crate::proto::node;

/// The largest held-entries list an agent sends (encoded bytes); past it
/// the agent sends only the digest (about 20,000 entries fit).
pub const HELD_LIST_BUDGET: usize = 1 << 20;

/// SHA-256 over `(id, revision)` pairs, which must come in ascending ID
/// order (a `BTreeMap`'s): each as the ID's length (u32, big-endian), the
/// ID, and the revision (i64, big-endian).
pub fn entries_digest<'a>(entries: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<u8> {
    let mut ctx = Context::new(&SHA256);
    for (id, revision) in entries {
        // IDs are far below 4 GiB; a longer one would only change the digest.
        ctx.update(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
        ctx.update(id.as_bytes());
        ctx.update(&revision.to_be_bytes());
    }
    ctx.finish().as_ref().to_vec()
}

/// SHA-256 of the bytes of a federated set as the server encodes it.
pub fn bytes_digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// The `SyncRequest` of an agent holding `entries` (ID → revision, in ID
/// order), the own bundle at `bundle_sequence`, and the federated set the
/// server last described with `federated_digest`.
pub fn resume_request<'a>(
    bundle_sequence: u64,
    entries: impl Iterator<Item = (&'a str, i64)> + Clone,
    federated_digest: Option<&[u8]>,
) -> node::SyncRequest {
    let mut request = node::SyncRequest {
        resume: true,
        held_bundle_sequence: bundle_sequence,
        held_federated_digest: federated_digest.map(<[u8]>::to_vec).unwrap_or_default(),
        ..Default::default()
    };
    // Field tags and lengths: a few bytes per entry besides its ID.
    let size: usize = entries.clone().map(|(id, _)| id.len() + 16).sum();
    if size <= HELD_LIST_BUDGET {
        request.held_entries = entries
            .map(|(id, revision)| node::HeldEntry {
                id: id.to_string(),
                revision,
            })
            .collect();
    } else {
        request.held_entries_digest = entries_digest(entries);
    }
    request
}

/// What a resumed snapshot sends for the entries.
#[derive(Debug, PartialEq, Eq)]
pub struct EntryChanges<'a, V> {
    /// Entries the agent lacks, or holds at another revision.
    pub upserted: Vec<&'a V>,
    /// IDs the agent holds that are no longer authorized.
    pub removed: Vec<String>,
}

/// The changes between what `request` says the agent holds and `current`
/// (`revision` reads an entry's revision); None when the agent asked for
/// no resume, or sent a digest that does not match (a full snapshot then).
pub fn entry_changes<'a, V>(
    request: &node::SyncRequest,
    current: &'a BTreeMap<String, V>,
    revision: impl Fn(&V) -> i64,
) -> Option<EntryChanges<'a, V>> {
    if !request.resume {
        return None;
    }
    if !request.held_entries_digest.is_empty() {
        let ours = entries_digest(current.iter().map(|(id, e)| (id.as_str(), revision(e))));
        return (ours == request.held_entries_digest).then(|| EntryChanges {
            upserted: Vec::new(),
            removed: Vec::new(),
        });
    }
    let held: BTreeMap<&str, i64> = request
        .held_entries
        .iter()
        .map(|h| (h.id.as_str(), h.revision))
        .collect();
    let upserted = current
        .iter()
        .filter(|(id, e)| held.get(id.as_str()) != Some(&revision(e)))
        .map(|(_, e)| e)
        .collect();
    let removed = held
        .keys()
        .filter(|id| !current.contains_key(**id))
        .map(|id| id.to_string())
        .collect();
    Some(EntryChanges { upserted, removed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(id, r)| (id.to_string(), *r)).collect()
    }

    fn request(pairs: &[(&str, i64)]) -> node::SyncRequest {
        let held = current(pairs);
        resume_request(7, held.iter().map(|(id, r)| (id.as_str(), *r)), None)
    }

    #[test]
    fn a_held_list_yields_only_what_changed() {
        let now = current(&[("a", 1), ("b", 3), ("d", 1)]);
        let req = request(&[("a", 1), ("b", 2), ("c", 1)]);
        assert_eq!(req.held_bundle_sequence, 7);
        assert!(req.held_entries_digest.is_empty());
        let changes = entry_changes(&req, &now, |r| *r).unwrap();
        assert_eq!(changes.upserted, [&3, &1], "b at a new revision, d new");
        assert_eq!(changes.removed, ["c"]);

        let same = request(&[("a", 1), ("b", 3), ("d", 1)]);
        let changes = entry_changes(&same, &now, |r| *r).unwrap();
        assert!(changes.upserted.is_empty() && changes.removed.is_empty());

        // An agent holding nothing gets everything.
        let empty = request(&[]);
        assert_eq!(
            entry_changes(&empty, &now, |r| *r).unwrap().upserted.len(),
            3
        );
    }

    #[test]
    fn no_resume_asked_means_a_full_snapshot() {
        let now = current(&[("a", 1)]);
        assert!(entry_changes(&node::SyncRequest::default(), &now, |r| *r).is_none());
    }

    #[test]
    fn a_list_over_budget_goes_as_a_digest_that_matches_only_the_same_set() {
        let ids: Vec<String> = (0..30_000)
            .map(|n| format!("entry-{n:08}-{}", "x".repeat(30)))
            .collect();
        let now: BTreeMap<String, i64> = ids.iter().map(|id| (id.clone(), 1)).collect();
        let req = resume_request(1, now.iter().map(|(id, r)| (id.as_str(), *r)), Some(b"fed"));
        assert!(req.held_entries.is_empty(), "too long to list");
        assert_eq!(req.held_entries_digest.len(), 32);
        assert_eq!(req.held_federated_digest, b"fed");
        let changes = entry_changes(&req, &now, |r| *r).unwrap();
        assert!(changes.upserted.is_empty() && changes.removed.is_empty());

        let mut changed = now.clone();
        changed.insert(ids[5].clone(), 2);
        assert!(
            entry_changes(&req, &changed, |r| *r).is_none(),
            "full snapshot"
        );
        let mut fewer = now;
        fewer.remove(&ids[0]);
        assert!(entry_changes(&req, &fewer, |r| *r).is_none());
    }

    #[test]
    fn digests_depend_on_ids_revisions_and_boundaries() {
        let d = |p: &[(&str, i64)]| entries_digest(p.iter().map(|(i, r)| (*i, *r)));
        assert_eq!(d(&[("a", 1), ("b", 2)]), d(&[("a", 1), ("b", 2)]));
        assert_ne!(d(&[("a", 1), ("b", 2)]), d(&[("a", 1), ("b", 3)]));
        assert_ne!(d(&[("ab", 1)]), d(&[("a", 1), ("b", 1)]));
        assert_ne!(d(&[]), d(&[("a", 1)]));
        assert_eq!(
            bytes_digest([&b"ab"[..], b"c"]),
            bytes_digest([&b"abc"[..]])
        );
    }
}

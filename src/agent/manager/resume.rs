//! Resuming Sync after a reconnection (`crate::node::resume`): the
//! request that says what the agent holds, and the snapshot that comes
//! back, full (it replaces the entry set) or resumed (it changes only what
//! it names). A snapshot may span several messages; nothing of it applies
//! until its last one arrives.

use std::collections::BTreeMap;

use super::stored::StoredEntry;
use super::Manager;
use crate::node::resume::resume_request;
use crate::proto::node;

/// A snapshot still arriving.
#[derive(Default)]
pub(super) struct PendingSnapshot {
    /// Changes to the held set rather than a new set.
    pub(super) resumed: bool,
    /// The entries received so far.
    pub(super) upserted: BTreeMap<String, StoredEntry>,
    /// IDs to drop (resumed only).
    pub(super) removed: Vec<String>,
}

impl Manager {
    /// What the Sync request says: nothing before the first complete
    /// snapshot of this run (entries restored from disk are not the
    /// server's full form), then the bundle sequence, the entries and the
    /// federated set held.
    pub(super) fn sync_request(&self) -> node::SyncRequest {
        if !self.synced_once {
            return node::SyncRequest::default();
        }
        resume_request(
            self.bundle.sequence,
            self.entries.iter().map(|(id, e)| (id.as_str(), e.revision)),
            self.federated_digest.as_deref(),
        )
    }

    /// Applies a complete snapshot: a resumed one changes the held set, a
    /// full one replaces it.
    pub(super) fn finish_snapshot(&mut self, pending: PendingSnapshot) {
        if pending.resumed {
            let (changed, removed) = (pending.upserted.len(), pending.removed.len());
            for id in pending.removed {
                self.entries.remove(&id);
            }
            self.entries.extend(pending.upserted);
            self.metrics.sync_resumed();
            tracing::info!(
                changed,
                removed,
                entries = self.entries.len(),
                "sync resumed: only the changes were sent"
            );
        } else {
            self.entries = pending.upserted;
            tracing::debug!(entries = self.entries.len(), "snapshot applied");
        }
        self.synced_once = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use crate::proto::node;

    fn resumed(upserted: Vec<node::Entry>, removed: &[&str], complete: bool) -> node::SyncUpdate {
        node::SyncUpdate {
            snapshot: true,
            resumed: true,
            complete,
            upserted,
            removed: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_request_says_what_is_held_once_synced() {
        let f = fixture();
        assert_eq!(f.manager.sync_request(), node::SyncRequest::default());

        let mut f = synced(&[("b", 2), ("a", 1)]);
        let mut fed = wire_bundle(&new_ca(), 1);
        fed.trust_domain = "partner.org".into();
        f.manager
            .apply(node::SyncUpdate {
                federated_bundles: vec![fed],
                federated_bundles_changed: true,
                federated_digest: vec![7; 32],
                ..Default::default()
            })
            .unwrap();
        let req = f.manager.sync_request();
        assert!(req.resume);
        assert_eq!(req.held_bundle_sequence, 1);
        let held: Vec<_> = req
            .held_entries
            .iter()
            .map(|h| (h.id.as_str(), h.revision))
            .collect();
        assert_eq!(held, [("a", 1), ("b", 2)]);
        assert_eq!(req.held_federated_digest, vec![7; 32]);
    }

    #[test]
    fn a_resumed_snapshot_changes_only_what_it_names() {
        let mut f = synced(&[("a", 1), ("b", 1), ("c", 1)]);
        let ca = new_ca();
        issue(&mut f, &ca, &[("a", 1_000), ("b", 1_000), ("c", 1_000)]);
        let m = &mut f.manager;
        // Split over two messages: nothing applies before the last.
        assert!(!m
            .apply(resumed(vec![wire_entry("b", 2)], &[], false))
            .unwrap());
        assert_eq!(m.entries["b"].revision, 1);
        assert!(m
            .apply(resumed(vec![wire_entry("d", 1)], &["c"], true))
            .unwrap());
        assert_eq!(entry_ids(m), ["a", "b", "d"]);
        assert_eq!(m.entries["b"].revision, 2);
        assert_eq!(
            m.due_entries(T0 + 1),
            ["b", "d"],
            "a keeps its SVID, b is re-issued, d is new"
        );
        assert_eq!(held_ids(m), ["a", "b"]);

        // An empty resumed snapshot keeps everything.
        assert!(m.apply(resumed(Vec::new(), &[], true)).unwrap());
        assert_eq!(entry_ids(m), ["a", "b", "d"]);
    }

    #[test]
    fn a_full_snapshot_after_a_resume_still_replaces_the_set() {
        let mut f = synced(&[("a", 1), ("b", 1)]);
        f.manager
            .apply(snapshot(vec![wire_entry("z", 1)], true))
            .unwrap();
        assert_eq!(entry_ids(&f.manager), ["z"]);
    }
}

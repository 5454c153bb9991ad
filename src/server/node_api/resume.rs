//! The first answer on a Sync stream: a full snapshot, or a resumed one
//! for an agent that said what it holds (`crate::node::resume`), which
//! carries only the entries that changed, the IDs to drop, and the
//! bundles only if they moved: an agent failing over to this server after
//! another went down downloads nothing it already has.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::federated::FederatedWire;
use crate::node::resume::entry_changes;
use crate::node::wire::entry_to_wire;
use crate::proto::node;
use crate::registration::RegistrationEntry;

/// The snapshot for an agent that holds what `request` says, before it
/// is split: resumed when the agent's entries are known, and without the
/// bundle or federated set it already holds.
pub(super) fn snapshot(
    entries: &BTreeMap<String, RegistrationEntry>,
    bundle: node::Bundle,
    federated: Arc<FederatedWire>,
    request: &node::SyncRequest,
) -> (node::SyncUpdate, Option<Arc<FederatedWire>>) {
    let mut update = node::SyncUpdate {
        snapshot: true,
        complete: true,
        ..Default::default()
    };
    // As the wire carries it (`entry_to_wire`).
    let revision = |e: &RegistrationEntry| i64::try_from(e.revision).unwrap_or(i64::MAX);
    match entry_changes(request, entries, revision) {
        Some(changes) => {
            update.resumed = true;
            update.upserted = changes.upserted.into_iter().map(entry_to_wire).collect();
            update.removed = changes.removed;
        }
        None => update.upserted = entries.values().map(entry_to_wire).collect(),
    }
    let held = |seq: u64| request.resume && request.held_bundle_sequence == seq;
    if !held(bundle.sequence) {
        update.bundle = Some(bundle);
    }
    let federated_held = request.resume && request.held_federated_digest == federated.digest();
    (update, (!federated_held).then_some(federated))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entry, id, ids, next, server, AGENT};
    use crate::node::resume::resume_request;
    use crate::proto::node;

    /// What an agent holding `(id, revision)` pairs, the bundle at
    /// `sequence` and the federated set `digest` asks for.
    fn request(held: &[(&str, i64)], sequence: u64, digest: Option<&[u8]>) -> node::SyncRequest {
        resume_request(sequence, held.iter().map(|(i, r)| (*i, *r)), digest)
    }

    #[tokio::test]
    async fn a_resumed_snapshot_holds_only_the_changes() {
        let s = server();
        let store = &s.state.store;
        for n in 1..=3 {
            store.create_entry(entry(n, AGENT)).unwrap();
        }
        // What the agent would hold after a full snapshot.
        let mut rx = s
            .api
            .open_sync(id(AGENT), Default::default())
            .await
            .unwrap();
        let full = next(&mut rx).await;
        assert!(!full.resumed);
        assert!(
            !full.federated_digest.is_empty(),
            "the set's digest comes with it"
        );
        let held: Vec<(String, i64)> = full
            .upserted
            .iter()
            .map(|e| (e.id.clone(), e.revision))
            .collect();
        let held: Vec<(&str, i64)> = held.iter().map(|(i, r)| (i.as_str(), *r)).collect();
        let sequence = full.bundle.as_ref().unwrap().sequence;
        let digest = full.federated_digest.clone();

        // Nothing changed: one empty message, no bundle, no federated set.
        let mut rx = s
            .api
            .open_sync(id(AGENT), request(&held, sequence, Some(&digest)))
            .await
            .unwrap();
        let same = next(&mut rx).await;
        assert!(same.snapshot && same.complete && same.resumed);
        assert!(same.upserted.is_empty() && same.removed.is_empty());
        assert!(same.bundle.is_none());
        assert!(!same.federated_bundles_changed);

        // Meanwhile: entry 2 changed, 3 deleted, 4 created.
        let mut two = store.get_entry("entry-00002").unwrap().unwrap();
        two.hint = "changed".into();
        store.update_entry(two).unwrap();
        store.delete_entries(&["entry-00003".to_string()]).unwrap();
        store.create_entry(entry(4, AGENT)).unwrap();
        let mut rx = s
            .api
            .open_sync(id(AGENT), request(&held, sequence - 1, None))
            .await
            .unwrap();
        let changes = next(&mut rx).await;
        assert!(changes.resumed && changes.complete);
        assert_eq!(ids(&changes), ["entry-00002", "entry-00004"]);
        assert_eq!(changes.removed, ["entry-00003"]);
        assert!(
            changes.bundle.is_some(),
            "an older sequence gets the bundle"
        );
        assert!(changes.federated_bundles_changed, "no digest held: the set");
    }
}

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


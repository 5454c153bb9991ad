//! The Sync stream: the snapshot of an agent's authorized entries and the
//! bundles, in chunks, then one message per change for as long as the agent
//! stays connected. Changes arrive as [`ServerEvent`]s; a burst of them is
//! collapsed into one recomputation and diff.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::{internal, own_bundle_wire, NodeApi};
use crate::node::wire::{bundle_to_wire, entry_to_wire};
use crate::proto::node;
use crate::registration::RegistrationEntry;
use crate::server::state::ServerEvent;
use crate::spiffe::SpiffeId;

/// Entries per snapshot message: keeps every message far below gRPC's 4 MiB.
const SNAPSHOT_CHUNK: usize = 1000;

pub(super) type Tx = mpsc::Sender<Result<node::SyncUpdate, Status>>;

impl NodeApi {
    /// Every federated bundle the server holds (agents hand each workload
    /// only those its entries federate with), ordered by trust domain.
    async fn federated_bundles(&self) -> Result<Vec<node::Bundle>, Status> {
        let own = self.state.trust_domain.clone();
        let mut bundles = self
            .state
            .with_store(move |s| s.list_bundles())
            .await
            .map_err(internal)?;
        bundles.retain(|b| b.trust_domain != own);
        bundles.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
        Ok(bundles.iter().map(bundle_to_wire).collect())
    }

    /// Sends the snapshot, then one update per relevant change, until the
    /// agent goes away or is revoked.
    pub(super) async fn run_sync(
        &self,
        agent: SpiffeId,
        current: BTreeMap<String, RegistrationEntry>,
        mut events: broadcast::Receiver<ServerEvent>,
        tx: &Tx,
    ) -> Result<(), Status> {
        // Counted as connected (for activation gating) while this runs, and
        // its authorized set shared with the signing RPCs.
        let _connection = self.state.agent_connected(&agent);
        let mut current = Arc::new(current);
        self.state.set_authorized(&agent, current.clone());
        let mut federated = self.federated_bundles().await?;
        let mut bundle_seq = {
            let authorities = self.state.authorities();
            send_snapshot(
                tx,
                &current,
                own_bundle_wire(&authorities),
                federated.clone(),
            )
            .await?;
            authorities.bundle().sequence
        };
        tracing::debug!(entries = current.len(), "sync snapshot sent");
        loop {
            let mut stop = self.shutdown.clone();
            let first = tokio::select! {
                ev = events.recv() => ev,
                _ = tx.closed() => return Ok(()),
                _ = crate::shutdown::stopped(&mut stop) => {
                    return Err(Status::unavailable("the server is shutting down; reconnect"));
                }
            };
            // Collapse a burst of events into one recomputation.
            let mut batch = vec![first];
            while let Ok(ev) = events.try_recv() {
                batch.push(Ok(ev));
            }
            let mut entries_dirty = false;
            let mut bundle_dirty = false;
            for ev in batch {
                match ev {
                    Ok(ServerEvent::EntriesChanged) => entries_dirty = true,
                    Ok(ServerEvent::BundleChanged) => bundle_dirty = true,
                    Ok(ServerEvent::AgentRevoked(id)) if id == agent => {
                        return Err(Status::permission_denied(format!(
                            "agent {agent} was evicted or banned"
                        )));
                    }
                    Ok(ServerEvent::AgentRevoked(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        entries_dirty = true;
                        bundle_dirty = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
            let mut update = node::SyncUpdate::default();
            if entries_dirty {
                let next = self.authorized(&agent).await?;
                for (id, e) in &next {
                    if current.get(id).is_none_or(|old| old.revision != e.revision) {
                        update.upserted.push(entry_to_wire(e));
                    }
                }
                update.removed = current
                    .keys()
                    .filter(|id| !next.contains_key(*id))
                    .cloned()
                    .collect();
                current = Arc::new(next);
                self.state.set_authorized(&agent, current.clone());
            }
            if bundle_dirty {
                let authorities = self.state.authorities();
                if authorities.bundle().sequence != bundle_seq {
                    bundle_seq = authorities.bundle().sequence;
                    update.bundle = Some(own_bundle_wire(&authorities));
                }
                let next = self.federated_bundles().await?;
                if next != federated {
                    update.federated_bundles = next.clone();
                    update.federated_bundles_changed = true;
                    federated = next;
                }
            }
            if update.upserted.is_empty()
                && update.removed.is_empty()
                && update.bundle.is_none()
                && !update.federated_bundles_changed
            {
                continue;
            }
            // Large changes go out in several messages, like the snapshot.
            for chunk in split_update(update) {
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

async fn send_snapshot(
    tx: &Tx,
    entries: &BTreeMap<String, RegistrationEntry>,
    bundle: node::Bundle,
    federated: Vec<node::Bundle>,
) -> Result<(), Status> {
    let all: Vec<&RegistrationEntry> = entries.values().collect();
    let chunks: Vec<&[&RegistrationEntry]> = if all.is_empty() {
        vec![&[]]
    } else {
        all.chunks(SNAPSHOT_CHUNK).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let msg = node::SyncUpdate {
            snapshot: true,
            complete: i == last,
            upserted: chunk.iter().map(|e| entry_to_wire(e)).collect(),
            bundle: (i == 0).then(|| bundle.clone()),
            federated_bundles: if i == 0 {
                federated.clone()
            } else {
                Vec::new()
            },
            federated_bundles_changed: i == 0,
            ..Default::default()
        };
        if tx.send(Ok(msg)).await.is_err() {
            return Err(Status::cancelled("agent went away"));
        }
    }
    Ok(())
}

pub(super) fn split_update(mut update: node::SyncUpdate) -> Vec<node::SyncUpdate> {
    if update.upserted.len() <= SNAPSHOT_CHUNK {
        return vec![update];
    }
    let mut out = Vec::new();
    let rest = std::mem::take(&mut update.upserted);
    let mut chunks = rest.chunks(SNAPSHOT_CHUNK).map(|c| c.to_vec());
    update.upserted = chunks.next().unwrap_or_default();
    out.push(update);
    for c in chunks {
        out.push(node::SyncUpdate {
            upserted: c,
            ..Default::default()
        });
    }
    out
}

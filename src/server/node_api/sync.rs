//! The Sync stream: the snapshot of an agent's authorized entries and the
//! bundles, in chunks, then one message per change for as long as the agent
//! stays connected. Changes arrive as [`ServerEvent`]s; a burst of them is
//! collapsed into one recomputation and diff. An entry's expiry is a change
//! too: the stream wakes at the earliest expiry among the entries it sent.
//!
//! Every message stays far below the node API's message limit
//! ([`crate::proto::NODE_MAX_MESSAGE_SIZE`]): entries, removed IDs and
//! federated bundles are each split by a byte budget, so many or large
//! foreign bundles spread over several messages instead of growing one.
//!
//! An agent connecting again may say what it holds: its snapshot is then
//! resumed (`resume.rs`), with only what changed.
//!
//! Federated bundles come from the server-wide [`FederatedWire`], decoded
//! and encoded once and shared by every stream; a queued message refers to
//! it, and [`super::sync_route`] sends its bytes as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::federated::FederatedWire;
use super::resume::snapshot;
use super::{internal, own_bundle_wire, NodeApi};
use crate::clock::now_unix;
use crate::node::wire::entry_to_wire;
use crate::proto::{node, NODE_MAX_MESSAGE_SIZE};
use crate::registration::RegistrationEntry;
use crate::server::authorized::{sent_form, SentEntries};
use crate::server::state::ServerEvent;
use crate::spiffe::SpiffeId;

/// Most entries in one message, whatever their size.
const SNAPSHOT_CHUNK: usize = 1000;

/// Bytes of entries, of removed IDs, and of federated bundles in one
/// message (each): with the own bundle, a message stays below half the limit.
const CHUNK_BYTES: usize = NODE_MAX_MESSAGE_SIZE / 8;

/// The largest federated bundle Sync carries. One bundle cannot be split;
/// a larger one (only an administrator can store one) is left out and
/// logged, rather than failing every agent's stream.
pub(super) const MAX_BUNDLE_BYTES: usize = NODE_MAX_MESSAGE_SIZE / 2;

pub(super) type Tx = mpsc::Sender<Result<SyncPart, Status>>;

/// One message of a Sync stream as it waits to be sent: the federated
/// bundles it carries stay in the shared [`FederatedWire`], already
/// encoded, and go out as those very bytes ([`super::sync_route`]). So a
/// queue of messages to an agent holds a reference, not a copy.
#[derive(Debug)]
pub(super) struct SyncPart {
    update: node::SyncUpdate,
    /// The set, and which of its groups goes in this message.
    federated: Option<(Arc<FederatedWire>, usize)>,
}

impl SyncPart {
    /// The message, its federated bundles decoded: for tonic's own
    /// encoding (and tests).
    pub(super) fn into_update(self) -> node::SyncUpdate {
        let mut update = self.update;
        if let Some((set, group)) = self.federated {
            update.federated_bundles = set.group(group);
        }
        update
    }

    /// The message as the agent's own part, still to be encoded, and the
    /// shared encoding of its `federated_bundles` field to append: a
    /// protobuf message is the concatenation of its fields, in any order.
    pub(super) fn into_parts(self) -> (node::SyncUpdate, Option<prost::bytes::Bytes>) {
        let shared = self.federated.map(|(set, group)| set.encoded_group(group));
        (self.update, shared)
    }
}

impl NodeApi {
    /// Sends the snapshot, then one update per relevant change, until the
    /// agent goes away or is revoked.
    pub(super) async fn run_sync(
        &self,
        agent: SpiffeId,
        current: BTreeMap<String, RegistrationEntry>,
        mut events: broadcast::Receiver<ServerEvent>,
        tx: &Tx,
        request: node::SyncRequest,
    ) -> Result<(), Status> {
        // Counted as connected (for activation gating) while this runs, and
        // its authorized set shared with the signing RPCs.
        let _connection = self.state.agent_connected(&agent);
        let mut federated = self.state.federated_wire().await.map_err(internal)?;
        let mut bundle_seq = {
            let authorities = self.state.authorities();
            send_snapshot(
                tx,
                &current,
                own_bundle_wire(&authorities),
                federated.clone(),
                &request,
            )
            .await?;
            authorities.bundle().sequence
        };
        tracing::debug!(entries = current.len(), "sync snapshot sent");
        // Only what the next diff needs is kept while the agent stays.
        let mut current = Arc::new(sent_form(&current));
        self.state.set_authorized(&agent, current.clone());
        loop {
            let mut stop = self.shutdown.clone();
            // An alias entry's expiry changes what the agent may have too.
            let now = now_unix();
            let aliases = self.state.node_aliases().await.map_err(internal)?;
            let expiry = until_next_expiry(&current, aliases.next_expiry(now), now);
            // Entries under a node alias reach agents by their selectors,
            // which `EntryChanges::touches` cannot see: with aliases, every
            // write wakes this stream.
            let has_aliases = !aliases.is_empty();
            drop(aliases);
            let first = tokio::select! {
                ev = events.recv() => ev,
                // An entry expired: recompute as if it had changed.
                () = sleep_for(expiry) => Ok(ServerEvent::EntriesChanged),
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
                    Ok(ServerEvent::EntriesWritten(changes)) => {
                        entries_dirty =
                            entries_dirty || has_aliases || changes.touches(&agent, &current);
                    }
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
            let mut federated_changed = None;
            if entries_dirty {
                let next = self.authorized(&agent).await?;
                for (id, e) in &next {
                    if current
                        .get(id.as_str())
                        .is_none_or(|old| old.revision != e.revision)
                    {
                        update.upserted.push(entry_to_wire(e));
                    }
                }
                update.removed = current
                    .keys()
                    .filter(|id| !next.contains_key(&***id))
                    .map(|id| id.to_string())
                    .collect();
                current = Arc::new(sent_form(&next));
                self.state.set_authorized(&agent, current.clone());
            }
            if bundle_dirty {
                let authorities = self.state.authorities();
                if authorities.bundle().sequence != bundle_seq {
                    bundle_seq = authorities.bundle().sequence;
                    update.bundle = Some(own_bundle_wire(&authorities));
                }
                let next = self.state.federated_wire().await.map_err(internal)?;
                if !next.same_as(&federated) {
                    federated_changed = Some(next.clone());
                }
                federated = next;
            }
            if update.upserted.is_empty()
                && update.removed.is_empty()
                && update.bundle.is_none()
                && federated_changed.is_none()
            {
                continue;
            }
            // Large changes go out in several messages, like the snapshot.
            for chunk in split_update(update, federated_changed) {
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// How long until the first of `entries` expires, or `also` comes
/// (`None`: neither).
fn until_next_expiry(entries: &SentEntries, also: Option<i64>, now: i64) -> Option<Duration> {
    entries
        .values()
        .filter_map(|e| e.expires_at.filter(|t| *t != 0))
        .chain(also)
        .min()
        .map(|t| Duration::from_secs(u64::try_from(t - now).unwrap_or(0)))
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Sends the snapshot: everything, or, when the agent said what it holds
/// (`request`), only what differs from that.
async fn send_snapshot(
    tx: &Tx,
    entries: &BTreeMap<String, RegistrationEntry>,
    bundle: node::Bundle,
    federated: Arc<FederatedWire>,
    request: &node::SyncRequest,
) -> Result<(), Status> {
    let (whole, federated) = snapshot(entries, bundle, federated, request);
    tracing::debug!(
        entries = entries.len(),
        resumed = whole.resumed,
        upserted = whole.upserted.len(),
        removed = whole.removed.len(),
        bundle = whole.bundle.is_some(),
        federated = federated.is_some(),
        "sync snapshot sent"
    );
    for msg in split_update(whole, federated) {
        if tx.send(Ok(msg)).await.is_err() {
            return Err(Status::cancelled("agent went away"));
        }
    }
    Ok(())
}

/// Splits one update (a change, or a whole snapshot) and, when the
/// federated set changed, that set into messages that each stay within
/// the budgets above. The first message keeps the own bundle; a
/// snapshot's messages all say `snapshot` (and `resumed`, if it is) and
/// the last one `complete`; the message that ends a federated set carries
/// its digest; a
/// federated set split over several messages marks all but its last with
/// `federated_bundles_more`.
pub(super) fn split_update(
    mut update: node::SyncUpdate,
    federated: Option<Arc<FederatedWire>>,
) -> Vec<SyncPart> {
    let entries = chunk(std::mem::take(&mut update.upserted), SNAPSHOT_CHUNK, |e| {
        e.encoded_len()
    });
    let removed = chunk(std::mem::take(&mut update.removed), usize::MAX, |id| {
        id.len()
    });
    let bundle_groups = federated.as_ref().map_or(0, |f| f.groups());
    let count = entries.len().max(removed.len()).max(bundle_groups).max(1);
    // The message that ends the federated set carries its digest.
    let digest_at = bundle_groups.saturating_sub(1);
    let (mut entries, mut removed) = (entries.into_iter(), removed.into_iter());
    (0..count)
        .map(|i| SyncPart {
            update: node::SyncUpdate {
                snapshot: update.snapshot,
                complete: update.snapshot && update.complete && i == count - 1,
                upserted: entries.next().unwrap_or_default(),
                removed: removed.next().unwrap_or_default(),
                bundle: if i == 0 { update.bundle.take() } else { None },
                federated_bundles: Vec::new(),
                // A cleared set is one message with no bundles.
                federated_bundles_changed: federated.is_some() && (i == 0 || i < bundle_groups),
                federated_bundles_more: i + 1 < bundle_groups,
                resumed: update.resumed,
                federated_digest: federated
                    .as_ref()
                    .filter(|_| i == digest_at)
                    .map(|f| f.digest().to_vec())
                    .unwrap_or_default(),
            },
            federated: federated
                .as_ref()
                .filter(|_| i < bundle_groups)
                .map(|f| (f.clone(), i)),
        })
        .collect()
}

/// `items` in order, in groups of at most `max_items` and (unless one item
/// alone is larger) [`CHUNK_BYTES`] by `size`; none when `items` is empty.
pub(super) fn chunk<T>(items: Vec<T>, max_items: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    // Field tag and length prefix of each item on the wire.
    const PER_ITEM: usize = 6;
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item) + PER_ITEM;
        if !current.is_empty() && (current.len() == max_items || bytes + n > CHUNK_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;

    use super::{split_update, FederatedWire, SyncPart, CHUNK_BYTES};
    use crate::proto::{node, NODE_MAX_MESSAGE_SIZE};

    fn bundle(n: usize, bytes: usize) -> node::Bundle {
        node::Bundle {
            trust_domain: format!("td{n:03}.org"),
            x509_authorities: vec![vec![n as u8; bytes]],
            ..Default::default()
        }
    }

    fn split(
        update: node::SyncUpdate,
        federated: Option<Vec<node::Bundle>>,
    ) -> Vec<node::SyncUpdate> {
        let set = federated.map(|f| Arc::new(FederatedWire::new(f)));
        split_update(update, set)
            .into_iter()
            .map(SyncPart::into_update)
            .collect()
    }

    /// 200 foreign bundles of 256 KiB (50 MiB, three times the limit)
    /// arrive over several messages, each below the limit, in order.
    #[test]
    fn many_large_federated_bundles_are_split_below_the_limit() {
        let federated: Vec<_> = (0..200).map(|n| bundle(n, 256 * 1024)).collect();
        let snapshot = node::SyncUpdate {
            snapshot: true,
            complete: true,
            upserted: Vec::new(),
            bundle: Some(bundle(999, 1024)),
            ..Default::default()
        };
        let total: usize = federated.iter().map(|b| b.encoded_len()).sum();
        assert!(total > 3 * NODE_MAX_MESSAGE_SIZE);
        let parts = split(snapshot, Some(federated.clone()));
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(
                p.encoded_len() <= NODE_MAX_MESSAGE_SIZE / 2,
                "{}",
                p.encoded_len()
            );
            assert!(p.snapshot && p.federated_bundles_changed);
        }
        let more: Vec<_> = parts.iter().map(|p| p.federated_bundles_more).collect();
        assert!(more[..more.len() - 1].iter().all(|m| *m) && !more[more.len() - 1]);
        let complete: Vec<_> = parts.iter().map(|p| p.complete).collect();
        assert_eq!(complete.iter().filter(|c| **c).count(), 1);
        assert!(complete[complete.len() - 1]);
        assert!(parts[0].bundle.is_some() && parts[1..].iter().all(|p| p.bundle.is_none()));
        let joined: Vec<_> = parts
            .into_iter()
            .flat_map(|p| p.federated_bundles)
            .collect();
        assert_eq!(joined, federated);
    }

    /// A change of the federated set alone is split the same way; one
    /// bundle over the byte budget travels alone; an emptied set is one
    /// message saying so; no set, no federated fields.
    #[test]
    fn a_federated_change_splits_and_an_emptied_set_is_one_message() {
        let federated = vec![bundle(1, 10), bundle(2, CHUNK_BYTES + 1), bundle(3, 10)];
        let parts = split(node::SyncUpdate::default(), Some(federated));
        let sizes: Vec<_> = parts.iter().map(|p| p.federated_bundles.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(parts.iter().all(|p| !p.snapshot && !p.complete));
        // Only the message that ends the set carries its digest.
        let digests: Vec<_> = parts.iter().map(|p| p.federated_digest.len()).collect();
        assert_eq!(digests, [0, 0, 32]);
        let cleared = node::SyncUpdate {
            federated_bundles_changed: true,
            federated_digest: FederatedWire::default().digest().to_vec(),
            ..Default::default()
        };
        assert_eq!(
            split(node::SyncUpdate::default(), Some(Vec::new())),
            [cleared]
        );
        assert_eq!(
            split(node::SyncUpdate::default(), None),
            [node::SyncUpdate::default()]
        );
    }
}

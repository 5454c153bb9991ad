//! Several servers of one trust domain on one shared store (PostgreSQL).
//!
//! - **Changes.** The store's change feed (`store/postgres/feed.rs`)
//!   reports every change made through any server; [`follow`] turns each
//!   into this server's [`ServerEvent`]s, so that agents connected here
//!   hear of an entry created, an agent banned, a bundle or federation
//!   relationship changed, or an authority rotated through another server,
//!   just as if it had been made here.
//! - **Presence.** Which agents this server serves and the bundle each
//!   acknowledged go to the store (`presence.rs`), so that every server's
//!   rotation waits for every agent, whichever server it is connected to
//!   ([`lagging_agents`]).
//!
//! With sled (one server) none of this runs.

mod presence;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

pub use self::presence::PresenceLog;
use super::federation::RefresherHandle;
use super::state::{ServerEvent, ServerState};
use crate::errors::Chain;
use crate::spiffe::SpiffeId;
use crate::store::Change;

/// A server whose heartbeat is older than this is presumed gone: its
/// agents are no longer waited for (they reconnect to a live server).
pub const ALIVE_SECS: u32 = 15;

/// Starts following the shared store, if the store is shared.
pub fn spawn(
    state: &Arc<ServerState>,
    refresher: RefresherHandle,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let Some(cluster) = state.store.cluster() else {
        return Vec::new();
    };
    let feed = cluster.watch_changes();
    state.set_feed_health(feed.health);
    vec![
        tokio::spawn(
            follow(state.clone(), feed.changes, refresher, stop.clone())
                .instrument(tracing::info_span!("change_feed")),
        ),
        tokio::spawn(
            presence::run(state.clone(), stop.clone()).instrument(tracing::info_span!("presence")),
        ),
    ]
}

/// What one burst of changes asks this server to do.
#[derive(Debug, Default)]
struct Todo {
    entries: bool,
    bundles: bool,
    own_authorities: bool,
    federation: bool,
    check_agents: bool,
    revoked: Vec<SpiffeId>,
}

impl Todo {
    fn add(&mut self, state: &ServerState, change: Change) {
        state.metrics.cluster_change(change.kind());
        match change {
            Change::Resync => {
                self.entries = true;
                self.bundles = true;
                self.own_authorities = true;
                self.federation = true;
                self.check_agents = true;
            }
            Change::Entries => self.entries = true,
            Change::AgentRevoked(id) => match SpiffeId::parse(&id) {
                Ok(id) => self.revoked.push(id),
                Err(e) => {
                    tracing::warn!(agent_id = %id, error = %e, "revoked agent with an unparsable SPIFFE ID in the change feed")
                }
            },
            Change::Bundle(td) if td == state.trust_domain.name() => self.own_authorities = true,
            Change::Bundle(_) => self.bundles = true,
            Change::Federation(_) => self.federation = true,
            Change::Authority(_) => self.own_authorities = true,
        }
    }
}

/// Turns changes into local events until `stop`; a burst is collapsed into
/// one recomputation per kind.
async fn follow(
    state: Arc<ServerState>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    refresher: RefresherHandle,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            c = changes.recv() => c,
            _ = crate::shutdown::stopped(&mut stop) => return,
        };
        let Some(first) = first else { return };
        let mut todo = Todo::default();
        todo.add(&state, first);
        while let Ok(c) = changes.try_recv() {
            todo.add(&state, c);
        }
        if todo.own_authorities {
            refresh_authorities(&state).await;
        }
        if todo.federation {
            refresher.relationships_changed();
            todo.bundles = true;
        }
        if todo.bundles {
            state.publish(ServerEvent::BundleChanged);
        }
        if todo.entries {
            state.publish(ServerEvent::EntriesChanged);
        }
        if todo.check_agents {
            todo.revoked.extend(revoked_while_away(&state).await);
        }
        for id in todo.revoked {
            state.publish(ServerEvent::AgentRevoked(id));
        }
    }
}

/// Installs the bundle and other servers' authorities as the store has
/// them (a failure is logged; the next change or resync tries again).
async fn refresh_authorities(state: &Arc<ServerState>) {
    let current = state.authorities();
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || current.refreshed(store.as_ref())).await;
    match read {
        Ok(Ok(Some(next))) => {
            tracing::debug!(
                sequence = next.bundle().sequence,
                "trust bundle changed through another server"
            );
            state.adopt_shared(&next);
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %Chain(&e), "cannot read the shared trust bundle"),
        Err(e) => tracing::warn!(error = %Chain(&e), "the bundle refresh task failed"),
    }
}

/// Connected agents whose record is gone or banned: after the feed was
/// interrupted, their revocation may be among the events missed.
async fn revoked_while_away(state: &Arc<ServerState>) -> Vec<SpiffeId> {
    let ids: Vec<SpiffeId> = state
        .connected_acks()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return ids;
    }
    let checked = state
        .with_store(move |s| {
            let mut out = Vec::new();
            for id in ids {
                if s.get_agent(&id)?.is_none_or(|a| a.banned) {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await;
    checked.unwrap_or_else(|e| {
        tracing::warn!(error = %Chain(&e), "cannot check connected agents after a resync");
        Vec::new()
    })
}

/// Connected agents, here or on any live server of the trust domain, that
/// have not acknowledged `sequence`. An agent connected to several servers
/// counts with the highest sequence it acknowledged anywhere. If the store
/// cannot be read, the other servers' agents are unknown, and that is
/// named as a lagging party so that nothing is activated on a guess.
pub async fn lagging_agents(state: &Arc<ServerState>, sequence: u64) -> Vec<String> {
    if state.store.cluster().is_none() {
        return state.lagging_agents(sequence);
    }
    let server_id = state.authorities().settings().server_id.clone();
    let elsewhere = state
        .with_store(move |s| match s.cluster() {
            Some(c) => c.acked_elsewhere(&server_id, ALIVE_SECS),
            None => Ok(Vec::new()),
        })
        .await;
    let mut acked: std::collections::BTreeMap<String, u64> = state
        .connected_acks()
        .into_iter()
        .map(|(id, seq)| (id.to_string(), seq))
        .collect();
    match elsewhere {
        Ok(rows) => {
            for (id, seq) in rows {
                let a = acked.entry(id).or_insert(0);
                *a = (*a).max(seq);
            }
        }
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "cannot read which agents other servers serve");
            let mut lagging = state.lagging_agents(sequence);
            lagging.push("(agents of other servers: the store is unreachable)".into());
            return lagging;
        }
    }
    acked
        .into_iter()
        .filter(|(_, seq)| *seq < sequence)
        .map(|(id, _)| id)
        .collect()
}

//! Records in the shared store which agents this server serves and the
//! bundle sequence each acknowledged, with a heartbeat: a burst of
//! connections and acknowledgements is written in one transaction at most
//! every [`SETTLE`], and whatever could not be written (the database is
//! away) is kept and written once it is back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::errors::Chain;
use crate::server::state::ServerState;
use crate::spiffe::SpiffeId;
use crate::store::Presence;

/// Heartbeat interval (well within [`super::ALIVE_SECS`]).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long shutdown waits to clear this server's agents.
const SHUTDOWN_WRITE: Duration = Duration::from_secs(2);
/// How long a change waits for others to join its write.
const SETTLE: Duration = Duration::from_millis(50);

/// Agents whose connection or acknowledgement changed since the last write.
#[derive(Debug, Default)]
pub struct PresenceLog {
    dirty: Mutex<HashSet<SpiffeId>>,
    changed: Notify,
}

impl PresenceLog {
    /// Notes that `agent` connected, acknowledged or went away.
    pub fn mark(&self, agent: &SpiffeId) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.clone());
        self.changed.notify_one();
    }

    fn take(&self) -> HashSet<SpiffeId> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Writes presence until `stop`, then forgets this server's agents.
pub(super) async fn run(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let server_id = state.authorities().settings().server_id.clone();
    // A previous run's rows are stale: the first write replaces them.
    let mut reset = true;
    let mut pending: HashMap<String, Option<u64>> = HashMap::new();
    let mut failing = false;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {}
            () = state.presence.changed.notified() => tokio::time::sleep(SETTLE).await,
            _ = crate::shutdown::stopped(&mut stop) => break,
        }
        for agent in state.presence.take() {
            let acked = state.connected_acked(&agent);
            pending.insert(agent.to_string(), acked);
        }
        let batch: Vec<Presence> = pending.iter().map(|(a, s)| (a.clone(), *s)).collect();
        match write(&state, &server_id, batch, reset).await {
            Ok(()) => {
                if failing {
                    tracing::info!("agent presence recorded again in the shared store");
                }
                pending.clear();
                reset = false;
                failing = false;
            }
            Err(why) => {
                if !failing {
                    tracing::warn!(error = %why, "cannot record agent presence in the shared store; retrying");
                }
                failing = true;
            }
        }
    }
    // Our agents leave with us (they reconnect elsewhere). Bounded: with
    // the database away, shutdown does not wait for it (the heartbeat
    // going stale says the same a little later).
    let cleared =
        tokio::time::timeout(SHUTDOWN_WRITE, write(&state, &server_id, Vec::new(), true)).await;
    if !matches!(cleared, Ok(Ok(()))) {
        tracing::debug!("cannot clear agent presence at shutdown");
    }
}

async fn write(
    state: &ServerState,
    server_id: &str,
    batch: Vec<Presence>,
    reset: bool,
) -> Result<(), String> {
    let id = server_id.to_owned();
    state
        .with_store(move |s| match s.cluster() {
            Some(c) => c.record_presence(&id, &batch, reset),
            None => Ok(()),
        })
        .await
        .map_err(|e| Chain(&e).to_string())
}

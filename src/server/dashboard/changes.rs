//! What tells open dashboard pages to fetch again: the server's own
//! events (entries, bundle and authorities, evictions) as they are
//! published, and, once a second while a page is open, a look at what
//! changes without an event: agents connecting, acknowledging a bundle or
//! attesting, and federation refreshes. Either way a page hears of a
//! change within about a second.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::ops::dashboard::Topic;
use crate::server::federation::RefresherHandle;
use crate::server::state::{ServerEvent, ServerState};
use crate::store::{PageRequest, StoreError, MAX_PAGE_SIZE};

/// How often the state without events is looked at while a page is open.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Tells `out` of changes (`events` are the server's) until `stop` turns
/// true.
pub(super) async fn run(
    mut events: broadcast::Receiver<ServerEvent>,
    state: Arc<ServerState>,
    refresher: RefresherHandle,
    out: broadcast::Sender<Topic>,
    mut stop: watch::Receiver<bool>,
) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<Looked> = None;
    loop {
        tokio::select! {
            () = crate::shutdown::stopped(&mut stop) => return,
            event = events.recv() => {
                let topic = match event {
                    Ok(ServerEvent::EntriesChanged | ServerEvent::EntriesWritten(_)) => Topic::Entries,
                    Ok(ServerEvent::BundleChanged) => Topic::Bundle,
                    Ok(ServerEvent::AgentRevoked(_)) => Topic::Agents,
                    Err(broadcast::error::RecvError::Lagged(_)) => Topic::All,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // No page open is fine.
                let _ = out.send(topic);
            }
            _ = look.tick() => {
                if out.receiver_count() == 0 {
                    // Nobody watches: the next look starts afresh.
                    last = None;
                    continue;
                }
                let now = match look_at(&state, &refresher).await {
                    Ok(now) => now,
                    Err(e) => {
                        tracing::debug!(error = %e, "dashboard: cannot list agents");
                        continue;
                    }
                };
                if let Some(before) = &last {
                    for topic in before.changed(&now) {
                        let _ = out.send(topic);
                    }
                }
                last = Some(now);
            }
        }
    }
}

/// Digests of what changes without an event.
#[derive(Debug, PartialEq, Eq)]
struct Looked {
    agents: u64,
    federation: u64,
}

impl Looked {
    fn changed(&self, now: &Looked) -> Vec<Topic> {
        let mut out = Vec::new();
        if self.agents != now.agents {
            out.push(Topic::Agents);
        }
        if self.federation != now.federation {
            out.push(Topic::Federation);
        }
        out
    }
}

/// The attested agents (records, connections, acknowledgements) and the
/// federation refreshes, each as a digest.
async fn look_at(
    state: &Arc<ServerState>,
    refresher: &RefresherHandle,
) -> Result<Looked, StoreError> {
    let records = state
        .with_store(|s| {
            let mut all = Vec::new();
            let mut page = PageRequest {
                size: MAX_PAGE_SIZE,
                token: None,
            };
            loop {
                let listed = s.list_agents(&page)?;
                all.extend(listed.items);
                match listed.next_token {
                    Some(token) => page.token = Some(token),
                    None => return Ok(all),
                }
            }
        })
        .await?;
    let mut agents = DefaultHasher::new();
    for a in &records {
        (a.spiffe_id.to_string(), &a.serial, a.expires_at, a.banned).hash(&mut agents);
        state.connected_acked(&a.spiffe_id).hash(&mut agents);
    }
    let mut federation = DefaultHasher::new();
    for (td, status) in refresher.statuses() {
        (td.to_string(), format!("{status:?}")).hash(&mut federation);
    }
    Ok(Looked {
        agents: agents.finish(),
        federation: federation.finish(),
    })
}

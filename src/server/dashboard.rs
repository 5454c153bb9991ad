//! What the server's web dashboard shows (`ops::dashboard` serves it on
//! the ops listener): each view is made from the admin API's own
//! inventory, taken in-process (`admin_api::inventory`), so the page shows
//! the records `herald entry list`, `herald agent list` and `herald
//! federation list` print and the findings `herald check --socket` prints.
//! What only the running server knows (which agents are connected, what
//! they acknowledged and are authorized for) comes from its state.
//!
//! - [`overview`]: the trust domain at a glance, with the rotation
//!   schedule and the outage budget;
//! - [`views`]: agents, entries (searched and paged), federation, findings;
//! - [`changes`]: what tells open pages to fetch again.
//!
//! Every view passes through the audit log's redaction, so a join token
//! inside an agent ID never reaches a page; no view carries a key, a
//! certificate or a JWT.

mod changes;
mod overview;
mod views;

use std::sync::{Arc, Once};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::admin_api::inventory::inventory;
use super::federation::RefresherHandle;
use super::state::ServerState;
use crate::ops::dashboard::{Source, SourceError, Topic, View};

/// How many changes an open page may fall behind before it is told to
/// fetch everything.
const CHANGES: usize = 64;

/// The server's dashboard source.
pub struct ServerDashboard {
    state: Arc<ServerState>,
    refresher: RefresherHandle,
    changes: broadcast::Sender<Topic>,
    watching: Once,
    stop: watch::Receiver<bool>,
}

impl ServerDashboard {
    /// Shows `state`; the change watcher (started with the first page)
    /// stops when `stop` turns true.
    pub fn new(
        state: Arc<ServerState>,
        refresher: RefresherHandle,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(ServerDashboard {
            state,
            refresher,
            changes: broadcast::channel(CHANGES).0,
            watching: Once::new(),
            stop,
        })
    }

    async fn make(&self, view: View) -> Result<serde_json::Value, SourceError> {
        let now = crate::clock::now_unix();
        let inv = inventory(&self.state, &self.refresher, now)
            .await
            .map_err(|s| SourceError(s.message().to_string()))?;
        let mut value = match view {
            View::Overview => json(overview::overview(&self.state, &inv)),
            View::Agents => json(views::agents(&self.state, &inv)),
            View::Entries(query) => json(views::entries(&self.state, &inv, &query)),
            View::Federation => json(views::federation(&inv)),
            View::Findings => json(views::findings(&inv)),
        }?;
        crate::server::audit::redact_join_tokens(&mut value);
        Ok(value)
    }
}

fn json(view: impl Serialize) -> Result<serde_json::Value, SourceError> {
    serde_json::to_value(view).map_err(|e| SourceError(format!("cannot encode the view: {e}")))
}

impl Source for ServerDashboard {
    fn view(&self, view: View) -> BoxFuture<'_, Result<serde_json::Value, SourceError>> {
        Box::pin(self.make(view))
    }

    fn changes(&self) -> broadcast::Receiver<Topic> {
        let receiver = self.changes.subscribe();
        self.watching.call_once(|| {
            // Subscribed here, not in the task: no event is missed
            // between this call and the task's first poll.
            tokio::spawn(changes::run(
                self.state.subscribe(),
                self.state.clone(),
                self.refresher.clone(),
                self.changes.clone(),
                self.stop.clone(),
            ));
        });
        receiver
    }
}

#[cfg(test)]
mod tests;

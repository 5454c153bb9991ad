//! The manager's connection loop: one session per connection to the
//! server (Sync stream, reconciliation when something is due, bundle
//! acknowledgements), reconnecting while the cache keeps serving what it
//! holds. A session that fails moves on to the next server of
//! `server_address` (the connector tries them all in each round); rounds
//! that fail are spaced by exponential backoff with full jitter, so agents
//! that lost the same server do not all land on the next one at once.

use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;

use super::{Manager, SessionError};
use crate::backoff::Backoff;
use crate::errors::Chain;
use crate::proto::node::{self, node_client::NodeClient as Grpc};

/// A server address for the log ("-" when there is none).
fn shown(server: Option<std::net::SocketAddr>) -> String {
    server.map_or_else(|| "-".into(), |s| s.to_string())
}

/// How a session ended without an error.
enum SessionEnd {
    Shutdown,
    /// The agent SVID was renewed (or the agent re-attested): the next
    /// session presents the new one.
    Reconnect,
}

impl Manager {
    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if !std::mem::take(&mut first) {
                self.metrics.reconnected();
            }
            self.established = false;
            let error = match self.session(&mut shutdown).await {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::Reconnect) => {
                    backoff.reset();
                    continue;
                }
                Err(e) => e,
            };
            // A server that synced us before failing is not a reason to
            // wait long before the next; one that never did is.
            if self.established {
                backoff.reset();
            }
            let delay = backoff.jittered_delay();
            match &error {
                SessionError::Status(s) if s.code() == tonic::Code::PermissionDenied => {
                    tracing::error!(agent = %self.cred.spiffe_id, server = %shown(self.last_server), error = %s.message(), "the server refused this agent");
                    // Evicted: an x509pop agent proves itself again (a
                    // banned one is refused); the backoff still applies.
                    self.reattest_or_log("the server refused the agent SVID")
                        .await;
                }
                e => {
                    tracing::warn!(server = %shown(self.last_server), error = %Chain(e), retry_in = ?delay, "lost the server; serving cached SVIDs");
                }
            }
            self.connector.fail_over();
            self.metrics.set_server(None);
            *self.client.write().unwrap_or_else(|p| p.into_inner()) = None;
            self.set_server_unreachable(true);
            self.prune_expired();
            if self.after_failure(&error).await {
                // New roots: try them at once.
                continue;
            }
            tokio::select! {
                _ = crate::shutdown::stopped(&mut shutdown) => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SessionError> {
        self.reattest_if_needed().await?;
        if self.cred.not_after <= self.clock.now_unix() {
            // Expired while the server was unreachable: no server takes it.
            self.reattest("the agent SVID expired").await?;
        }
        let mut client = self.connector.authenticated(&self.cred).await?;
        if let Some(r) = self.rebootstrap.as_mut() {
            r.trusted();
        }
        self.note_server();
        let request = self.sync_request();
        let mut stream = client.sync(request).await?.into_inner();
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        self.set_server_unreachable(false);
        // A new connection starts unacknowledged on the server's side, and
        // with a snapshot: nothing half-received on a lost one carries over.
        self.acked = 0;
        self.pending_snapshot = None;
        self.pending_federated = None;
        // An x509pop agent looks at its certificate file this often (the
        // first look is at once: it may have been renewed meanwhile).
        let machine_every = self.machine_check_interval();
        let mut machine_check =
            tokio::time::interval(machine_every.unwrap_or(Duration::from_secs(3600)));
        machine_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Held SVIDs wait for the first message: renewing them before
            // the server said which entries are still ours would sign
            // nothing for deleted ones.
            let wake = if self.established {
                self.next_wake()
            } else {
                self.agent_renew_at()
            };
            let sleep =
                Duration::from_secs(u64::try_from(wake - self.clock.now_unix()).unwrap_or(0));
            tokio::select! {
                _ = crate::shutdown::stopped(shutdown) => return Ok(SessionEnd::Shutdown),
                _ = tokio::time::sleep(sleep) => {
                    if self.agent_svid_due() {
                        self.renew_or_reattest(&mut client).await?;
                        return Ok(SessionEnd::Reconnect);
                    }
                    self.reconcile(&mut client).await?;
                }
                _ = machine_check.tick(), if machine_every.is_some() => {
                    // Tried again at the next look if it fails.
                    if self.machine_cert_renewed()
                        && self.reattest_or_log("the machine certificate was renewed").await
                    {
                        return Ok(SessionEnd::Reconnect);
                    }
                }
                msg = stream.message() => match msg? {
                    Some(update) => {
                        self.established = true;
                        let changed = self.apply(update)?;
                        // Counted once the entry set is whole (a snapshot
                        // may span several messages).
                        if self.synced_once && self.pending_snapshot.is_none() {
                            self.metrics.synced(self.clock.now_unix(), self.entries.len());
                        }
                        if changed {
                            self.reconcile(&mut client).await?;
                        }
                    }
                    None => return Err(SessionError::StreamEnded),
                },
            }
            self.ack(&mut client).await?;
        }
    }

    /// Logs the server just connected to, and a failover when it is not
    /// the one of the last session.
    fn note_server(&mut self) {
        let server = self.connector.current();
        if let (Some(prev), Some(now)) = (self.last_server, server) {
            if prev != now {
                tracing::warn!(agent = %self.cred.spiffe_id, server = %now, previous = %prev, "failed over to another server");
                self.metrics.failed_over();
            }
        }
        tracing::info!(agent = %self.cred.spiffe_id, server = %shown(server), "connected to the server");
        self.last_server = server.or(self.last_server);
        self.metrics.set_server(server);
    }

    /// Tells the server which bundle the agent now serves, once it is
    /// published to workloads and tainted SVIDs are re-issued.
    async fn ack(&mut self, client: &mut Grpc<Channel>) -> Result<(), SessionError> {
        if !self.synced_once || self.bundle.sequence <= self.acked {
            return Ok(());
        }
        let sequence = self.bundle.sequence;
        client
            .ack_bundle(node::AckBundleRequest { sequence })
            .await?;
        self.acked = sequence;
        tracing::debug!(sequence, "bundle acknowledged");
        Ok(())
    }
}

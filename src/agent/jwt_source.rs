//! JWT-SVIDs for the Workload API, minted by the server on demand and
//! cached per (entry, audience list) (`tokens`), so a workload that asks on
//! every request does not cost a server round trip each time; and re-minted
//! in the background while they are hot, so that a workload asking at
//! least once per token lifetime never waits on the server for a token it
//! asked for before ([`NodeJwtSource::refresh_hot`]). While the server
//! cannot mint, a cached token is served until it expires; without one the
//! answer is Unavailable at once. Whether a cached token is still served is
//! decided by the injected clock and by the taint epoch the manager bumps.

mod tokens;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{watch, Notify};
use tonic::Status;

use self::tokens::{Key, Lookup, Tokens};
use super::cache::JwtSvidSource;
use super::manager::SharedClient;
use crate::clock::SharedClock;
use crate::proto::node;

/// How long a mint may take: a server that stopped answering without
/// closing the connection must not hold the workload until its deadline.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the refresher looks for due entries while any is hot (the
/// clock counts whole seconds).
const REFRESH_TICK: Duration = Duration::from_secs(1);

/// Background mints in flight at once.
const CONCURRENT_REFRESHES: usize = 8;

/// Where tokens are minted: the server, through the manager's current
/// connection. A seam so the caching can be tested without a server.
#[tonic::async_trait]
trait JwtMinter: Send + Sync + 'static {
    /// Asks the server for a token for `entry_id` and `audience`.
    async fn mint(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<node::NewJwtsvidResponse, Status>;
}

#[tonic::async_trait]
impl JwtMinter for SharedClient {
    async fn mint(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<node::NewJwtsvidResponse, Status> {
        let client = self.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut client = client
            .ok_or_else(|| Status::unavailable("the agent is not connected to its server"))?;
        let call = client.new_jwtsvid(node::NewJwtsvidRequest {
            entry_id: entry_id.to_string(),
            audience: audience.to_vec(),
        });
        let resp = tokio::time::timeout(MINT_TIMEOUT, call)
            .await
            .map_err(|_| Status::unavailable("the server did not answer in time"))?
            .map_err(|s| {
                Status::unavailable(format!("minting a JWT-SVID failed: {}", s.message()))
            })?;
        Ok(resp.into_inner())
    }
}

/// Fetches JWT-SVIDs through the agent's current server connection.
pub struct NodeJwtSource {
    minter: Box<dyn JwtMinter>,
    tokens: Mutex<Tokens>,
    /// Bumped by the manager when a JWT key is tainted: cached tokens from
    /// an older epoch are not served again.
    epoch: Arc<AtomicU64>,
    clock: SharedClock,
    /// Wakes the refresher: a new entry, or a request past its refresh point.
    wake: Notify,
}

impl NodeJwtSource {
    /// A source over the manager's shared client; `clock` decides when a
    /// cached token is due for a refresh.
    pub fn new(client: SharedClient, epoch: Arc<AtomicU64>, clock: SharedClock) -> Self {
        Self::with_minter(Box::new(client), epoch, clock)
    }

    fn with_minter(minter: Box<dyn JwtMinter>, epoch: Arc<AtomicU64>, clock: SharedClock) -> Self {
        NodeJwtSource {
            minter,
            tokens: Mutex::new(Tokens::default()),
            epoch,
            clock,
            wake: Notify::new(),
        }
    }

    fn now_and_epoch(&self) -> (i64, u64) {
        (self.clock.now_unix(), self.epoch.load(Ordering::SeqCst))
    }

    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        // Entries are inserted and replaced whole: a panic elsewhere
        // cannot leave one half-written.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-mints hot entries at their half life until `shutdown`: every
    /// [`REFRESH_TICK`] while any entry is hot, otherwise only once woken
    /// by a request.
    pub async fn refresh_hot(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.refresh_due().await;
            let hot = {
                let now = self.clock.now_unix();
                self.tokens().any_hot(now)
            };
            let tick = async {
                if hot {
                    tokio::time::sleep(REFRESH_TICK).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tick => {}
                _ = self.wake.notified() => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Re-mints every hot entry that is due now; how many were re-minted.
    async fn refresh_due(&self) -> usize {
        let (now, epoch) = self.now_and_epoch();
        let due = {
            let mut tokens = self.tokens();
            tokens.prune(now, epoch);
            tokens.due(now, epoch)
        };
        futures::stream::iter(due)
            .map(|key| self.refresh(key))
            .buffer_unordered(CONCURRENT_REFRESHES)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await
    }

    async fn refresh(&self, key: Key) -> bool {
        match self.minter.mint(&key.0, &key.1).await {
            Ok(resp) => {
                tracing::debug!(entry_id = %key.0, "JWT-SVID re-minted in the background");
                let at = self.now_and_epoch();
                self.tokens()
                    .insert(key, resp.token, resp.expires_at, at, false);
                true
            }
            Err(status) => {
                tracing::debug!(entry_id = %key.0, message = status.message(), "background JWT-SVID refresh failed; retried next tick");
                false
            }
        }
    }
}

#[tonic::async_trait]
impl JwtSvidSource for NodeJwtSource {
    async fn fetch_jwt_svid(&self, entry_id: &str, audience: &[String]) -> Result<String, Status> {
        let key = (entry_id.to_string(), audience.to_vec());
        let (now, epoch) = self.now_and_epoch();
        let fallback = match self.tokens().lookup(&key, now, epoch) {
            Lookup::Serve { token, due } => {
                if due {
                    self.wake.notify_one();
                }
                return Ok(token);
            }
            Lookup::Mint { fallback } => fallback,
        };
        let resp = match self.minter.mint(entry_id, audience).await {
            Ok(resp) => resp,
            Err(status) => {
                let Some(token) = fallback else {
                    return Err(status);
                };
                tracing::debug!(
                    entry_id,
                    message = status.message(),
                    "minting failed; serving the cached JWT-SVID until it expires"
                );
                return Ok(token);
            }
        };
        self.tokens()
            .insert(key, resp.token.clone(), resp.expires_at, (now, epoch), true);
        // A new hot entry: the refresher starts ticking.
        self.wake.notify_one();
        Ok(resp.token)
    }
}

#[cfg(test)]
mod tests;

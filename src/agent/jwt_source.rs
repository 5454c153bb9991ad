//! JWT-SVIDs for the Workload API, minted by the server on demand and
//! cached per (entry, audience) until half their life has passed, so a
//! workload that asks on every request does not cost a server round trip
//! each time. While the server cannot mint, a cached token is served until
//! it expires; without one the answer is Unavailable at once. Whether a
//! cached token is still served is decided by the injected clock and by
//! the taint epoch the manager bumps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Status;

use super::cache::JwtSvidSource;
use super::manager::SharedClient;
use crate::clock::SharedClock;
use crate::proto::node;

/// How long a mint may take: a server that stopped answering without
/// closing the connection must not hold the workload until its deadline.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);

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

struct Cached {
    token: String,
    refresh_at: i64,
    expires_at: i64,
    epoch: u64,
}

/// Fetches JWT-SVIDs through the agent's current server connection.
pub struct NodeJwtSource {
    minter: Box<dyn JwtMinter>,
    cache: Mutex<HashMap<(String, Vec<String>), Cached>>,
    /// Bumped by the manager when a JWT key is tainted: cached tokens from
    /// an older epoch are not served again.
    epoch: Arc<AtomicU64>,
    clock: SharedClock,
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
            cache: Mutex::new(HashMap::new()),
            epoch,
            clock,
        }
    }
}

#[tonic::async_trait]
impl JwtSvidSource for NodeJwtSource {
    async fn fetch_jwt_svid(&self, entry_id: &str, audience: &[String]) -> Result<String, Status> {
        let key = (entry_id.to_string(), audience.to_vec());
        let now = self.clock.now_unix();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let usable = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .filter(|c| c.expires_at > now && c.epoch == epoch)
                .map(|c| (c.token.clone(), c.refresh_at))
        };
        if let Some((token, refresh_at)) = &usable {
            if *refresh_at > now {
                return Ok(token.clone());
            }
        }
        let resp = match self.minter.mint(entry_id, audience).await {
            Ok(resp) => resp,
            Err(status) => {
                let Some((token, _)) = usable else {
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
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.expires_at > now && c.epoch == epoch);
        cache.insert(
            key,
            Cached {
                token: resp.token.clone(),
                refresh_at: now + (resp.expires_at - now) / 2,
                expires_at: resp.expires_at,
                epoch,
            },
        );
        Ok(resp.token)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use super::*;
    use crate::clock::{Clock as _, FakeClock};

    const T0: i64 = 1_800_000_000;

    /// Answers like the server, numbering its tokens, with a 600 s life;
    /// Unavailable while `down` is set.
    struct CountingMinter {
        calls: Arc<AtomicU64>,
        clock: FakeClock,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    #[tonic::async_trait]
    impl JwtMinter for CountingMinter {
        async fn mint(
            &self,
            entry_id: &str,
            audience: &[String],
        ) -> Result<node::NewJwtsvidResponse, Status> {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("down"));
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.now_unix();
            Ok(node::NewJwtsvidResponse {
                token: format!("{entry_id}/{}/{n}", audience.join(",")),
                expires_at: now + 600,
            })
        }
    }

    struct Source {
        src: NodeJwtSource,
        clock: FakeClock,
        calls: Arc<AtomicU64>,
        epoch: Arc<AtomicU64>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    fn source() -> Source {
        let clock = FakeClock::new(T0);
        let calls = Arc::new(AtomicU64::new(0));
        let epoch = Arc::new(AtomicU64::new(0));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let minter = CountingMinter {
            calls: calls.clone(),
            clock: clock.clone(),
            down: down.clone(),
        };
        let src =
            NodeJwtSource::with_minter(Box::new(minter), epoch.clone(), Arc::new(clock.clone()));
        Source {
            src,
            clock,
            calls,
            epoch,
            down,
        }
    }

    fn aud(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    async fn fetch(src: &NodeJwtSource, entry: &str, audience: &str) -> String {
        src.fetch_jwt_svid(entry, &aud(&[audience])).await.unwrap()
    }

    #[tokio::test]
    async fn tokens_are_cached_per_entry_and_audience_until_half_life() {
        let Source {
            src, clock, calls, ..
        } = source();
        let first = fetch(&src, "e1", "a").await;
        assert_eq!(first, "e1/a/0");
        clock.advance(299);
        assert_eq!(fetch(&src, "e1", "a").await, first);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Another audience or another entry is another token.
        assert_eq!(fetch(&src, "e1", "b").await, "e1/b/1");
        assert_eq!(fetch(&src, "e2", "a").await, "e2/a/2");

        // At half of its 600 s life the token is minted again.
        clock.advance(1);
        assert_eq!(fetch(&src, "e1", "a").await, "e1/a/3");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_epoch_bump_drops_cached_tokens() {
        let Source {
            src, calls, epoch, ..
        } = source();
        fetch(&src, "e1", "a").await;
        fetch(&src, "e1", "a").await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        epoch.fetch_add(1, Ordering::SeqCst);
        assert_eq!(fetch(&src, "e1", "a").await, "e1/a/1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn while_the_server_cannot_mint_a_cached_token_serves_until_it_expires() {
        let s = source();
        let first = fetch(&s.src, "e1", "a").await;
        s.down.store(true, Ordering::SeqCst);
        s.clock.advance(300); // due for a refresh, which fails
        assert_eq!(fetch(&s.src, "e1", "a").await, first);
        s.clock.advance(299);
        assert_eq!(fetch(&s.src, "e1", "a").await, first);
        s.clock.advance(1); // expired
        let err = s.src.fetch_jwt_svid("e1", &aud(&["a"])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        // Nothing cached for another audience: Unavailable at once.
        let err = s.src.fetch_jwt_svid("e1", &aud(&["b"])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        s.down.store(false, Ordering::SeqCst);
        assert_eq!(fetch(&s.src, "e1", "a").await, "e1/a/1");
        assert_eq!(s.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn without_a_connection_the_answer_is_unavailable() {
        let client: SharedClient = Arc::new(RwLock::new(None));
        let src = NodeJwtSource::new(
            client,
            Arc::new(AtomicU64::new(0)),
            Arc::new(FakeClock::new(T0)),
        );
        let err = src.fetch_jwt_svid("e1", &aud(&["a"])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("not connected"), "{}", err.message());
    }
}

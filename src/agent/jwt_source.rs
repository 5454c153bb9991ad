//! JWT-SVIDs for the Workload API, minted by the server on demand and
//! cached per (entry, audience) until half their life has passed, so a
//! workload that asks on every request does not cost a server round trip
//! each time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tonic::Status;

use super::cache::JwtSvidSource;
use super::manager::SharedClient;
use crate::clock::now_unix;
use crate::proto::node;

struct Cached {
    token: String,
    refresh_at: i64,
    epoch: u64,
}

/// Fetches JWT-SVIDs through the agent's current server connection.
pub struct NodeJwtSource {
    client: SharedClient,
    cache: Mutex<HashMap<(String, Vec<String>), Cached>>,
    /// Bumped by the manager when a JWT key is tainted: cached tokens from
    /// an older epoch are not served again.
    epoch: Arc<AtomicU64>,
}

impl NodeJwtSource {
    /// A source over the manager's shared client.
    pub fn new(client: SharedClient, epoch: Arc<AtomicU64>) -> Self {
        NodeJwtSource {
            client,
            cache: Mutex::new(HashMap::new()),
            epoch,
        }
    }
}

#[tonic::async_trait]
impl JwtSvidSource for NodeJwtSource {
    async fn fetch_jwt_svid(&self, entry_id: &str, audience: &[String]) -> Result<String, Status> {
        let key = (entry_id.to_string(), audience.to_vec());
        let now = now_unix();
        let epoch = self.epoch.load(Ordering::SeqCst);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache
                .get(&key)
                .filter(|c| c.refresh_at > now && c.epoch == epoch)
            {
                return Ok(c.token.clone());
            }
        }
        let client = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut client = client
            .ok_or_else(|| Status::unavailable("the agent is not connected to its server"))?;
        let resp = client
            .new_jwtsvid(node::NewJwtsvidRequest {
                entry_id: entry_id.to_string(),
                audience: audience.to_vec(),
            })
            .await
            .map_err(|s| {
                Status::unavailable(format!("minting a JWT-SVID failed: {}", s.message()))
            })?
            .into_inner();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.refresh_at > now && c.epoch == epoch);
        cache.insert(
            key,
            Cached {
                token: resp.token.clone(),
                refresh_at: now + (resp.expires_at - now) / 2,
                epoch,
            },
        );
        Ok(resp.token)
    }
}

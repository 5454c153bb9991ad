//! JWT-SVIDs kept fresh in files: each configured audience's token is
//! fetched, written, and fetched again at half its remaining life (at
//! least a second later), so a reader always finds one with time left.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{client, SessionError, Writer};
use crate::backoff::Backoff;
use crate::config::helper::HelperConfig;
use crate::errors::Chain;
use crate::proto::workload;
use crate::uds::{workload_request, StreamError};

/// Fetches and rewrites the token for `audience` forever.
pub(super) async fn follow(
    config: Arc<HelperConfig>,
    writer: Arc<Writer>,
    audience: String,
    file: String,
) {
    let mut backoff = Backoff::new();
    loop {
        let wait = match fetch(&config, &audience).await {
            Ok(token) => match writer.write_jwt(&file, &token) {
                Ok(()) => {
                    backoff.reset();
                    let wait = refresh_in(&token, now());
                    tracing::info!(file = %file, refresh_in = ?wait, "JWT-SVID file updated");
                    wait
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "cannot write the JWT-SVID");
                    backoff.delay()
                }
            },
            Err(e) => {
                let delay = backoff.delay();
                tracing::warn!(error = %Chain(&e), ?delay, "no JWT-SVID; the file stays, retrying");
                delay
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn fetch(config: &HelperConfig, audience: &str) -> Result<String, SessionError> {
    let req = workload_request(workload::JwtsvidRequest {
        audience: vec![audience.to_string()],
        spiffe_id: String::new(),
    });
    let resp = client(config)
        .await?
        .fetch_jwtsvid(req)
        .await
        .map_err(StreamError::Status)?
        .into_inner();
    resp.svids
        .into_iter()
        .next()
        .map(|s| s.svid)
        .ok_or(SessionError::NoSvid)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Half the time the token has left, at least 1 s; 30 s when its `exp`
/// cannot be read (the agent made it, so that would be a bug, not input).
fn refresh_in(token: &str, now: i64) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("exp").and_then(serde_json::Value::as_i64));
    match exp {
        Some(exp) => Duration::from_secs(((exp - now) / 2).max(1).unsigned_abs()),
        None => Duration::from_secs(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_half_the_remaining_life() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1300}"#);
        let token = format!("h.{payload}.s");
        assert_eq!(refresh_in(&token, 1000), Duration::from_secs(150));
        assert_eq!(refresh_in(&token, 1300), Duration::from_secs(1));
        assert_eq!(refresh_in("garbage", 0), Duration::from_secs(30));
    }
}

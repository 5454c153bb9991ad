//! A cluster's JWKS for offline verification, kept in memory and loaded
//! again (file read or HTTPS fetch) when it is older than [`MAX_AGE`] or a
//! token names a key it lacks, at most once per [`MIN_RELOAD_INTERVAL`]
//! (so tokens with made-up `kid`s cannot make us hammer the source). A
//! failed reload keeps the keys we have: an unreachable issuer must not
//! turn away agents whose keys are known.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::api::{ApiError, HttpsClient};
use crate::k8s_psat::jwks::{JwksError, KeySet};

/// Keys are loaded again after this long.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// The least time between two loads.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The largest JWKS file read.
const MAX_FILE: u64 = 1024 * 1024;

/// Where the keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// `jwks_path`.
    File(PathBuf),
    /// `jwks_url`: the client of its origin, and the request target.
    Url(HttpsClient, String),
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the JWKS file {path}: {reason}")]
    File {
        /// `jwks_path`.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The URL could not be fetched.
    #[error("cannot fetch the JWKS")]
    Fetch(#[source] ApiError),
    /// The document is not a usable key set.
    #[error("the JWKS is unusable")]
    Keys(#[source] JwksError),
    /// The last load failed and nothing was loaded before.
    #[error(
        "no JWKS loaded yet (the last attempt failed; retrying within {MIN_RELOAD_INTERVAL:?})"
    )]
    NotLoaded,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<KeySet>,
    loaded_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// The keys of one cluster.
#[derive(Debug)]
pub struct KeyCache {
    source: KeySource,
    state: Mutex<State>,
}

impl KeyCache {
    /// A cache of `source`, empty until first used (or [`KeyCache::with_keys`]).
    pub fn new(source: KeySource) -> Self {
        KeyCache {
            source,
            state: Mutex::new(State::default()),
        }
    }

    /// The same, holding `keys` loaded now.
    pub fn with_keys(source: KeySource, keys: KeySet) -> Self {
        let now = Instant::now();
        KeyCache {
            source,
            state: Mutex::new(State {
                keys: Some(keys),
                loaded_at: Some(now),
                attempted_at: Some(now),
            }),
        }
    }

    /// Loads a file source now (at start: a missing or bad file stops the
    /// server there rather than at the first attestation).
    pub fn load_file(path: &PathBuf) -> Result<KeySet, LoadError> {
        let file = |reason: String| LoadError::File {
            path: path.clone(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| file(e.to_string()))?
            .len();
        if len > MAX_FILE {
            return Err(file(format!("{len} bytes; the limit is {MAX_FILE}")));
        }
        let bytes = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        KeySet::parse(&bytes).map_err(LoadError::Keys)
    }

    async fn load(&self) -> Result<KeySet, LoadError> {
        match &self.source {
            KeySource::File(path) => Self::load_file(path),
            KeySource::Url(client, target) => {
                let body = client.get(target).await.map_err(LoadError::Fetch)?;
                KeySet::parse(&body).map_err(LoadError::Keys)
            }
        }
    }

    /// The keys to verify a token naming `kid` with.
    pub async fn keys(&self, kid: Option<&str>) -> Result<KeySet, LoadError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let stale = state.loaded_at.is_none_or(|t| now - t > MAX_AGE);
        let missing = match (&state.keys, kid) {
            (Some(keys), Some(kid)) => !keys.has_kid(kid),
            (None, _) => true,
            (Some(_), None) => false,
        };
        let may_retry = state
            .attempted_at
            .is_none_or(|t| now - t >= MIN_RELOAD_INTERVAL);
        if (stale || missing) && may_retry {
            state.attempted_at = Some(now);
            match self.load().await {
                Ok(keys) => {
                    tracing::debug!(keys = keys.len(), "k8s_psat JWKS loaded");
                    state.keys = Some(keys);
                    state.loaded_at = Some(now);
                }
                Err(e) if state.keys.is_some() => {
                    tracing::warn!(error = %crate::errors::Chain(&e), "k8s_psat: reloading the JWKS failed; keeping the keys loaded before");
                }
                Err(e) => return Err(e),
            }
        }
        state.keys.clone().ok_or(LoadError::NotLoaded)
    }
}

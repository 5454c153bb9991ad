//! The workload SVIDs an agent serves, saved in its data directory
//! (`workload_svids`, mode 0600: it holds private keys), so that an agent
//! restarted while its server is unreachable serves the unexpired ones at
//! once instead of nothing until it reconnects.
//!
//! The file holds the identities (entry, SVID chain, key) and the
//! federated bundles; the own trust bundle is `bundle.json` beside it,
//! saved by the manager whenever it changes. A [`Persister`] task follows
//! the cache and rewrites the file atomically when the identities or the
//! federated bundles changed, after the changes settle, and once more at
//! shutdown. A file that cannot be used (damaged, another trust domain or
//! agent, another format) is logged and ignored: the agent then starts as
//! if it had none.

pub(crate) mod format;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub(crate) use self::format::identity_entry;
pub use self::format::{DecodeError, Restored, RestoredIdentity};
use super::cache::{Cache, CacheSnapshot};
use crate::errors::Chain;
use crate::spiffe::{SpiffeId, TrustDomain};

/// The file's name in the agent's data directory.
pub const FILE_NAME: &str = "workload_svids";
/// It holds private keys.
const FILE_MODE: u32 = 0o600;
/// How long changes settle before they are saved: the SVIDs of one Sync
/// snapshot, issued in batches, are saved once.
const MIN_DELAY: Duration = Duration::from_secs(1);
/// After a save, the next waits at least this many times as long as it
/// took, so an agent holding 100,000 SVIDs that renew all day spends at
/// most a tenth of its time writing them.
const DELAY_FACTOR: u32 = 10;
/// The longest wait before a failed save is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Why the saved SVIDs could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The filesystem refused.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is unusable.
    #[error("{path}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (boxed: it can carry a parser's error).
        #[source]
        source: Box<DecodeError>,
    },
}

/// Saves what `snap` serves to `path` (atomically, mode 0600) as `agent`'s.
pub fn save(path: &Path, snap: &CacheSnapshot, agent: &SpiffeId) -> Result<(), PersistError> {
    crate::fsutil::write_atomic_with(path, FILE_MODE, |w| format::encode(w, snap, agent)).map_err(
        |source| PersistError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// Reads the file at `path` saved by `agent` of `td`, without the SVIDs
/// expired at `now`; None when there is no file.
pub fn load(
    path: &Path,
    td: &TrustDomain,
    agent: &SpiffeId,
    now: i64,
) -> Result<Option<Restored>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    format::decode(&bytes, td, agent, now)
        .map(Some)
        .map_err(|source| PersistError::Decode {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// [`load`], logging what it found; a file that cannot be used is logged
/// and ignored, never a reason not to start.
pub fn restore(path: &Path, td: &TrustDomain, agent: &SpiffeId, now: i64) -> Option<Restored> {
    match load(path, td, agent, now) {
        Ok(Some(r)) => {
            tracing::info!(
                identities = r.identities.len(),
                expired = r.expired,
                federated = r.federated.len(),
                file = %path.display(),
                "restored the saved workload SVIDs"
            );
            Some(r)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "the saved workload SVIDs are unusable; ignored");
            None
        }
    }
}

/// Whether `next` serves other identities or federated bundles than
/// `saved`. Identities are compared by pointer: the manager keeps the
/// same `Arc` until it issues a new SVID, so this costs one comparison
/// per identity and no encoding.
fn changed(saved: &CacheSnapshot, next: &CacheSnapshot) -> bool {
    saved.identities.len() != next.identities.len()
        || saved
            .identities
            .iter()
            .zip(&next.identities)
            .any(|(a, b)| !Arc::ptr_eq(a, b))
        || saved.federated != next.federated
}

/// Follows the cache and keeps the file up to date.
pub struct Persister {
    rx: watch::Receiver<Arc<CacheSnapshot>>,
    /// What the file holds (or need not hold).
    saved: Arc<CacheSnapshot>,
    path: PathBuf,
    agent: SpiffeId,
}

impl Persister {
    /// Saves what `cache` serves to `path`, as `agent`'s. What the cache
    /// holds now (restored from that file, or nothing yet) is taken as
    /// saved already; every later change is saved.
    pub fn new(cache: &Cache, path: PathBuf, agent: SpiffeId) -> Self {
        let mut rx = cache.subscribe();
        let saved = rx.borrow_and_update().clone();
        Persister {
            rx,
            saved,
            path,
            agent,
        }
    }

    /// Runs until `shutdown`, then saves any unsaved change and returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut delay = MIN_DELAY;
        let mut retry = false;
        loop {
            let mut stopping = false;
            if !retry {
                tokio::select! {
                    changed = self.rx.changed() => if changed.is_err() { return },
                    _ = crate::shutdown::stopped(&mut shutdown) => stopping = true,
                }
            }
            if !stopping {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::shutdown::stopped(&mut shutdown) => stopping = true,
                }
            }
            let snap = self.rx.borrow_and_update().clone();
            retry = false;
            if snap.ready && changed(&self.saved, &snap) {
                let started = Instant::now();
                match self.save(snap.clone()).await {
                    Ok(()) => {
                        tracing::debug!(identities = snap.identities.len(), took = ?started.elapsed(), "workload SVIDs saved");
                        self.saved = snap;
                        delay = MIN_DELAY.max(started.elapsed() * DELAY_FACTOR);
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not save the workload SVIDs");
                        delay = (delay * 2).min(MAX_RETRY_DELAY);
                        retry = true;
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Saves `snap` on a blocking thread.
    async fn save(&self, snap: Arc<CacheSnapshot>) -> Result<(), PersistError> {
        let (path, agent) = (self.path.clone(), self.agent.clone());
        tokio::task::spawn_blocking(move || save(&path, &snap, &agent))
            .await
            .unwrap_or_else(|e| {
                Err(PersistError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })
            })
    }
}

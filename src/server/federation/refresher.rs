//! Keeps every federated bundle current (SPIFFE.md §5.4 "Refresh", §6
//! "Maintain"): one task polls every federation relationship in the store,
//! stores what changed and tells agents.
//!
//! **Schedule.** Each relationship is fetched when the refresher starts or
//! the relationship is created or changed, then every `spiffe_refresh_hint`
//! of its stored bundle, as the spec says (5 minutes when the bundle has no
//! hint), bounded to [`RefresherSettings::min_interval`] (10 s, so a peer
//! cannot make us poll it in a loop) and
//! [`RefresherSettings::max_interval`] (1 day). Peers publish new keys 3–5
//! hints before using them, so polling at the hint sees a rotation 2–4
//! times before it matters. After a failure the next attempt comes sooner,
//! with exponential backoff: 1 s, 2 s, 4 s, … capped at the refresh
//! interval. `herald federation refresh` (the admin `RefreshBundle`) fetches
//! at once and waits for the outcome.
//!
//! **What is stored** (under a lock shared with the admin API, after
//! checking that the relationship did not change meanwhile):
//! - a fetched bundle that failed any check (unreachable, TLS, wrong
//!   endpoint ID, HTTP status, malformed JSON, wrong trust domain, no
//!   authorities) is never stored: the last good bundle stays in use, and
//!   the error goes to the log and to the relationship's [`RefreshStatus`];
//! - if its authorities differ from the stored bundle's (compared as sets),
//!   it replaces it, whatever its `spiffe_sequence` (the latest fetch wins:
//!   a peer that was rebuilt may start counting again), and agents are told
//!   ([`crate::server::state::ServerEvent::BundleChanged`]);
//! - if the authorities are the same, the sequence never goes backwards: a
//!   higher sequence, or a new refresh hint at the same sequence, is stored
//!   quietly (agents have nothing new to learn), anything else is ignored.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument as _;

mod schedule;
mod storing;

use super::fetch::{FetchError, FetchLimits};
use super::web_roots::WebRoots;
use crate::config::limits;
use crate::server::state::ServerState;
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::StoreError;

use self::schedule::Refresher;

/// How often and how patiently the refresher polls.
#[derive(Debug, Clone)]
pub struct RefresherSettings {
    /// Interval when a bundle has no `spiffe_refresh_hint` (spec: 5 min).
    pub default_interval: Duration,
    /// Shortest interval, whatever a peer's hint says.
    pub min_interval: Duration,
    /// Longest interval, whatever a peer's hint says.
    pub max_interval: Duration,
    /// First retry delay after a failure; doubled per failure, capped at
    /// the refresh interval.
    pub initial_backoff: Duration,
    /// Bound on one fetch, redirects included.
    pub fetch_timeout: Duration,
    /// Keys a fetched bundle may hold.
    pub max_bundle_keys: usize,
}

impl Default for RefresherSettings {
    fn default() -> Self {
        RefresherSettings {
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_secs(1),
            fetch_timeout: limits::DEFAULT_FEDERATION_FETCH_TIMEOUT,
            max_bundle_keys: limits::DEFAULT_FEDERATION_MAX_BUNDLE_KEYS,
        }
    }
}

impl RefresherSettings {
    /// The defaults, with the fetch limits of the `[limits]` table.
    pub fn from_limits(l: &limits::ListenerLimits) -> Self {
        RefresherSettings {
            fetch_timeout: l.federation_fetch_timeout,
            max_bundle_keys: l.federation_max_bundle_keys,
            ..RefresherSettings::default()
        }
    }

    /// What one fetch may cost.
    pub fn fetch_limits(&self) -> FetchLimits {
        FetchLimits {
            timeout: self.fetch_timeout,
            max_keys: self.max_bundle_keys,
        }
    }

    /// The polling interval for a bundle with `hint`.
    pub fn interval(&self, hint: Option<u64>) -> Duration {
        hint.filter(|h| *h > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.default_interval)
            .max(self.min_interval)
            .min(self.max_interval)
    }
}

/// How the refreshes of one relationship have gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStatus {
    /// Unix seconds of the last attempt.
    pub last_attempt_at: Option<i64>,
    /// Unix seconds of the last successful fetch.
    pub last_success_at: Option<i64>,
    /// Why the last attempt failed; `None` after a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Unix seconds of the next scheduled attempt.
    pub next_refresh_at: Option<i64>,
    /// Seconds between refreshes after the last success: the bundle's
    /// refresh hint within the refresher's bounds.
    pub interval_secs: Option<u64>,
}

/// A successful refresh.
#[derive(Debug, Clone)]
pub struct RefreshOutcome {
    /// The federated bundle in use afterwards.
    pub bundle: Bundle,
    /// Whether its authorities changed (agents were told).
    pub changed: bool,
}

/// A failed refresh. The last good bundle stays in use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// The fetch failed (the error names the trust domain, URL and reason).
    #[error("{0}")]
    Fetch(Arc<FetchError>),
    /// The fetched bundle could not be stored.
    #[error("federation with {trust_domain}: storing the fetched bundle failed: {source}")]
    Store {
        /// The foreign trust domain.
        trust_domain: TrustDomain,
        /// The datastore's error.
        source: Arc<StoreError>,
    },
    /// The refresh task panicked or was cancelled.
    #[error("federation with {trust_domain}: the refresh task failed: {source}")]
    TaskFailed {
        /// The foreign trust domain.
        trust_domain: TrustDomain,
        /// How the task ended.
        source: Arc<JoinError>,
    },
    /// No relationship with that trust domain exists.
    #[error("there is no federation relationship with {0}")]
    NoRelationship(TrustDomain),
    /// The relationship was changed or deleted during the fetch.
    #[error(
        "federation with {0}: the relationship changed during the fetch; its result was discarded"
    )]
    Superseded(TrustDomain),
    /// The refresher task is not running.
    #[error("the federation refresher is not running")]
    NotRunning,
}

pub(super) type Reply = oneshot::Sender<Result<RefreshOutcome, RefreshError>>;

pub(super) enum Command {
    RefreshNow {
        trust_domain: TrustDomain,
        reply: Reply,
    },
}

// === impl RefresherHandle ===

/// How the admin API talks to the refresher: "the relationships changed",
/// "refresh this one now", "how is it going", and the lock that keeps
/// admin writes and refresher writes of federation state apart.
#[derive(Debug, Clone)]
pub struct RefresherHandle {
    commands: mpsc::Sender<Command>,
    reload: Arc<Notify>,
    statuses: Arc<RwLock<BTreeMap<TrustDomain, RefreshStatus>>>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::RefreshNow { trust_domain, .. } => {
                write!(f, "RefreshNow({trust_domain})")
            }
        }
    }
}

impl RefresherHandle {
    /// Tells the refresher to reload the relationships from the store
    /// (new ones and changed ones are fetched at once). Never blocks.
    pub fn relationships_changed(&self) {
        self.reload.notify_one();
    }

    /// Fetches `trust_domain`'s bundle now and waits for the outcome.
    pub async fn refresh_now(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<RefreshOutcome, RefreshError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::RefreshNow {
                trust_domain: trust_domain.clone(),
                reply,
            })
            .await
            .map_err(|_| RefreshError::NotRunning)?;
        answer.await.map_err(|_| RefreshError::NotRunning)?
    }

    /// How the refreshes of `trust_domain` have gone, if it is tracked.
    pub fn status(&self, trust_domain: &TrustDomain) -> Option<RefreshStatus> {
        self.statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(trust_domain)
            .cloned()
    }

    /// Serializes writes of relationships and federated bundles between
    /// the admin API and the refresher.
    pub(in crate::server::federation) async fn lock_writes(
        &self,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// How the refreshes of every tracked relationship have gone.
    pub fn statuses(&self) -> Vec<(TrustDomain, RefreshStatus)> {
        self.statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(td, s)| (td.clone(), s.clone()))
            .collect()
    }

    pub(super) fn update_status(&self, td: &TrustDomain, f: impl FnOnce(&mut RefreshStatus)) {
        let mut statuses = self.statuses.write().unwrap_or_else(|p| p.into_inner());
        f(statuses.entry(td.clone()).or_default());
    }
}

/// Starts the refresher with the default [`RefresherSettings`]; see
/// [`spawn_refresher_with`].
pub fn spawn_refresher(
    state: Arc<ServerState>,
    web_roots: WebRoots,
    shutdown: watch::Receiver<bool>,
) -> (RefresherHandle, JoinHandle<()>) {
    spawn_refresher_with(state, web_roots, RefresherSettings::default(), shutdown)
}

/// Starts the refresher: it loads the relationships from the store, fetches
/// each at once and then on its schedule, until `shutdown` turns true. The
/// handle goes to the admin API.
pub fn spawn_refresher_with(
    state: Arc<ServerState>,
    web_roots: WebRoots,
    settings: RefresherSettings,
    shutdown: watch::Receiver<bool>,
) -> (RefresherHandle, JoinHandle<()>) {
    let (commands, receiver) = mpsc::channel(64);
    let handle = RefresherHandle {
        commands,
        reload: Arc::new(Notify::new()),
        statuses: Arc::default(),
        writes: Arc::default(),
    };
    let refresher = Refresher::new(state, web_roots, settings, handle.clone());
    let task = tokio::spawn(
        refresher
            .run(receiver, shutdown)
            .instrument(tracing::info_span!("federation.refresher")),
    );
    (handle, task)
}

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
//!   ([`ServerEvent::BundleChanged`]);
//! - if the authorities are the same, the sequence never goes backwards: a
//!   higher sequence, or a new refresh hint at the same sequence, is stored
//!   quietly (agents have nothing new to learn), anything else is ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::fetch::{fetch_for_relationship, FetchError, WebRoots};
use crate::server::state::{now_unix, ServerEvent, ServerState};
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::FederationRelationship;

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
}

impl Default for RefresherSettings {
    fn default() -> Self {
        RefresherSettings {
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(30),
        }
    }
}

impl RefresherSettings {
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
    #[error("federation with {0}: storing the fetched bundle failed: {1}")]
    Store(TrustDomain, String),
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

type Reply = oneshot::Sender<Result<RefreshOutcome, RefreshError>>;

enum Command {
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
    pub(super) async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    fn update_status(&self, td: &TrustDomain, f: impl FnOnce(&mut RefreshStatus)) {
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
    let refresher = Refresher {
        state,
        web_roots,
        settings,
        handle: handle.clone(),
        tracked: BTreeMap::new(),
        jobs: JoinSet::new(),
        job_ids: HashMap::new(),
    };
    let task = tokio::spawn(
        refresher
            .run(receiver, shutdown)
            .instrument(tracing::info_span!("federation.refresher")),
    );
    (handle, task)
}

// === impl Refresher ===

/// One relationship's schedule.
struct Tracked {
    rel: FederationRelationship,
    /// From the stored bundle's refresh hint.
    interval: Duration,
    next_at: Instant,
    /// The last retry delay, after failures.
    backoff: Option<Duration>,
    running: bool,
    waiters: Vec<Reply>,
}

type JobResult = (
    TrustDomain,
    FederationRelationship,
    Result<RefreshOutcome, RefreshError>,
);

struct Refresher {
    state: Arc<ServerState>,
    web_roots: WebRoots,
    settings: RefresherSettings,
    handle: RefresherHandle,
    tracked: BTreeMap<TrustDomain, Tracked>,
    jobs: JoinSet<JobResult>,
    job_ids: HashMap<tokio::task::Id, TrustDomain>,
}

impl Refresher {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.reload().await;
        let reload = self.handle.reload.clone();
        loop {
            let next_due = self
                .tracked
                .values()
                .filter(|t| !t.running)
                .map(|t| t.next_at)
                .min();
            let due = async move {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = crate::shutdown::stopped(&mut shutdown) => break,
                _ = reload.notified() => self.reload().await,
                Some(command) = commands.recv() => self.command(command).await,
                Some(joined) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    self.finished(joined);
                }
                _ = due => self.start_due(),
            }
        }
        // Waiters learn NotRunning when their reply senders drop.
        self.jobs.abort_all();
        tracing::debug!("federation refresher stopped");
    }

    /// Brings the tracked set in line with the stored relationships.
    async fn reload(&mut self) {
        let listed = self
            .state
            .with_store(|s| {
                let mut out = Vec::new();
                for rel in s.list_federation_relationships()? {
                    let hint = s
                        .get_bundle(&rel.trust_domain)?
                        .and_then(|b| b.refresh_hint);
                    out.push((rel, hint));
                }
                Ok(out)
            })
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot load federation relationships; retrying in 5s");
                let reload = self.handle.reload.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    reload.notify_one();
                });
                return;
            }
        };
        let now = Instant::now();
        let mut keep = Vec::new();
        for (rel, hint) in listed {
            let td = rel.trust_domain.clone();
            if td == self.state.trust_domain {
                tracing::error!(trust_domain = %td, "ignoring a federation relationship with this server's own trust domain");
                continue;
            }
            keep.push(td.clone());
            match self.tracked.get_mut(&td) {
                Some(t) if t.rel == rel => {}
                Some(t) => {
                    tracing::info!(trust_domain = %td, url = %rel.bundle_endpoint_url, "federation relationship changed; fetching now");
                    t.rel = rel;
                    t.interval = self.settings.interval(hint);
                    t.next_at = now;
                    t.backoff = None;
                }
                None => {
                    tracing::info!(trust_domain = %td, url = %rel.bundle_endpoint_url, "federation relationship added; fetching now");
                    self.tracked.insert(
                        td,
                        Tracked {
                            rel,
                            interval: self.settings.interval(hint),
                            next_at: now,
                            backoff: None,
                            running: false,
                            waiters: Vec::new(),
                        },
                    );
                }
            }
        }
        let gone: Vec<TrustDomain> = self
            .tracked
            .keys()
            .filter(|td| !keep.contains(td))
            .cloned()
            .collect();
        for td in gone {
            tracing::info!(trust_domain = %td, "federation relationship removed; no longer polled");
            if let Some(t) = self.tracked.remove(&td) {
                for w in t.waiters {
                    let _ = w.send(Err(RefreshError::NoRelationship(td.clone())));
                }
            }
            self.handle
                .statuses
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&td);
        }
        self.start_due();
    }

    async fn command(&mut self, command: Command) {
        let Command::RefreshNow {
            trust_domain,
            reply,
        } = command;
        if !self.tracked.contains_key(&trust_domain) {
            // Created a moment ago, before the reload notice was handled?
            self.reload().await;
        }
        match self.tracked.get_mut(&trust_domain) {
            Some(t) => {
                t.waiters.push(reply);
                if !t.running {
                    self.start(&trust_domain);
                }
            }
            None => {
                let _ = reply.send(Err(RefreshError::NoRelationship(trust_domain)));
            }
        }
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<TrustDomain> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.running && t.next_at <= now)
            .map(|(td, _)| td.clone())
            .collect();
        for td in due {
            self.start(&td);
        }
    }

    fn start(&mut self, td: &TrustDomain) {
        let Some(t) = self.tracked.get_mut(td) else {
            return;
        };
        t.running = true;
        let rel = t.rel.clone();
        self.handle
            .update_status(td, |s| s.last_attempt_at = Some(now_unix()));
        let span = tracing::info_span!(
            "federation.refresh",
            trust_domain = %rel.trust_domain,
            url = %rel.bundle_endpoint_url
        );
        let job = refresh_once(
            self.state.clone(),
            self.web_roots.clone(),
            self.handle.clone(),
            rel.clone(),
            self.settings.fetch_timeout,
        );
        let td_job = td.clone();
        let abort = self.jobs.spawn(
            async move {
                let result = job.await;
                (td_job, rel, result)
            }
            .instrument(span),
        );
        self.job_ids.insert(abort.id(), td.clone());
    }

    fn finished(&mut self, joined: Result<(tokio::task::Id, JobResult), tokio::task::JoinError>) {
        let (td, rel, result) = match joined {
            Ok((id, r)) => {
                self.job_ids.remove(&id);
                r
            }
            Err(e) => {
                let Some(td) = self.job_ids.remove(&e.id()) else {
                    return;
                };
                tracing::error!(trust_domain = %td, error = %e, "a federation refresh task failed");
                let Some(t) = self.tracked.get(&td) else {
                    return;
                };
                let rel = t.rel.clone();
                let failure =
                    RefreshError::Store(td.clone(), format!("the refresh task failed: {e}"));
                (td, rel, Err(failure))
            }
        };
        let Some(t) = self.tracked.get_mut(&td) else {
            return;
        };
        t.running = false;
        if t.rel != rel || matches!(result, Err(RefreshError::Superseded(_))) {
            // Changed during the fetch: fetch the new one at once, and let
            // any waiter have that outcome.
            t.next_at = Instant::now();
            return;
        }
        let now = now_unix();
        match &result {
            Ok(outcome) => {
                t.interval = self.settings.interval(outcome.bundle.refresh_hint);
                t.backoff = None;
                t.next_at = Instant::now() + t.interval;
                let next = now + t.interval.as_secs() as i64;
                self.handle.update_status(&td, |s| {
                    s.last_success_at = Some(now);
                    s.last_error = None;
                    s.consecutive_failures = 0;
                    s.next_refresh_at = Some(next);
                });
                tracing::debug!(
                    trust_domain = %td,
                    sequence = outcome.bundle.sequence,
                    changed = outcome.changed,
                    next_in_secs = t.interval.as_secs(),
                    "federated bundle refreshed"
                );
            }
            Err(e) => {
                let backoff = t
                    .backoff
                    .map(|b| b.saturating_mul(2))
                    .unwrap_or(self.settings.initial_backoff)
                    .min(t.interval);
                t.backoff = Some(backoff);
                t.next_at = Instant::now() + backoff;
                let next = now + backoff.as_secs().max(1) as i64;
                let message = e.to_string();
                self.handle.update_status(&td, |s| {
                    s.last_error = Some(message);
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    s.next_refresh_at = Some(next);
                });
                tracing::warn!(
                    trust_domain = %td,
                    url = %rel.bundle_endpoint_url,
                    error = %e,
                    retry_in_secs = backoff.as_secs_f32(),
                    "federated bundle refresh failed; the last good bundle stays in use"
                );
            }
        }
        for w in t.waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }
}

/// Fetches `rel`'s bundle and stores it by the rules in the module doc.
async fn refresh_once(
    state: Arc<ServerState>,
    web_roots: WebRoots,
    handle: RefresherHandle,
    rel: FederationRelationship,
    timeout: Duration,
) -> Result<RefreshOutcome, RefreshError> {
    let td = rel.trust_domain.clone();
    let fetched = fetch_for_relationship(&state, &rel, &web_roots, timeout)
        .await
        .map_err(|e| RefreshError::Fetch(Arc::new(e)))?;
    let _writes = handle.lock_writes().await;
    let stored = state
        .with_store(move |s| {
            if s.get_federation_relationship(&rel.trust_domain)?.as_ref() != Some(&rel) {
                return Ok(None);
            }
            let current = s.get_bundle(&rel.trust_domain)?;
            let decision = match &current {
                None => Decision::Replace,
                Some(current) => decide(current, &fetched),
            };
            let old_sequence = current.as_ref().map(|b| b.sequence);
            match (decision, current) {
                (Decision::Keep, Some(current)) => Ok(Some((current, false, old_sequence))),
                (Decision::UpdateQuietly, _) => {
                    s.set_bundle(&fetched)?;
                    Ok(Some((fetched, false, old_sequence)))
                }
                _ => {
                    s.set_bundle(&fetched)?;
                    Ok(Some((fetched, true, old_sequence)))
                }
            }
        })
        .await
        .map_err(|e| RefreshError::Store(td.clone(), e.to_string()))?;
    let Some((bundle, changed, old_sequence)) = stored else {
        return Err(RefreshError::Superseded(td));
    };
    if changed {
        tracing::info!(
            trust_domain = %td,
            old_sequence = ?old_sequence,
            sequence = bundle.sequence,
            x509_authorities = bundle.x509_authorities.len(),
            jwt_authorities = bundle.jwt_authorities.len(),
            "federated bundle updated"
        );
        state.publish(ServerEvent::BundleChanged);
    }
    Ok(RefreshOutcome { bundle, changed })
}

/// What to do with a fetched bundle, given the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing new: leave the store alone.
    Keep,
    /// Same authorities, newer sequence or hint: store, tell nobody.
    UpdateQuietly,
    /// New authorities: store and tell agents.
    Replace,
}

/// The storing rule of the module doc.
pub(super) fn decide(current: &Bundle, fetched: &Bundle) -> Decision {
    if !same_authorities(current, fetched) {
        return Decision::Replace;
    }
    let newer = fetched.sequence > current.sequence
        || (fetched.sequence == current.sequence && fetched.refresh_hint != current.refresh_hint);
    if newer {
        Decision::UpdateQuietly
    } else {
        Decision::Keep
    }
}

/// Whether two bundles hold the same authorities, in any order.
pub(super) fn same_authorities(a: &Bundle, b: &Bundle) -> bool {
    let x509 = |b: &Bundle| {
        let mut v = b.x509_authorities.clone();
        v.sort();
        v
    };
    let jwt = |b: &Bundle| {
        let mut v: Vec<(String, Vec<u8>)> = b
            .jwt_authorities
            .iter()
            .map(|a| (a.key_id.clone(), a.public_key.clone()))
            .collect();
        v.sort();
        v
    };
    x509(a) == x509(b) && jwt(a) == jwt(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spiffe::JwtAuthority;

    fn bundle(seq: u64, hint: Option<u64>, roots: &[&[u8]]) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new("peer.org").unwrap());
        b.sequence = seq;
        b.refresh_hint = hint;
        b.x509_authorities = roots.iter().map(|r| r.to_vec()).collect();
        b
    }

    #[test]
    fn new_authorities_replace_whatever_the_sequence() {
        let stored = bundle(7, Some(300), &[b"a"]);
        assert_eq!(
            decide(&stored, &bundle(8, Some(300), &[b"b"])),
            Decision::Replace
        );
        assert_eq!(
            decide(&stored, &bundle(1, Some(300), &[b"b"])),
            Decision::Replace
        );
        assert_eq!(
            decide(&stored, &bundle(7, Some(300), &[b"a", b"b"])),
            Decision::Replace
        );
        let mut with_jwt = stored.clone();
        with_jwt.jwt_authorities.push(JwtAuthority {
            key_id: "k".into(),
            public_key: vec![1],
            expires_at: None,
        });
        assert_eq!(decide(&stored, &with_jwt), Decision::Replace);
    }

    #[test]
    fn same_authorities_never_move_the_sequence_back() {
        let stored = bundle(7, Some(300), &[b"a", b"b"]);
        assert_eq!(
            decide(&stored, &bundle(7, Some(300), &[b"b", b"a"])),
            Decision::Keep
        );
        assert_eq!(
            decide(&stored, &bundle(6, Some(300), &[b"a", b"b"])),
            Decision::Keep
        );
        assert_eq!(
            decide(&stored, &bundle(6, Some(60), &[b"a", b"b"])),
            Decision::Keep
        );
        assert_eq!(
            decide(&stored, &bundle(9, Some(300), &[b"a", b"b"])),
            Decision::UpdateQuietly
        );
        assert_eq!(
            decide(&stored, &bundle(7, Some(60), &[b"a", b"b"])),
            Decision::UpdateQuietly
        );
    }

    #[test]
    fn intervals_follow_the_hint_within_bounds() {
        let s = RefresherSettings::default();
        assert_eq!(s.interval(None), Duration::from_secs(300));
        assert_eq!(s.interval(Some(0)), Duration::from_secs(300));
        assert_eq!(s.interval(Some(60)), Duration::from_secs(60));
        assert_eq!(s.interval(Some(1)), Duration::from_secs(10));
        assert_eq!(s.interval(Some(u64::MAX)), Duration::from_secs(86_400));
    }
}

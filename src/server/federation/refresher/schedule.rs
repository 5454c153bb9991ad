//! The refresher task: which relationship is fetched when (the schedule of
//! the parent module's doc), one fetch job at a time per relationship, and
//! the outcome's effect on the schedule, the status and any waiter.

use crate::clock::now_unix;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::storing::refresh_once;
use super::{Command, RefreshError, RefreshOutcome, RefresherHandle, RefresherSettings, Reply};
use crate::errors::Chain;
use crate::server::federation::web_roots::WebRoots;
use crate::server::state::ServerState;
use crate::spiffe::TrustDomain;
use crate::store::FederationRelationship;
use std::sync::Arc;

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

pub(super) struct Refresher {
    state: Arc<ServerState>,
    web_roots: WebRoots,
    settings: RefresherSettings,
    handle: RefresherHandle,
    tracked: BTreeMap<TrustDomain, Tracked>,
    jobs: JoinSet<JobResult>,
    job_ids: HashMap<tokio::task::Id, TrustDomain>,
}

impl Refresher {
    pub(super) fn new(
        state: Arc<ServerState>,
        web_roots: WebRoots,
        settings: RefresherSettings,
        handle: RefresherHandle,
    ) -> Self {
        Refresher {
            state,
            web_roots,
            settings,
            handle,
            tracked: BTreeMap::new(),
            jobs: JoinSet::new(),
            job_ids: HashMap::new(),
        }
    }

    pub(super) async fn run(
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
            self.settings.fetch_limits(),
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
                let failure = RefreshError::TaskFailed {
                    trust_domain: td.clone(),
                    source: Arc::new(e),
                };
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
                    s.interval_secs = Some(t.interval.as_secs());
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
                let message = Chain(&e).to_string();
                self.state.metrics.federation_refresh_failed(&td);
                self.handle.update_status(&td, |s| {
                    s.last_error = Some(message);
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    s.next_refresh_at = Some(next);
                });
                tracing::warn!(
                    trust_domain = %td,
                    url = %rel.bundle_endpoint_url,
                    error = %Chain(&e),
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

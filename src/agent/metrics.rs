//! The agent's metrics (`herald_agent_*`, listed in docs/METRICS.md):
//! counters and a histogram updated where things happen ([`AgentMetrics`]:
//! Workload API and SDS calls, attestation, syncs, reconnects), and gauges
//! read from the identity cache at scrape time (SVIDs held, the outage
//! budget). [`AgentOps`] plugs both, and readiness, into the ops listener.
//!
//! Labels are fixed words (rpc, code), or the configured address of the
//! server the agent is connected to: never a SPIFFE ID or an entry.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::cache::{Cache, CacheSnapshot};
use crate::ops::{gauge, latency_histogram, GrpcApi, GrpcLabels, GrpcMetricsLayer, Role};

/// The Workload API's service and methods (checked against workload.proto
/// in a test).
const WORKLOAD_SERVICES: &[&str] = &["SpiffeWorkloadAPI"];
const WORKLOAD_METHODS: &[&str] = &[
    "FetchX509SVID",
    "FetchX509Bundles",
    "FetchJWTSVID",
    "FetchJWTBundles",
    "ValidateJWTSVID",
    "FetchWITSVID",
    "FetchWITBundles",
];
/// Envoy SDS v3 on the same socket.
const SDS_SERVICES: &[&str] = &["envoy.service.secret.v3.SecretDiscoveryService"];
const SDS_METHODS: &[&str] = &["StreamSecrets", "DeltaSecrets", "FetchSecrets"];

/// The agent's event metrics. Cloning shares them.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    workload_api: Family<GrpcLabels, Counter>,
    sds: Family<GrpcLabels, Counter>,
    attestation: Histogram,
    last_sync: Gauge,
    reconnects: Counter,
    /// Entries the agent is authorized for, as of the last Sync applied.
    entries: Gauge,
    /// 1 for the server the agent is connected to (no series while it is
    /// connected to none).
    server: Family<ServerLabels, Gauge>,
    failovers: Counter,
    sync_resumes: Counter,
    rebootstraps: Counter,
}

/// The `address` label of `herald_agent_server_connected`.
type ServerLabels = [(&'static str, String); 1];

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            workload_api: Family::default(),
            sds: Family::default(),
            attestation: latency_histogram(),
            last_sync: Gauge::default(),
            reconnects: Counter::default(),
            entries: Gauge::default(),
            server: Family::default(),
            failovers: Counter::default(),
            sync_resumes: Counter::default(),
            rebootstraps: Counter::default(),
        }
    }
}

impl AgentMetrics {
    /// The layer counting Workload API and SDS calls on the socket.
    pub fn workload_socket_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer::new(vec![
            GrpcApi::new(
                WORKLOAD_SERVICES,
                WORKLOAD_METHODS,
                "rpc",
                self.workload_api.clone(),
            ),
            GrpcApi::new(SDS_SERVICES, SDS_METHODS, "rpc", self.sds.clone()),
        ])
    }

    /// Where workload attestation durations go.
    pub fn attestation_histogram(&self) -> Histogram {
        self.attestation.clone()
    }

    /// A Sync update from the server was applied at `now` (unix seconds);
    /// the agent is now authorized for `entries` entries.
    pub fn synced(&self, now: i64, entries: usize) {
        self.last_sync.set(now);
        self.set_entries(entries);
    }

    /// The agent is authorized for `entries` entries.
    pub fn set_entries(&self, entries: usize) {
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The agent connects to its server again after losing it.
    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    /// The agent is now connected to `server` (None: to none).
    pub fn set_server(&self, server: Option<std::net::SocketAddr>) {
        self.server.clear();
        if let Some(s) = server {
            self.server
                .get_or_create(&[("address", s.to_string())])
                .set(1);
        }
    }

    /// The agent connected to another server than in its last session.
    pub fn failed_over(&self) {
        self.failovers.inc();
    }

    /// A resumed Sync snapshot (only the changes) was applied.
    pub fn sync_resumed(&self) {
        self.sync_resumes.inc();
    }

    /// The agent re-bootstrapped its trust from `[rebootstrap]`'s source.
    pub fn rebootstrapped(&self) {
        self.rebootstraps.inc();
    }

    fn register(&self, r: &mut Registry) {
        // prometheus-client appends `_total` to counters.
        r.register(
            "herald_agent_workload_api_requests",
            "Workload API calls by RPC and gRPC code",
            self.workload_api.clone(),
        );
        r.register(
            "herald_agent_sds_requests",
            "Envoy SDS calls by RPC and gRPC code",
            self.sds.clone(),
        );
        r.register(
            "herald_agent_attestation_duration_seconds",
            "Workload attestation latency",
            self.attestation.clone(),
        );
        r.register(
            "herald_agent_last_sync_timestamp_seconds",
            "Unix time of the last Sync update applied (0: none since start)",
            self.last_sync.clone(),
        );
        r.register(
            "herald_agent_reconnects",
            "Reconnections to the server",
            self.reconnects.clone(),
        );
        r.register(
            "herald_agent_entries",
            "Registration entries the agent is authorized for",
            self.entries.clone(),
        );
        r.register(
            "herald_agent_server_connected",
            "1 for the server address the agent is connected to (none while disconnected)",
            self.server.clone(),
        );
        r.register(
            "herald_agent_failovers",
            "Connections to another server than the one of the previous session",
            self.failovers.clone(),
        );
        r.register(
            "herald_agent_sync_resumes",
            "Sync streams resumed with only the changes since the agent's last sync",
            self.sync_resumes.clone(),
        );
        r.register(
            "herald_agent_rebootstraps",
            "Times the agent replaced its trust bundle's roots from [rebootstrap]'s source",
            self.rebootstraps.clone(),
        );
    }
}

/// The agent as the ops listener sees it.
pub struct AgentOps {
    cache: Cache,
    metrics: AgentMetrics,
}

impl AgentOps {
    /// The agent serving `cache`, counting into `metrics`.
    pub fn new(cache: Cache, metrics: AgentMetrics) -> Arc<Self> {
        Arc::new(AgentOps { cache, metrics })
    }
}

/// Why an agent holding `snapshot` is not ready at `now`: it has not
/// synced with its server since it started, or some entry it is authorized
/// for has no valid SVID.
fn not_ready(snapshot: &CacheSnapshot, synced: bool, entries: i64, now: i64) -> Option<String> {
    if !synced {
        return Some("not synced with the server since start".into());
    }
    let valid = snapshot
        .identities
        .iter()
        .filter(|i| i.not_after > now)
        .count();
    let valid = i64::try_from(valid).unwrap_or(i64::MAX);
    if valid < entries {
        return Some(format!(
            "{} of {entries} entries have no valid SVID",
            entries - valid
        ));
    }
    None
}

/// Seconds until the earliest held X509-SVID expires: how long workloads
/// survive if every server vanished now. None without SVIDs.
fn outage_budget(snapshot: &CacheSnapshot, now: i64) -> Option<i64> {
    snapshot
        .identities
        .iter()
        .map(|i| i.not_after)
        .min()
        .map(|t| (t - now).max(0))
}

impl Role for AgentOps {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn register(self: Arc<Self>, registry: &mut Registry) {
        self.metrics.register(registry);
        registry.register_collector(Box::new(AgentCollector(self)));
    }

    fn not_ready(&self) -> Option<String> {
        not_ready(
            &self.cache.current(),
            self.metrics.last_sync.get() > 0,
            self.metrics.entries.get(),
            crate::clock::now_unix(),
        )
    }
}

/// Writes the agent's cache gauges at scrape time.
struct AgentCollector(Arc<AgentOps>);

impl fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentCollector")
    }
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.0.cache.current();
        let now = crate::clock::now_unix();
        gauge(
            &mut e,
            "herald_agent_svids",
            "X509-SVIDs held for workloads",
            snapshot.identities.len() as f64,
        )?;
        if let Some(budget) = outage_budget(&snapshot, now) {
            gauge(
                &mut e,
                "herald_agent_outage_budget_seconds",
                "Seconds until the earliest held X509-SVID expires: how long workloads survive if every server vanished now",
                budget as f64,
            )?;
        }
        let ready = self.0.not_ready().is_none();
        gauge(
            &mut e,
            "herald_agent_ready",
            "1 when /ready answers 200",
            if ready { 1.0 } else { 0.0 },
        )
    }
}

#[cfg(test)]
mod tests;

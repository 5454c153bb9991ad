//! The server's metrics (`herald_server_*`, listed in docs/METRICS.md):
//! counters and histograms updated where things happen ([`ServerMetrics`],
//! carried by the server state), and gauges read from the state at scrape
//! time (`collector`). [`ServerOps`] plugs both, and readiness, into the
//! ops listener.
//!
//! Labels are fixed words (kind, result, method, code, op, state, event),
//! plus the trust domain on federation metrics, bounded by the configured
//! relationships. Never a SPIFFE ID, an entry or an agent.

mod collector;
mod rotation;

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub(crate) use self::rotation::rotation_events;
use super::federation::RefresherHandle;
use super::state::ServerState;
use crate::ops::{latency_histogram, GrpcApi, GrpcLabels, GrpcMetricsLayer, Role};
use crate::spiffe::TrustDomain;
use crate::store::StoreLatency;

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// What a signature produced, for `herald_server_svids_signed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidKind {
    /// A workload X509-SVID (node API batch, or minted through the admin API).
    X509,
    /// A JWT-SVID.
    Jwt,
    /// An agent's own SVID (attestation, renewal).
    Agent,
    /// A downstream server's CA.
    DownstreamCa,
}

impl SvidKind {
    fn label(self) -> &'static str {
        match self {
            SvidKind::X509 => "x509",
            SvidKind::Jwt => "jwt",
            SvidKind::Agent => "agent",
            SvidKind::DownstreamCa => "downstream_ca",
        }
    }
}

/// The node API's services and methods (checked against node.proto in a test).
const NODE_SERVICES: &[&str] = &["herald.node.v1.Node"];
const NODE_METHODS: &[&str] = &[
    "Attest",
    "Challenge",
    "RenewAgent",
    "Sync",
    "BatchNewX509SVID",
    "NewJWTSVID",
    "AckBundle",
    "NewDownstreamX509CA",
];
/// The admin API's services and methods (checked against admin.proto and
/// federation.proto in a test).
const ADMIN_SERVICES: &[&str] = &[
    "herald.admin.v1.Entries",
    "herald.admin.v1.Agents",
    "herald.admin.v1.Bundles",
    "herald.admin.v1.Svids",
    "herald.admin.v1.LocalAuthority",
    "herald.admin.v1.Federation",
    "herald.admin.v1.FederatedBundles",
];
const ADMIN_METHODS: &[&str] = &[
    "BatchCreateEntry",
    "BatchUpdateEntry",
    "BatchDeleteEntry",
    "GetEntry",
    "ListEntries",
    "CountEntries",
    "CreateJoinToken",
    "ListAgents",
    "GetAgent",
    "DeleteAgent",
    "BanAgent",
    "GetBundle",
    "MintX509SVID",
    "MintJWTSVID",
    "ShowAuthorities",
    "PrepareAuthority",
    "ActivateAuthority",
    "TaintAuthority",
    "RevokeAuthority",
    "BatchCreateFederationRelationship",
    "ListFederationRelationships",
    "GetFederationRelationship",
    "BatchUpdateFederationRelationship",
    "BatchDeleteFederationRelationship",
    "RefreshBundle",
    "ListFederatedBundles",
    "GetFederatedBundle",
    "BatchSetFederatedBundle",
    "BatchDeleteFederatedBundle",
];

/// The server's event metrics. Cloning shares them.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    svids_signed: Family<Labels<2>, Counter>,
    signing_duration: Family<Labels<1>, Histogram, fn() -> Histogram>,
    node_api: Family<GrpcLabels, Counter>,
    admin_api: Family<GrpcLabels, Counter>,
    rotation_events: Family<Labels<2>, Counter>,
    federation_failures: Family<[(&'static str, String); 1], Counter>,
    store_latency: StoreLatency,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            svids_signed: Family::default(),
            signing_duration: Family::new_with_constructor(latency_histogram),
            node_api: Family::default(),
            admin_api: Family::default(),
            rotation_events: Family::default(),
            federation_failures: Family::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ServerMetrics {
    /// Runs one signature of `kind`, counting its result and timing it.
    pub fn sign<T, E>(&self, kind: SvidKind, sign: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let start = Instant::now();
        let out = sign();
        self.signing_duration
            .get_or_create(&[("kind", kind.label())])
            .observe(start.elapsed().as_secs_f64());
        let result = if out.is_ok() { "ok" } else { "error" };
        self.svids_signed
            .get_or_create(&[("kind", kind.label()), ("result", result)])
            .inc();
        out
    }

    /// Counts one authority transition.
    pub(crate) fn rotation_event(&self, kind: &'static str, event: &'static str) {
        self.rotation_events
            .get_or_create(&[("kind", kind), ("event", event)])
            .inc();
    }

    /// Counts a failed refresh of the bundle of `trust_domain`.
    pub fn federation_refresh_failed(&self, trust_domain: &TrustDomain) {
        self.federation_failures
            .get_or_create(&[("trust_domain", trust_domain.to_string())])
            .inc();
    }

    /// The store latency histogram, for [`crate::store::TimedStore`].
    pub fn store_latency(&self) -> StoreLatency {
        self.store_latency.clone()
    }

    /// The layer counting node API calls.
    pub fn node_api_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer::new(vec![GrpcApi::new(
            NODE_SERVICES,
            NODE_METHODS,
            "method",
            self.node_api.clone(),
        )])
    }

    /// The layer counting admin API calls.
    pub fn admin_api_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer::new(vec![GrpcApi::new(
            ADMIN_SERVICES,
            ADMIN_METHODS,
            "method",
            self.admin_api.clone(),
        )])
    }

    fn register(&self, r: &mut Registry) {
        // prometheus-client appends `_total` to counters.
        r.register(
            "herald_server_svids_signed",
            "SVIDs signed, by kind and result",
            self.svids_signed.clone(),
        );
        r.register(
            "herald_server_signing_duration_seconds",
            "Time to sign one SVID",
            self.signing_duration.clone(),
        );
        r.register(
            "herald_server_node_api_requests",
            "Node API calls by method and gRPC code",
            self.node_api.clone(),
        );
        r.register(
            "herald_server_admin_api_requests",
            "Admin API calls by method and gRPC code",
            self.admin_api.clone(),
        );
        r.register(
            "herald_server_rotation_events",
            "Authority transitions by kind and event",
            self.rotation_events.clone(),
        );
        r.register(
            "herald_server_federation_refresh_failures",
            "Failed refreshes of a federated bundle",
            self.federation_failures.clone(),
        );
        r.register(
            "herald_server_store_operation_duration_seconds",
            "Store call latency by operation",
            self.store_latency.clone(),
        );
    }
}

/// The server as the ops listener sees it.
pub struct ServerOps {
    state: Arc<ServerState>,
    refresher: RefresherHandle,
    stop: watch::Receiver<bool>,
    dashboard: Arc<crate::server::dashboard::ServerDashboard>,
}

impl ServerOps {
    /// The server of `state`, not ready once `stop` turns true.
    pub fn new(
        state: Arc<ServerState>,
        refresher: RefresherHandle,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let dashboard = crate::server::dashboard::ServerDashboard::new(
            state.clone(),
            refresher.clone(),
            stop.clone(),
        );
        Arc::new(ServerOps {
            state,
            refresher,
            stop,
            dashboard,
        })
    }
}

impl Role for ServerOps {
    fn name(&self) -> &'static str {
        "server"
    }

    fn register(self: Arc<Self>, registry: &mut Registry) {
        self.state.metrics.register(registry);
        registry.register_collector(Box::new(collector::ServerCollector(self)));
    }

    fn not_ready(&self) -> Option<String> {
        if *self.stop.borrow() {
            return Some("shutting down".into());
        }
        // A cheap read: the own bundle.
        if let Err(e) = self.state.store.get_bundle(&self.state.trust_domain) {
            return Some(format!("store unreachable: {}", crate::errors::Chain(&e)));
        }
        let now = crate::clock::now_unix();
        if self.state.authorities().x509().not_after() <= now {
            return Some("no active X.509 authority (expired)".into());
        }
        None
    }

    fn dashboard(&self) -> Option<Arc<dyn crate::ops::dashboard::Source>> {
        Some(self.dashboard.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_lists_match_the_protos() {
        let node = crate::ops::proto_methods("proto/herald/node/v1/node.proto");
        assert_eq!(NODE_METHODS, node.as_slice());
        let mut admin = crate::ops::proto_methods("proto/herald/admin/v1/admin.proto");
        admin.extend(crate::ops::proto_methods(
            "proto/herald/admin/v1/federation.proto",
        ));
        assert_eq!(ADMIN_METHODS, admin.as_slice());
    }

    #[tokio::test]
    async fn a_server_is_ready_until_it_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        let state = crate::server::state::test_state(store);
        let (stop, stop_rx) = watch::channel(false);
        let (refresher, task) = crate::server::federation::spawn_refresher(
            state.clone(),
            crate::server::federation::WebRoots::empty(),
            stop_rx.clone(),
        );
        let ops = ServerOps::new(state, refresher, stop_rx);
        assert_eq!(ops.not_ready(), None);
        stop.send_replace(true);
        assert_eq!(ops.not_ready().as_deref(), Some("shutting down"));
        task.await.unwrap();
    }
}

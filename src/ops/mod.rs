//! The operations HTTP listener: `GET /metrics` (Prometheus, through
//! prometheus-client), `GET /live` and `GET /ready`, for probes and
//! scrapers. Off unless a role's `[ops] address` is set; `herald dev`
//! serves both of its roles on one listener at a loopback port.
//!
//! A role (server, agent) plugs in as a [`Role`]: it registers its metrics
//! (counters and histograms updated where things happen, and a collector
//! that reads its state at scrape time, so gauges cannot drift from the
//! truth) and says whether it is ready. `docs/METRICS.md` lists every
//! metric.
//!
//! The listener is plain HTTP through [`crate::tls::https_server`], with
//! its bounds (connection and header timeouts, a small request head, a
//! connection budget per peer). It is not restricted to loopback: operators
//! bind it where their Prometheus can reach it. It serves nothing secret:
//! no label carries a SPIFFE ID, an entry or an agent.
//!
//! A role may also bring a read-only web [`dashboard`] (the server does);
//! it is served only when the listener is bound to loopback, and only to
//! loopback peers.

pub mod dashboard;
mod grpc;
mod http;
mod scrape;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(test)]
pub(crate) use self::grpc::proto_methods;
pub use self::grpc::{code_name, GrpcApi, GrpcLabels, GrpcMetricsLayer, UNKNOWN_METHOD};
pub use self::scrape::{gauge, gauge_family, latency_histogram};

/// A role whose metrics and readiness the listener serves.
pub trait Role: Send + Sync + 'static {
    /// `server` or `agent`, as named in `/ready`'s answer.
    fn name(&self) -> &'static str;
    /// Registers the role's metrics (event metrics and its collector).
    fn register(self: Arc<Self>, registry: &mut Registry);
    /// Why the role is not ready, or `None` when it is. May block briefly
    /// (a store read): it is called on the blocking pool.
    fn not_ready(&self) -> Option<String>;
    /// What the role's web dashboard shows, if it has one.
    fn dashboard(&self) -> Option<Arc<dyn dashboard::Source>> {
        None
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The address could not be bound.
    #[error("cannot listen on the ops address {address}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What one listener serves: the roles and the registry of their metrics.
pub(crate) struct Served {
    roles: Vec<Arc<dyn Role>>,
    registry: Registry,
    dashboard: Option<dashboard::Dashboard>,
}

/// A running ops listener.
#[derive(Debug)]
pub struct OpsListener {
    /// Where it listens (port 0 resolved).
    pub address: SocketAddr,
    /// Whether it serves a role's dashboard (at `/`).
    pub dashboard: bool,
    task: JoinHandle<()>,
}

impl OpsListener {
    /// Waits for the listener to stop (after its stop signal).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `address` and serves `roles` until `stop` turns true.
pub async fn serve(
    address: SocketAddr,
    roles: Vec<Arc<dyn Role>>,
    stop: watch::Receiver<bool>,
) -> Result<OpsListener, OpsError> {
    let bind_error = |source| OpsError::Bind { address, source };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let mut registry = Registry::default();
    for role in &roles {
        role.clone().register(&mut registry);
    }
    let source = roles.iter().find_map(|r| r.dashboard());
    let dashboard = match source {
        Some(source) if dashboard::access::listener_allows(bound) => {
            tracing::info!(url = %format!("http://{bound}/"), "dashboard served to loopback peers");
            Some(dashboard::Dashboard::new(source, stop.clone()))
        }
        Some(_) => {
            tracing::info!(address = %bound, "no dashboard: the ops listener is not bound to loopback");
            None
        }
        None => None,
    };
    let has_dashboard = dashboard.is_some();
    let served = Arc::new(Served {
        roles,
        registry,
        dashboard,
    });
    let task = tokio::spawn(http::run(listener, served, stop));
    tracing::info!(address = %bound, "ops listener: /metrics /live /ready");
    Ok(OpsListener {
        address: bound,
        dashboard: has_dashboard,
        task,
    })
}

impl Served {
    /// Each role that is not ready, with why (`server: no active CA`).
    fn not_ready(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter_map(|r| r.not_ready().map(|why| format!("{}: {why}", r.name())))
            .collect()
    }
}

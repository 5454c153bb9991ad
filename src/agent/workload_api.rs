//! The SPIFFE Workload API (SPIFFE.md §4), served on a Unix domain socket
//! together with Envoy SDS (`crate::agent::sds`), which identifies callers
//! through the same `caller` path.
//!
//! The caller is identified out of band: the socket's SO_PEERCRED gives its
//! pid, uid and gid, which the [`WorkloadAttestor`] turns into selectors. The
//! responses come from the agent's [`Cache`]: each stream subscribes to it
//! and sends a full-state message whenever a new snapshot changes what the
//! caller receives. This layer validates and translates; it holds no CA
//! logic (JWT-SVIDs are minted through a [`JwtSvidSource`]).
//!
//! Status codes follow §4.1: InvalidArgument only for what the client must
//! fix (the security header, empty mandatory fields, a bad token to
//! validate), PermissionDenied `"no identity issued"` when the caller is
//! entitled to nothing, Unavailable for anything that may pass (cache not
//! synced yet, attestation failure, minting failure, shutdown).

pub(crate) mod caller;
mod entitlements;
mod handler;
pub(crate) mod ready;
pub(crate) mod responses;
mod stream;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::transport::Server;

use self::entitlements::EntitlementMemo;
use self::handler::Handler;
use crate::agent::attestor::WorkloadAttestor;
use crate::agent::cache::{Cache, JwtSvidSource};
use crate::agent::h2_authority::{self, ConnLimits, TrackRequestsLayer};
use crate::agent::metrics::AgentMetrics;
use crate::agent::sds::Sds;
use crate::config::SdsSettings;
use crate::proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;

/// How long a request waits for the agent's first sync before answering
/// Unavailable (unless the server is known to be unreachable: then at once).
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Default for `workload_api_max_concurrent_streams`: HTTP/2's recommended
/// minimum; a workload uses a handful (one stream per watched kind, a few
/// unary calls).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default for `workload_api_keepalive_interval`.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a keepalive PING may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What any local user may make the Workload API hold: every listener
/// limit in one place, from `agent.toml`.
#[derive(Debug, Clone)]
pub struct WorkloadApiLimits {
    /// Limits the `:authority` shim enforces per connection and per uid.
    pub conn: ConnLimits,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused.
    pub max_concurrent_streams: u32,
    /// How often the server PINGs a connection; one unanswered for
    /// [`KEEPALIVE_TIMEOUT`] is closed, so a vanished client's streams go.
    pub keepalive_interval: Duration,
}

impl Default for WorkloadApiLimits {
    fn default() -> Self {
        WorkloadApiLimits {
            conn: ConnLimits::default(),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
        }
    }
}

/// Why the Workload API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadApiError {
    /// The socket or its directory is refused or could not be made.
    #[error("Workload API socket")]
    Socket(#[from] crate::runtime_dir::SocketDirError),
    /// The gRPC server failed.
    #[error("the Workload API server failed")]
    Serve(#[from] tonic::transport::Error),
}

/// The Workload API endpoint of an agent.
#[derive(Clone)]
pub struct WorkloadApi {
    cache: Cache,
    jwt: Arc<dyn JwtSvidSource>,
    attestor: Arc<WorkloadAttestor>,
    options: WorkloadApiOptions,
    /// What each caller gets from the current snapshot, once computed.
    entitlements: Arc<EntitlementMemo>,
}

/// How a [`WorkloadApi`] behaves beyond what it serves; the default is what
/// agent.toml's defaults give.
#[derive(Debug, Clone)]
pub struct WorkloadApiOptions {
    /// How long a request waits for the cache to become ready before
    /// answering Unavailable (default 5 s; no wait once the server is
    /// known to be unreachable).
    pub ready_timeout: Duration,
    /// Clock skew tolerated on `nbf` and `iat` by ValidateJWTSVID, seconds
    /// (default 30, the `jwt_svid_leeway` key).
    pub jwt_leeway_secs: i64,
    /// The listener's limits (the `workload_api_*` keys).
    pub limits: WorkloadApiLimits,
    /// How Envoy SDS, served on the same socket, names and shapes its
    /// secrets (default: SPIRE's names; the `[sds]` table).
    pub sds: SdsSettings,
    /// Where calls are counted (default: counters nobody reads).
    pub metrics: AgentMetrics,
}

impl Default for WorkloadApiOptions {
    fn default() -> Self {
        WorkloadApiOptions {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            jwt_leeway_secs: crate::ca::DEFAULT_JWT_LEEWAY_SECS,
            limits: WorkloadApiLimits::default(),
            sds: SdsSettings::default(),
            metrics: AgentMetrics::default(),
        }
    }
}

// === impl WorkloadApi ===

impl WorkloadApi {
    /// A Workload API serving `cache`, minting JWT-SVIDs through `jwt` and
    /// identifying callers with `attestor`.
    pub fn new(cache: Cache, jwt: Arc<dyn JwtSvidSource>, attestor: Arc<WorkloadAttestor>) -> Self {
        WorkloadApi {
            cache,
            jwt,
            attestor,
            options: WorkloadApiOptions::default(),
            entitlements: Arc::default(),
        }
    }

    /// Replaces the default [`WorkloadApiOptions`].
    pub fn with_options(mut self, options: WorkloadApiOptions) -> Self {
        self.options = options;
        self
    }

    /// Binds the socket with mode 0777 so workloads of any user can connect
    /// (the agent decides what each caller gets from its kernel
    /// credentials), in a directory (0755) that only the agent's user
    /// controls; a stale socket is replaced, anything else refused. Must be
    /// called inside a tokio runtime.
    pub fn bind(socket_path: &Path) -> Result<UnixListener, WorkloadApiError> {
        Ok(crate::runtime_dir::bind_socket(socket_path, 0o777, 0o755)?)
    }

    /// Binds `socket_path` and serves until `shutdown` resolves; then ends
    /// every open stream, waits for connections to close and removes the
    /// socket file.
    pub async fn serve(
        self,
        socket_path: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkloadApiError> {
        let listener = Self::bind(socket_path)?;
        tracing::info!(socket = %socket_path.display(), "Workload API listening");
        let result = self.serve_listener(listener, shutdown).await;
        if let Err(e) = std::fs::remove_file(socket_path) {
            tracing::debug!(socket = %socket_path.display(), error = %e, "socket not removed");
        }
        result
    }

    /// Serves on an already bound listener (see [`WorkloadApi::bind`])
    /// until `shutdown` resolves. Open streams then end with Unavailable so
    /// that clients reconnect, and the server drains.
    pub async fn serve_listener(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkloadApiError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = self.options.limits.clone();
        // Outside every other layer, so refused calls count too.
        let counted = self.options.metrics.workload_socket_layer();
        let sds = Sds::new(
            self.cache.clone(),
            self.attestor.clone(),
            self.options.ready_timeout,
            self.options.sds.clone(),
            stop_rx.clone(),
        );
        let handler = Handler {
            api: self,
            stop: stop_rx,
        };
        let signal = async move {
            shutdown.await;
            tracing::info!("Workload API shutting down");
            stop_tx.send_replace(true);
        };
        // h2 and the shim agree on the header list limit, so a client the
        // shim passes through is held to the same bound by h2 itself.
        let header_list = u32::try_from(limits.conn.max_header_list_size).unwrap_or(u32::MAX);
        Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_max_header_list_size(header_list)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(counted)
            .layer(TrackRequestsLayer)
            // No per-call request id span here (the server's APIs have one,
            // for the audit log): a span per stream stays in the log
            // registry's slab, and a flood of streams by any local user left
            // ~8 MiB the allocator could not return (tests/
            // security_workload_api.rs, streams_per_connection_...).
            .add_service(SpiffeWorkloadApiServer::new(handler))
            .add_service(sds.into_service())
            .serve_with_incoming_shutdown(
                h2_authority::incoming_with(listener, limits.conn),
                signal,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_file() {
        let (dir, path) = crate::testing::temp_path("api.sock");
        let first = WorkloadApi::bind(&path).unwrap();
        drop(first);
        let _second = WorkloadApi::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"x").unwrap();
        let err = WorkloadApi::bind(&file).unwrap_err();
        assert!(
            matches!(
                err,
                WorkloadApiError::Socket(crate::runtime_dir::SocketDirError::NotASocket { .. })
            ),
            "{err}"
        );
        assert!(file.exists());
    }
}

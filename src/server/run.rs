//! Starting and stopping a server: open the data directory, load or mint the
//! CA, and serve the node API (TCP + TLS) and the admin API (Unix socket,
//! 0600, callers checked by uid) until shutdown, each listener within the
//! `[limits]` of `server.toml`.

use crate::clock::now_unix;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::Instrument as _;

mod admin_listener;
mod connections;
mod fd_limit;
mod listeners;
mod node_listener;
mod peer_svid;
mod serve;
mod streams;

pub(crate) use self::connections::ConnInfo;
pub(crate) use self::node_listener::NodeConnectInfo;
pub use self::node_listener::ANONYMOUS_MAX_MESSAGE;
pub(crate) use self::peer_svid::{PeerSvid, PeerSvidError};
use super::admin_api::{admin_routes, AllowedCallers};
use super::audit::AuditLog;
use super::authorities::herald_upstream::HeraldUpstream;
use super::authorities::upstream::UpstreamError;
use super::authorities::{Authorities, CaSettings, DiskUpstream};
use super::server_svid::ServerSvidError;
use super::state::{ServerSettings, ServerState};
use crate::ca::DiskKeyManager;
use crate::config::{ServerConfig, StoreConfig, UpstreamConfig};
use crate::ops::{OpsListener, Role};
use crate::server::metrics::{ServerMetrics, ServerOps};
use crate::store::{DataStore, PostgresStore, SledStore, StoreLatency, TimedStore};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory is unusable.
    #[error("data directory {path}")]
    DataDir {
        /// The directory (or file in it).
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<DataDirProblem>,
    },
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Authorities(#[from] super::authorities::AuthorityError),
    /// A listener could not be bound.
    #[error("admin socket")]
    AdminSocket(#[from] crate::runtime_dir::SocketDirError),
    /// A listener could not be bound.
    #[error("cannot listen on {what}")]
    Bind {
        /// Which listener.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file of `node_attestors.x509pop.ca_bundle_path(s)` is unusable.
    #[error("node_attestors.x509pop CA bundle {path}: {reason}")]
    X509PopBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `[node_attestors.k8s_psat]` is unusable (a CA or JWKS file).
    #[error(transparent)]
    K8sPsat(#[from] crate::server::k8s_psat::PsatSetupError),
    /// TLS setup failed.
    #[error("TLS setup failed")]
    Tls(#[from] ServerSvidError),
    /// The upstream authority is unusable.
    #[error("upstream authority")]
    Upstream(#[from] UpstreamError),
    /// The PostgreSQL store could not be opened (unreachable, refused, or
    /// its schema is newer than this build knows).
    #[error("PostgreSQL store {target}")]
    Store {
        /// The connection string, password redacted.
        target: String,
        /// Why.
        #[source]
        source: crate::store::StoreError,
    },
    /// The task opening the store panicked or was cancelled.
    #[error("the store opening task failed")]
    StoreTask(#[source] tokio::task::JoinError),
    /// The task loading the CA panicked or was cancelled.
    #[error("the CA loading task failed")]
    CaTask(#[source] tokio::task::JoinError),
    /// The ops listener could not start.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    /// The dashboard's Unix socket (`[dashboard] socket`) could not open.
    #[error(transparent)]
    DashboardSocket(#[from] crate::ops::dashboard::SocketError),
    /// The bundle endpoint or the federation refresher could not start.
    #[error(transparent)]
    Federation(#[from] super::federation::FederationError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] super::audit::AuditOpenError),
}

/// What is wrong in the data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirProblem {
    /// It cannot be created or restricted to its owner.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store in it cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The key directory in it cannot be opened.
    #[error(transparent)]
    Keys(#[from] crate::ca::KeyManagerError),
    /// The disk upstream's files cannot be used.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The server id file is unusable.
    #[error(transparent)]
    ServerId(#[from] super::server_id::ServerIdError),
}

/// A running server.
pub struct ServerHandle {
    /// The shared state (used in-process by `herald dev`).
    pub state: Arc<ServerState>,
    /// Where the node API listens.
    pub node_addr: SocketAddr,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// Where the bundle endpoint listens, if configured.
    pub bundle_endpoint: Option<SocketAddr>,
    ops_role: Arc<ServerOps>,
    ops: Option<OpsListener>,
    ops_stop: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops the listeners and waits for them to finish.
    pub async fn shutdown(self) {
        // /ready answers 503 from here on; the ops listener itself stops
        // last, so probes see the shutdown rather than a refused connection.
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // The store flushes on every write; a last flush costs nothing.
        let _ = self.state.with_store(|s| s.count_entries()).await;
        let _ = self.ops_stop.send(true);
        if let Some(ops) = self.ops {
            ops.stopped().await;
        }
    }

    /// Where the ops listener listens, if `[ops]` is configured.
    pub fn ops_address(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|o| o.address)
    }

    /// The server's metrics and readiness, for an ops listener shared with
    /// another role (`herald dev`).
    pub fn ops_role(&self) -> Arc<dyn Role> {
        self.ops_role.clone()
    }
}

fn data_dir_error(path: &Path, source: impl Into<DataDirProblem>) -> ServerError {
    ServerError::DataDir {
        path: path.to_path_buf(),
        source: Box::new(source.into()),
    }
}

/// Opens the store `[store]` names: sled in the data directory, or
/// PostgreSQL (connected and migrated on the blocking pool, since the
/// PostgreSQL store drives its own runtime).
async fn open_store(
    config: &ServerConfig,
    latency: StoreLatency,
) -> Result<Arc<dyn DataStore>, ServerError> {
    let dir = &config.data_dir;
    match &config.store {
        StoreConfig::Sled => Ok(Arc::new(TimedStore::new(
            SledStore::open(&dir.join("store")).map_err(|e| data_dir_error(dir, e))?,
            latency,
        ))),
        StoreConfig::Postgres(settings) => {
            let s = settings.clone();
            let store = tokio::task::spawn_blocking(move || PostgresStore::connect(&s))
                .await
                .map_err(ServerError::StoreTask)?
                .map_err(|source| ServerError::Store {
                    target: settings.url.redacted(),
                    source,
                })?;
            Ok(Arc::new(TimedStore::new(store, latency)))
        }
    }
}

/// Starts a server from `config` and returns once both APIs are listening.
pub async fn start(config: &ServerConfig) -> Result<ServerHandle, ServerError> {
    if let Some((old, new)) = fd_limit::raise_open_file_limit() {
        tracing::info!(
            old,
            new,
            "raised the open-file limit to its hard limit (one descriptor per agent)"
        );
    }
    let audit = AuditLog::open(config.audit_log.as_deref())?;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| data_dir_error(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| data_dir_error(dir, e))?;
    let metrics = ServerMetrics::default();
    let store = open_store(config, metrics.store_latency()).await?;
    let keys =
        Arc::new(DiskKeyManager::open(&dir.join("keys")).map_err(|e| data_dir_error(dir, e))?);
    let upstream = match &config.upstream {
        UpstreamConfig::SelfSigned => None,
        UpstreamConfig::Disk {
            cert_path,
            key_path,
        } => Some(
            DiskUpstream::load(&config.trust_domain, cert_path, key_path)
                .map_err(|e| data_dir_error(cert_path, e))?,
        ),
        UpstreamConfig::Herald {
            server_address,
            trust_bundle_path,
            join_token,
        } => Some(
            HeraldUpstream::connect(
                &config.trust_domain,
                *server_address,
                trust_bundle_path,
                join_token.as_deref(),
                &dir.join("upstream"),
            )
            .await?,
        ),
    };
    // Loading may mint a CA, and a Herald upstream signs over the network
    // from inside that synchronous code: run it on the blocking pool.
    let server_id = super::server_id::load_or_create(dir).map_err(|e| data_dir_error(dir, e))?;
    let settings = CaSettings {
        key_type: config.ca_key_type,
        ca_ttl_secs: config.ca_ttl,
        upstream,
        server_id,
    };
    let (store_c, keys_c, td_c) = (store.clone(), keys.clone(), config.trust_domain.clone());
    let authorities = tokio::task::spawn_blocking(move || {
        Authorities::load_or_create(
            store_c.as_ref(),
            keys_c.as_ref(),
            &td_c,
            settings,
            now_unix(),
        )
    })
    .await
    .map_err(ServerError::CaTask)??;
    tracing::info!(
        trust_domain = %config.trust_domain,
        ca_serial = authorities.x509().serial(),
        ca_not_after = %crate::clock::unix_rfc3339(authorities.x509().not_after()),
        "CA loaded"
    );
    let state = ServerState::new(
        config.trust_domain.clone(),
        store,
        keys,
        authorities,
        ServerSettings {
            default_x509_svid_ttl: config.default_x509_svid_ttl,
            default_jwt_svid_ttl: config.default_jwt_svid_ttl,
            agent_svid_ttl: config.agent_svid_ttl,
            ca_activation_deadline: config.ca_activation_deadline,
            jwt_issuer: config.jwt_issuer.clone(),
            ..ServerSettings::default()
        },
        metrics,
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        super::ca_manager::run(state.clone(), shutdown_rx.clone())
            .instrument(tracing::info_span!("ca_manager")),
    ));
    tasks.push(tokio::spawn(
        super::pruner::run(state.clone(), config.prune, shutdown_rx.clone())
            .instrument(tracing::info_span!("pruner")),
    ));
    tasks.push(tokio::spawn(
        super::memory::run_trimmer(shutdown_rx.clone())
            .instrument(tracing::info_span!("memory_trimmer")),
    ));

    // --- node API: TCP + TLS with the server's own SVID ---------------------
    let node_addr = node_listener::serve(config, &state, &audit, &shutdown_rx, &mut tasks).await?;

    // --- federation: relationships, refresher, bundle endpoint ---------------
    super::federation::apply_configured_relationships(&state, &config.federation).await?;
    let web_roots = super::federation::WebRoots::load(config.federation.web_roots_path.as_deref())?;
    let (refresher, refresher_task) = super::federation::spawn_refresher_with(
        state.clone(),
        web_roots,
        super::federation::RefresherSettings::from_limits(&config.limits),
        shutdown_rx.clone(),
    );
    tasks.push(refresher_task);
    // --- several servers: changes made through the others, agent presence ---
    tasks.extend(super::cluster::spawn(
        &state,
        refresher.clone(),
        &shutdown_rx,
    ));
    let ops_role = ServerOps::new(state.clone(), refresher.clone(), shutdown_rx.clone());
    let bundle_endpoint = match &config.federation.bundle_endpoint {
        Some(endpoint) => Some(
            super::federation::serve_bundle_endpoint_limited(
                state.clone(),
                endpoint.clone(),
                config.limits.bundle_endpoint_max_connections_per_peer,
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };

    // --- admin API: Unix socket, 0600 ----------------------------------------
    let admin_socket = config.admin_socket.clone();
    let routes = super::federation::add_federation_services(
        admin_routes(state.clone()),
        state.clone(),
        refresher,
    );
    tasks.push(admin_listener::serve(
        &admin_socket,
        &config.admin_allowed_uids,
        &config.limits,
        routes,
        state.metrics.admin_api_layer(),
        &audit,
        &shutdown_rx,
    )?);
    // --- dashboard: a Unix socket for the admin uids, if configured ----------
    if let (Some(dashboard), Some(source)) = (&config.dashboard, ops_role.dashboard()) {
        let own_uid = rustix::process::geteuid().as_raw();
        let allowed = AllowedCallers::new(own_uid, &config.admin_allowed_uids);
        tasks.push(crate::ops::dashboard::serve_socket(
            &dashboard.socket,
            source,
            Arc::new(move |uid| allowed.allows(uid)),
            shutdown_rx.clone(),
        )?);
    }
    // --- ops: /metrics, /live, /ready, stopped last ----------------------------
    let (ops_stop, ops_stop_rx) = watch::channel(false);
    let ops = match config.ops {
        Some(ops) => {
            Some(crate::ops::serve(ops.address, vec![ops_role.clone()], ops_stop_rx).await?)
        }
        None => None,
    };
    tracing::info!(
        node_api = %node_addr,
        admin_socket = %admin_socket.display(),
        bundle_endpoint = ?bundle_endpoint,
        "server listening"
    );
    Ok(ServerHandle {
        ops_role,
        ops,
        ops_stop,
        state,
        node_addr,
        admin_socket,
        bundle_endpoint,
        shutdown,
        tasks,
    })
}

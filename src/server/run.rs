//! Starting and stopping a server: open the data directory, load or mint the
//! CA, and serve the node API (TCP + TLS) and the admin API (Unix socket,
//! 0600) until shutdown.

use crate::clock::now_unix;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tracing::Instrument as _;

use super::admin_api::admin_routes;
use super::authorities::herald_upstream::HeraldUpstream;
use super::authorities::{Authorities, CaSettings, DiskUpstream};
use super::node_api::NodeApi;
use super::state::{ServerSettings, ServerState};
use crate::ca::{DiskKeyManager, KeyPair, KeyType, SvidRequest};
use crate::config::{ServerConfig, UpstreamConfig};
use crate::proto::node::node_server::NodeServer;
use crate::spiffe::SpiffeId;
use crate::store::SledStore;
use crate::tls::{certified_key, provider, OptionalSvidClientVerifier, Roots};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory is unusable.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Authorities(#[from] super::authorities::AuthorityError),
    /// A listener could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The upstream authority is unusable.
    #[error("upstream authority: {0}")]
    Upstream(String),
    /// The bundle endpoint or the federation refresher could not start.
    #[error(transparent)]
    Federation(#[from] super::federation::FederationError),
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
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops the listeners and waits for them to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // The store flushes on every write; a last flush costs nothing.
        let _ = self.state.with_store(|s| s.count_entries()).await;
    }
}

fn data_dir_error(path: &Path, reason: impl std::fmt::Display) -> ServerError {
    ServerError::DataDir {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Starts a server from `config` and returns once both APIs are listening.
pub async fn start(config: &ServerConfig) -> Result<ServerHandle, ServerError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| data_dir_error(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| data_dir_error(dir, e))?;
    let store = Arc::new(SledStore::open(&dir.join("store")).map_err(|e| data_dir_error(dir, e))?);
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
            .await
            .map_err(|e| ServerError::Upstream(e.to_string()))?,
        ),
    };
    // Loading may mint a CA, and a Herald upstream signs over the network
    // from inside that synchronous code: run it on the blocking pool.
    let settings = CaSettings {
        key_type: config.ca_key_type,
        ca_ttl_secs: config.ca_ttl,
        upstream,
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
    .map_err(|e| ServerError::Upstream(format!("CA task failed: {e}")))??;
    tracing::info!(
        trust_domain = %config.trust_domain,
        ca_serial = authorities.x509().serial(),
        ca_not_after = authorities.x509().not_after(),
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
            ..ServerSettings::default()
        },
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        super::ca_manager::run(state.clone(), shutdown_rx.clone())
            .instrument(tracing::info_span!("ca_manager")),
    ));

    // --- node API: TCP + TLS with the server's own SVID ---------------------
    let tls = ServerTls::new(&state)?;
    let listener = TcpListener::bind(config.bind_address)
        .await
        .map_err(|source| ServerError::Bind {
            what: format!("node API address {}", config.bind_address),
            source,
        })?;
    let node_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        what: "node API address".into(),
        source,
    })?;
    let (conn_tx, conn_rx) = mpsc::channel(128);
    tasks.push(tokio::spawn(accept_tls(
        listener,
        tls.clone(),
        conn_tx,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(refresh_server_svid(
        state.clone(),
        tls,
        shutdown_rx.clone(),
    )));
    let node = NodeServer::new(NodeApi::new(state.clone(), shutdown_rx.clone()))
        .max_decoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE)
        .max_encoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE);
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(
        async move {
            let incoming = ReceiverStream::new(conn_rx).map(Ok::<_, std::io::Error>);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(node)
                .serve_with_incoming_shutdown(incoming, async move {
                    crate::shutdown::stopped(&mut stop).await;
                })
                .await
            {
                tracing::error!(error = %e, "node API stopped");
            }
        }
        .instrument(tracing::info_span!("node_api")),
    ));

    // --- federation: relationships, refresher, bundle endpoint ---------------
    super::federation::apply_configured_relationships(&state, &config.federation).await?;
    let web_roots = super::federation::WebRoots::load(config.federation.web_roots_path.as_deref())?;
    let (refresher, refresher_task) =
        super::federation::spawn_refresher(state.clone(), web_roots, shutdown_rx.clone());
    tasks.push(refresher_task);
    let bundle_endpoint = match &config.federation.bundle_endpoint {
        Some(endpoint) => Some(
            super::federation::serve_bundle_endpoint(
                state.clone(),
                endpoint.clone(),
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };

    // --- admin API: Unix socket, 0600 ----------------------------------------
    let admin_socket = config.admin_socket.clone();
    let admin_listener = bind_admin_socket(&admin_socket)?;
    let routes = super::federation::add_federation_services(
        admin_routes(state.clone()),
        state.clone(),
        refresher,
    );
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(
        async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(UnixListenerStream::new(admin_listener), async move {
                    crate::shutdown::stopped(&mut stop).await;
                })
                .await
            {
                tracing::error!(error = %e, "admin API stopped");
            }
        }
        .instrument(tracing::info_span!("admin_api")),
    ));
    tracing::info!(
        node_api = %node_addr,
        admin_socket = %admin_socket.display(),
        bundle_endpoint = ?bundle_endpoint,
        "server listening"
    );
    Ok(ServerHandle {
        state,
        node_addr,
        admin_socket,
        bundle_endpoint,
        shutdown,
        tasks,
    })
}

use tokio_stream::StreamExt as _;

fn bind_admin_socket(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_err = |source| ServerError::Bind {
        what: format!("admin socket {}", path.display()),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    // Whoever can open this socket administers the trust domain.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// The node API's TLS configuration, rebuilt when the server SVID is renewed
/// or the bundle's roots change.
#[derive(Clone)]
struct ServerTls {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    roots: Roots,
}

impl ServerTls {
    fn new(state: &ServerState) -> Result<Self, ServerError> {
        let roots = Roots::new(state.authorities().bundle().x509_authorities.clone());
        let (config, _) = build_server_config(state, &roots)?;
        Ok(ServerTls {
            config: Arc::new(RwLock::new(Arc::new(config))),
            roots,
        })
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Mints a fresh server SVID (spiffe://<td>/herald/server) and builds the
/// TLS config around it. Returns the config and the SVID's NotAfter.
fn build_server_config(
    state: &ServerState,
    roots: &Roots,
) -> Result<(rustls::ServerConfig, i64), ServerError> {
    let key = KeyPair::generate(KeyType::EcP256).map_err(|e| ServerError::Tls(e.to_string()))?;
    let id = SpiffeId::new(&state.trust_domain, "/herald/server")
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let spki = key.public_key_spki();
    let now = now_unix();
    let cert = state
        .authorities()
        .x509()
        .sign_svid(
            &SvidRequest {
                spiffe_id: &id,
                public_key_spki: &spki,
                ttl_secs: state.settings.agent_svid_ttl,
                dns_names: &[],
            },
            now,
        )
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let (chain, key_der) = certified_key(&cert.chain, key.pkcs8_der());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(OptionalSvidClientVerifier::new(roots.clone())))
        .with_single_cert(chain, key_der)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, cert.not_after))
}

/// Renews the server SVID at half its life and follows bundle changes.
async fn refresh_server_svid(
    state: Arc<ServerState>,
    tls: ServerTls,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = state.subscribe();
    let mut renew_at = now_unix() + state.settings.agent_svid_ttl / 2;
    loop {
        let wait = Duration::from_secs(u64::try_from(renew_at - now_unix()).unwrap_or(0).max(1));
        tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
            ev = events.recv() => {
                if !matches!(ev, Ok(super::state::ServerEvent::BundleChanged) | Err(_)) {
                    continue;
                }
            }
        }
        tls.roots
            .set(state.authorities().bundle().x509_authorities.clone());
        match build_server_config(&state, &tls.roots) {
            Ok((config, not_after)) => {
                *tls.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                let now = now_unix();
                renew_at = now + (not_after - now) / 2;
                tracing::debug!(not_after, "server SVID renewed");
            }
            Err(e) => {
                tracing::error!(error = %e, "renewing the server SVID failed; retrying in 10s");
                renew_at = now_unix() + 10;
            }
        }
    }
}

/// Accepts TCP connections and completes the TLS handshake off the accept
/// path, so one slow client cannot hold up the others.
async fn accept_tls(
    listener: TcpListener,
    tls: ServerTls,
    conns: mpsc::Sender<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let conns = conns.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = conns.send(stream).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

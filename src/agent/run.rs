//! Starting an agent: load (or obtain, with a join token) the agent SVID,
//! restore the workload SVIDs saved before a restart, start the manager
//! and the task that keeps them saved, and serve the Workload API (and
//! Envoy SDS) on its socket.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::attestor::k8s::K8sAttestor;
use super::attestor::{UnixAttestor, WorkloadAttestor};
use super::cache::Cache;
use super::h2_authority::ConnLimits;
use super::jwt_source::NodeJwtSource;
use super::manager::Manager;
use super::metrics::{AgentMetrics, AgentOps};
use super::persist::{self, Persister};
use super::rebootstrap::{attest_at_start, Rebootstrap};
use super::workload_api::{WorkloadApi, WorkloadApiLimits, WorkloadApiOptions};
use crate::ca::keys::pem_blocks;
use crate::clock;
use crate::config::node_attestors::NodeAttestation;
use crate::config::{AgentConfig, Bootstrap};
use crate::node::{AttestError, CredentialStore, Method, NodeClientError, ServerConnector};
use crate::ops::{OpsListener, Role};
use crate::spiffe::SpiffeId;
use crate::tls::Roots;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory failed.
    #[error("agent data directory")]
    Store(#[from] crate::node::CredentialStoreError),
    /// The bootstrap bundle file is unusable.
    #[error("trust_bundle_path {path}: {reason}")]
    BootstrapBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// No SVID and no join token.
    #[error("the agent has no SVID in its data directory and no attestation method is configured: set join_token (generate one with `herald token generate`), [node_attestor.x509pop] or [node_attestor.k8s_psat]")]
    NoCredential,
    /// The server connection could not be set up.
    #[error("server connection")]
    Connector(#[from] NodeClientError),
    /// Attestation failed.
    #[error("node attestation")]
    Attest(#[from] AttestError),
    /// The ops listener could not start.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    /// The Workload API socket could not be bound.
    #[error("workload API")]
    WorkloadApi(#[from] super::workload_api::WorkloadApiError),
    /// The k8s workload attestor could not be set up.
    #[error("k8s workload attestor (workload_attestors.k8s)")]
    K8sAttestor(#[from] super::attestor::k8s::SetupError),
}

/// A running agent.
pub struct AgentHandle {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The identity cache (for `herald dev` and tests).
    pub cache: Cache,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    ops_role: Arc<AgentOps>,
    ops: Option<OpsListener>,
    ops_stop: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// Stops the agent and waits for its tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Each task ends on the signal; a panicked one has nothing to undo.
        futures::future::join_all(self.tasks).await;
        let _ = std::fs::remove_file(&self.socket_path);
        let _ = self.ops_stop.send(true);
        if let Some(ops) = self.ops {
            ops.stopped().await;
        }
    }

    /// Where the ops listener listens, if `[ops]` is configured.
    pub fn ops_address(&self) -> Option<std::net::SocketAddr> {
        self.ops.as_ref().map(|o| o.address)
    }

    /// The agent's metrics and readiness, for an ops listener shared with
    /// another role (`herald dev`).
    pub fn ops_role(&self) -> Arc<dyn Role> {
        self.ops_role.clone()
    }
}

fn bootstrap_roots(config: &AgentConfig) -> Result<Vec<Vec<u8>>, AgentError> {
    match &config.bootstrap {
        Bootstrap::Insecure => Ok(Vec::new()),
        Bootstrap::TrustBundle(path) => {
            let bad = |reason, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
                AgentError::BootstrapBundle {
                    path: path.clone(),
                    reason,
                    source,
                }
            };
            let pem =
                std::fs::read_to_string(path).map_err(|e| bad("cannot be read", Some(e.into())))?;
            let roots =
                pem_blocks(&pem, "CERTIFICATE").map_err(|e| bad("is not PEM", Some(e.into())))?;
            if roots.is_empty() {
                return Err(bad("holds no CERTIFICATE block", None));
            }
            Ok(roots)
        }
    }
}

/// Starts an agent from `config`.
pub async fn start(config: &AgentConfig) -> Result<AgentHandle, AgentError> {
    // First, so that a mistake in it stops the agent before anything runs.
    let k8s = config.k8s.as_ref().map(K8sAttestor::new).transpose()?;
    let store = CredentialStore::open(&config.data_dir)?;
    let saved_bundle = store.load_bundle(&config.trust_domain)?;
    let (roots, insecure) = match &saved_bundle {
        Some(b) => (b.x509_authorities.clone(), false),
        None => (
            bootstrap_roots(config)?,
            config.bootstrap == Bootstrap::Insecure,
        ),
    };
    if insecure {
        tracing::warn!(
            "insecure_bootstrap: the server is not authenticated for the first attestation"
        );
    }
    let mut connector = ServerConnector::with_targets(
        config.server_addresses.clone(),
        &config.trust_domain,
        Roots::new(roots),
        insecure,
    )?;

    let mut rebootstrap = config.rebootstrap.clone().map(Rebootstrap::new);
    let metrics = AgentMetrics::default();
    let clock = clock::system();
    let saved = store
        .load_credential()?
        .filter(|c| c.not_after > clock.now_unix());
    let held_sequence = saved_bundle.as_ref().map_or(0, |b| b.sequence);
    let (cred, bundle) = match (saved, saved_bundle) {
        (Some(cred), Some(bundle)) => {
            tracing::info!(agent = %cred.spiffe_id, "reusing the saved agent SVID");
            (cred, bundle)
        }
        _ => {
            let method = match &config.attestation {
                NodeAttestation::JoinToken(t) => Method::JoinToken(t),
                NodeAttestation::X509Pop(files) => Method::X509Pop(files),
                NodeAttestation::K8sPsat(source) => Method::K8sPsat(source),
                NodeAttestation::None => return Err(AgentError::NoCredential),
            };
            let (cred, bundle) = attest_at_start(
                &connector,
                method,
                rebootstrap.as_mut(),
                &config.trust_domain,
                held_sequence,
                &metrics,
            )
            .await?;
            store.save_credential(&cred)?;
            store.save_bundle(&bundle)?;
            (cred, bundle)
        }
    };
    connector.roots().set(bundle.x509_authorities.clone());
    connector.secure();

    let cache = Cache::new(config.trust_domain.clone());
    let client = Arc::new(RwLock::new(None));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let spiffe_id = cred.spiffe_id.clone();
    let jwt_epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut manager = Manager::new(
        connector,
        store,
        cache.clone(),
        cred,
        bundle,
        client.clone(),
        jwt_epoch.clone(),
        clock.clone(),
    )
    .with_metrics(metrics.clone())
    .with_rebootstrap(rebootstrap, config.attestation.clone());
    if let NodeAttestation::X509Pop(files) = &config.attestation {
        manager = manager.with_x509pop(files.clone());
    }
    // Before the first connection: the Workload API serves what was saved
    // even if the server never answers.
    let svids_path = config.data_dir.join(persist::FILE_NAME);
    let restored = {
        let (path, td, id) = (
            svids_path.clone(),
            config.trust_domain.clone(),
            spiffe_id.clone(),
        );
        let now = clock.now_unix();
        tokio::task::spawn_blocking(move || persist::restore(&path, &td, &id, now))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the saved workload SVIDs failed; ignored");
                None
            })
    };
    if let Some(restored) = restored {
        manager.restore(restored);
    }
    // Made before the manager runs, so that it sees every change after the restore.
    let persister = Persister::new(&cache, svids_path, spiffe_id.clone());
    tasks.push(tokio::spawn(manager.run(shutdown_rx.clone())));
    tasks.push(tokio::spawn(persister.run(shutdown_rx.clone())));

    let limits = &config.workload_api;
    let jwt = Arc::new(NodeJwtSource::new(client, jwt_epoch, clock));
    tasks.push(tokio::spawn(jwt.clone().refresh_hot(shutdown_rx.clone())));
    let api = WorkloadApi::new(
        cache.clone(),
        jwt,
        Arc::new(
            WorkloadAttestor::new(
                UnixAttestor::new().with_sha256_max_file_size(limits.sha256_max_file_size),
                k8s,
            )
            .with_duration_histogram(metrics.attestation_histogram()),
        ),
    )
    .with_options(WorkloadApiOptions {
        jwt_leeway_secs: config.jwt_svid_leeway,
        sds: config.sds.clone(),
        limits: WorkloadApiLimits {
            conn: ConnLimits {
                max_header_list_size: limits.max_header_list_size,
                max_connections_per_uid: limits.max_connections_per_uid,
                idle_timeout: limits.idle_timeout,
            },
            max_concurrent_streams: limits.max_concurrent_streams,
            keepalive_interval: limits.keepalive_interval,
        },
        metrics: metrics.clone(),
        ..WorkloadApiOptions::default()
    });
    let listener = WorkloadApi::bind(&config.socket_path)?;
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = api
            .serve_listener(listener, async move {
                crate::shutdown::stopped(&mut stop).await;
            })
            .await
        {
            tracing::error!(error = %crate::errors::Chain(&e), "workload API stopped");
        }
    }));
    let ops_role = AgentOps::new(cache.clone(), metrics);
    let (ops_stop, ops_stop_rx) = watch::channel(false);
    let ops = match config.ops {
        Some(ops) => {
            Some(crate::ops::serve(ops.address, vec![ops_role.clone()], ops_stop_rx).await?)
        }
        None => None,
    };
    tracing::info!(agent = %spiffe_id, socket = %config.socket_path.display(), "agent running");
    Ok(AgentHandle {
        ops_role,
        ops,
        ops_stop,
        spiffe_id,
        cache,
        socket_path: config.socket_path.clone(),
        shutdown,
        tasks,
    })
}

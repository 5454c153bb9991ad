//! Starting an agent: load (or obtain, with a join token) the agent SVID,
//! start the manager, and serve the Workload API on its socket.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::attestor::UnixAttestor;
use super::cache::Cache;
use super::credential_store::CredentialStore;
use super::jwt_source::NodeJwtSource;
use super::manager::{make_csr, Manager};
use super::node_client::{error_chain, AgentCredential, ServerConnector};
use super::workload_api::WorkloadApi;
use crate::ca::keys::pem_blocks;
use crate::ca::{KeyPair, KeyType};
use crate::config::{AgentConfig, Bootstrap};
use crate::node_wire::bundle_from_wire;
use crate::proto::node;
use crate::server::state::now_unix;
use crate::spiffe::{Bundle, SpiffeId};
use crate::tls::Roots;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory failed.
    #[error("agent data directory: {0}")]
    Store(#[from] super::credential_store::CredentialStoreError),
    /// The bootstrap bundle file is unusable.
    #[error("trust_bundle_path {path}: {reason}")]
    BootstrapBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No SVID and no join token.
    #[error("the agent has no SVID in its data directory and no join_token is configured; generate one with `herald token generate`")]
    NoCredential,
    /// Attestation failed.
    #[error("attestation failed: {0}")]
    Attest(String),
    /// The Workload API could not start.
    #[error("workload API: {0}")]
    WorkloadApi(String),
}

/// A running agent.
pub struct AgentHandle {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The identity cache (for `herald dev` and tests).
    pub cache: Cache,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// Stops the agent and waits for its tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

fn bootstrap_roots(config: &AgentConfig) -> Result<Vec<Vec<u8>>, AgentError> {
    match &config.bootstrap {
        Bootstrap::Insecure => Ok(Vec::new()),
        Bootstrap::TrustBundle(path) => {
            let bad = |reason: String| AgentError::BootstrapBundle {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let roots = pem_blocks(&pem, "CERTIFICATE").map_err(|e| bad(e.to_string()))?;
            if roots.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
            Ok(roots)
        }
    }
}

/// Starts an agent from `config`.
pub async fn start(config: &AgentConfig) -> Result<AgentHandle, AgentError> {
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
    let mut connector = ServerConnector::new(
        config.server_address,
        &config.trust_domain,
        Roots::new(roots),
        insecure,
    )
    .map_err(|e| AgentError::Attest(e.to_string()))?;

    let saved = store
        .load_credential()?
        .filter(|c| c.not_after > now_unix());
    let (cred, bundle) = match (saved, saved_bundle) {
        (Some(cred), Some(bundle)) => {
            tracing::info!(agent = %cred.spiffe_id, "reusing the saved agent SVID");
            (cred, bundle)
        }
        _ => {
            let token = config
                .join_token
                .as_deref()
                .ok_or(AgentError::NoCredential)?;
            let (cred, bundle) = attest(&connector, token).await?;
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
    let manager = Manager::new(
        connector,
        store,
        cache.clone(),
        cred,
        bundle,
        client.clone(),
        jwt_epoch.clone(),
    );
    tasks.push(tokio::spawn(manager.run(shutdown_rx.clone())));

    let api = WorkloadApi::new(
        cache.clone(),
        Arc::new(NodeJwtSource::new(client, jwt_epoch)),
        Arc::new(UnixAttestor::new()),
    );
    if let Some(parent) = config.socket_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| AgentError::WorkloadApi(format!("{}: {e}", parent.display())))?;
    }
    let listener = WorkloadApi::bind(&config.socket_path)
        .map_err(|e| AgentError::WorkloadApi(e.to_string()))?;
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = api
            .serve_listener(listener, async move {
                crate::shutdown::stopped(&mut stop).await;
            })
            .await
        {
            tracing::error!(error = %e, "workload API stopped");
        }
    }));
    tracing::info!(agent = %spiffe_id, socket = %config.socket_path.display(), "agent running");
    Ok(AgentHandle {
        spiffe_id,
        cache,
        socket_path: config.socket_path.clone(),
        shutdown,
        tasks,
    })
}

/// Attests to the server at `connector` with a join token; returns the agent credential and the bundle.
pub async fn attest(
    connector: &ServerConnector,
    token: &str,
) -> Result<(AgentCredential, Bundle), AgentError> {
    let key = KeyPair::generate(KeyType::EcP256).map_err(|e| AgentError::Attest(e.to_string()))?;
    let csr = make_csr(&key).map_err(|e| AgentError::Attest(e.to_string()))?;
    let mut client = connector
        .anonymous()
        .await
        .map_err(|e| AgentError::Attest(e.to_string()))?;
    let resp = client
        .attest(node::AttestRequest {
            join_token: token.to_string(),
            csr,
        })
        .await
        .map_err(|s| AgentError::Attest(format!("{}: {}", code_name(s.code()), s.message())))?
        .into_inner();
    let spiffe_id = SpiffeId::parse(&resp.spiffe_id)
        .map_err(|e| AgentError::Attest(format!("server sent a bad agent ID: {e}")))?;
    let leaf = resp
        .svid_chain
        .first()
        .ok_or_else(|| AgentError::Attest("server sent no agent SVID".into()))?;
    let facts =
        crate::ca::x509::cert_facts(leaf).map_err(|e| AgentError::Attest(error_chain(&e)))?;
    let bundle = bundle_from_wire(
        resp.bundle
            .ok_or_else(|| AgentError::Attest("server sent no bundle".into()))?,
    )
    .map_err(|e| AgentError::Attest(e.to_string()))?;
    tracing::info!(agent = %spiffe_id, "attested with a join token");
    Ok((
        AgentCredential {
            spiffe_id,
            chain: resp.svid_chain,
            key: Arc::new(key),
            not_after: facts.not_after,
        },
        bundle,
    ))
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::Unavailable => "server unavailable",
        _ => "error",
    }
}

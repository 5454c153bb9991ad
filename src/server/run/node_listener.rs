//! The node API listener: TCP + TLS with the server's SVID, and two gRPC
//! servers behind it. Agents (a client certificate the TLS layer verified
//! against our bundle) get today's message sizes; peers without one can
//! only attest, so their server buffers no more than an Attest request (a
//! join token and a CSR of at most 16 KiB), on a few streams, for a short
//! while (issue 10, attack 2: unfinished 16 MiB messages from anonymous
//! peers grew the server by 1 GiB). Every call gets a request id, and
//! attestations are audited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::connections::ConnLimits;
use super::listeners::{self, NodeConns, NodePeerLimits, NodeTls};
use super::serve::spawn_router;
use super::streams::TrackStreamsLayer;
use super::ServerError;
use crate::config::limits::ListenerLimits;
use crate::config::ServerConfig;
use crate::peer_budget::PeerCounter;
use crate::proto::node::node_server::NodeServer;
use crate::request_id::RequestIdLayer;
use crate::server::audit::{AuditLog, AuditScope};
use crate::server::k8s_psat::PsatAttestor;
use crate::server::node_api::{DownstreamPolicy, NodeApi, SharedSync};
use crate::server::state::ServerState;
use crate::x509pop::{ChallengeKey, X509PopVerifier};

/// The largest message a peer without a client certificate may send: an
/// Attest request is a join token and a CSR (at most 16 KiB, `ca::csr`).
pub const ANONYMOUS_MAX_MESSAGE: usize = 64 * 1024;

/// HTTP/2 flow-control windows of anonymous connections: together with
/// the stream cap they bound what such a connection can make us buffer.
const ANONYMOUS_STREAM_WINDOW: u32 = 64 * 1024;
const ANONYMOUS_CONNECTION_WINDOW: u32 = 128 * 1024;

/// How long one anonymous call (an attestation) may take.
const ANONYMOUS_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Decoded header list cap on every node API connection (hyper's default,
/// stated so that it cannot drift).
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// The connect info of a node API request.
pub(crate) type NodeConnectInfo = super::connections::ConnInfo<TlsConnectInfo<TcpConnectInfo>>;

/// Binds the node API and starts its tasks; returns its address.
pub(super) async fn serve(
    config: &ServerConfig,
    state: &Arc<ServerState>,
    audit: &AuditLog,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<SocketAddr, ServerError> {
    let tls = NodeTls::new(state)?;
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
    let limits = &config.limits;
    let (auth_tx, auth_rx) = mpsc::channel(128);
    let (anon_tx, anon_rx) = mpsc::channel(128);
    let peer_limits = NodePeerLimits {
        any: PeerCounter::new(limits.node_max_connections_per_peer),
        anonymous: PeerCounter::new(limits.node_anonymous_connections_per_peer),
        authenticated_conn: ConnLimits {
            idle_timeout: limits.idle_timeout,
            lifetime: None,
        },
        anonymous_conn: ConnLimits {
            idle_timeout: limits.idle_timeout,
            lifetime: Some(limits.node_anonymous_connection_lifetime),
        },
    };
    let conns = NodeConns {
        authenticated: auth_tx,
        anonymous: anon_tx,
    };
    tasks.push(tokio::spawn(listeners::accept_tls(
        listener,
        tls.clone(),
        peer_limits,
        conns,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(
        tls.keep_fresh(state.clone(), shutdown.clone()),
    ));
    let api = NodeApi::new(state.clone(), shutdown.clone())
        .with_downstream_policy(DownstreamPolicy {
            max_ttl: Some(config.downstream_ca_max_ttl),
            path_len: config.downstream_ca_path_len,
        })
        .with_x509pop(x509pop_verifier(config)?)
        .with_k8s_psat(k8s_psat_attestor(config)?);
    // Sync sends the shared federated bundles without a copy per agent.
    let authenticated = SharedSync::new(
        NodeServer::new(api.clone())
            .max_decoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE),
        api.clone(),
    );
    let anonymous = NodeServer::new(api)
        .max_decoding_message_size(ANONYMOUS_MAX_MESSAGE)
        .max_encoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE);
    // Counted outside every other layer, so refused calls count too.
    let counted = state.metrics.node_api_layer();
    let server = builder(limits)
        .max_concurrent_streams(limits.node_max_concurrent_streams)
        .layer(counted.clone())
        .layer(TrackStreamsLayer::<TlsConnectInfo<TcpConnectInfo>>::new())
        .layer(RequestIdLayer)
        .layer(audit.layer(AuditScope::Attestation))
        .add_service(authenticated);
    tasks.push(spawn_router(server, auth_rx, shutdown, "node_api"));
    let server = builder(limits)
        .max_concurrent_streams(limits.node_anonymous_max_concurrent_streams)
        .initial_stream_window_size(ANONYMOUS_STREAM_WINDOW)
        .initial_connection_window_size(ANONYMOUS_CONNECTION_WINDOW)
        .timeout(ANONYMOUS_CALL_TIMEOUT)
        .layer(counted)
        .layer(TrackStreamsLayer::<TlsConnectInfo<TcpConnectInfo>>::new())
        .layer(RequestIdLayer)
        .layer(audit.layer(AuditScope::Attestation))
        .add_service(anonymous);
    tasks.push(spawn_router(
        server,
        anon_rx,
        shutdown,
        "node_api_anonymous",
    ));
    Ok(node_addr)
}

/// The HTTP/2 settings both node API servers share.
fn builder(limits: &ListenerLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .http2_max_header_list_size(MAX_HEADER_LIST)
}

/// The k8s_psat attestor of `[node_attestors.k8s_psat]`, its CA and JWKS
/// files read now.
fn k8s_psat_attestor(config: &ServerConfig) -> Result<Option<Arc<PsatAttestor>>, ServerError> {
    let Some(settings) = &config.k8s_psat else {
        return Ok(None);
    };
    let attestor = PsatAttestor::new(settings, config.trust_domain.clone())?;
    Ok(Some(Arc::new(attestor)))
}

/// The x509pop attestor of `[node_attestors.x509pop]`, its CA bundle
/// files read now so that a missing or empty one stops the server at start.
fn x509pop_verifier(config: &ServerConfig) -> Result<Option<Arc<X509PopVerifier>>, ServerError> {
    let Some(settings) = &config.x509pop else {
        return Ok(None);
    };
    let mut roots = Vec::new();
    for path in &settings.ca_bundle_paths {
        roots.extend(x509pop_roots(path)?);
    }
    // The challenge key comes from the system's random source; failing to
    // make it is reported with the attestor's first file.
    let challenges = ChallengeKey::generate().map_err(|e| ServerError::X509PopBundle {
        path: settings
            .ca_bundle_paths
            .first()
            .cloned()
            .unwrap_or_default(),
        reason: format!("making the challenge key: {e}"),
    })?;
    tracing::info!(
        roots = roots.len(),
        files = settings.ca_bundle_paths.len(),
        "x509pop node attestation enabled"
    );
    Ok(Some(Arc::new(X509PopVerifier::new(
        roots,
        settings.agent_path_template.clone(),
        config.trust_domain.clone(),
        challenges,
    ))))
}

/// The roots in one CA bundle file: at least one, each usable as a trust
/// anchor.
fn x509pop_roots(path: &std::path::Path) -> Result<Vec<Vec<u8>>, ServerError> {
    let bad = |reason: String| ServerError::X509PopBundle {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let roots = crate::ca::pem::pem_blocks(&pem, "CERTIFICATE").map_err(|e| bad(e.to_string()))?;
    if roots.is_empty() {
        return Err(bad("holds no CERTIFICATE block".into()));
    }
    let usable = roots
        .iter()
        .filter(|r| webpki::anchor_from_trusted_cert(&(r.as_slice()).into()).is_ok())
        .count();
    if usable != roots.len() {
        return Err(bad("holds a certificate that does not parse".into()));
    }
    Ok(roots)
}

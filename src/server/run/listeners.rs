//! The node API's TLS listener (its config follows the server SVID and the
//! bundle's roots) and the admin API's Unix socket (0600).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

use super::connections::{ConnLimits, GuardedIo};
use super::ServerError;
use crate::errors::Chain;
use crate::peer_budget::PeerCounter;
use crate::server::server_svid::{self, RenewOn, Resolver};
use crate::server::state::ServerState;
use crate::tls::https_server::next_connection;
use crate::tls::{provider, OptionalSvidClientVerifier, Roots};

/// The node API's TLS configuration: the current server SVID (served by a
/// resolver that renewal updates) and a client verifier over the bundle's
/// current roots.
#[derive(Clone)]
pub(super) struct NodeTls {
    config: Arc<rustls::ServerConfig>,
    resolver: Arc<Resolver>,
    roots: Roots,
}

impl NodeTls {
    /// Mints a first server SVID and builds the config around it.
    pub(super) fn new(state: &ServerState) -> Result<Self, ServerError> {
        let roots = Roots::new(state.authorities().bundle().x509_authorities.clone());
        let svid = server_svid::mint(state)?;
        let resolver = Arc::new(Resolver::new(svid.certified));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(server_svid::ServerSvidError::from)?
            .with_client_cert_verifier(Arc::new(OptionalSvidClientVerifier::new(roots.clone())))
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(NodeTls {
            config: Arc::new(config),
            resolver,
            roots,
        })
    }

    /// Renews the server SVID at half its life and on every bundle change,
    /// and makes the client verifier follow the bundle's roots.
    pub(super) async fn keep_fresh(self, state: Arc<ServerState>, stop: watch::Receiver<bool>) {
        let roots = self.roots;
        let follow_roots = move |state: &ServerState| {
            roots.set(state.authorities().bundle().x509_authorities.clone());
        };
        server_svid::keep_fresh(
            state,
            self.resolver,
            RenewOn::AnyBundleChange,
            follow_roots,
            stop,
        )
        .await;
    }
}

/// Binds the admin socket, replacing a stale one, readable and writable by
/// the owner only.
pub(super) fn bind_admin_socket(path: &Path) -> Result<UnixListener, ServerError> {
    // Whoever can open this socket administers the trust domain: 0600, in a
    // directory (0700) that only the server's user controls.
    Ok(crate::runtime_dir::bind_socket(path, 0o600, 0o700)?)
}

/// A node API connection after its handshake, with its peer's slots.
pub(super) type NodeConn = GuardedIo<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

/// Where accepted node API connections go: agents (with a client
/// certificate) and anonymous peers (attesting) are served by different
/// servers with different limits.
pub(super) struct NodeConns {
    pub(super) authenticated: mpsc::Sender<NodeConn>,
    pub(super) anonymous: mpsc::Sender<NodeConn>,
}

/// How many node API connections one IP address may hold.
pub(super) struct NodePeerLimits {
    pub(super) any: Arc<PeerCounter<IpAddr>>,
    pub(super) anonymous: Arc<PeerCounter<IpAddr>>,
    pub(super) authenticated_conn: ConnLimits,
    pub(super) anonymous_conn: ConnLimits,
}

/// Accepts TCP connections and completes the TLS handshake off the accept
/// path, so one slow client cannot hold up the others. A peer over its
/// connection budget is closed at once (before the handshake, or right
/// after it for the smaller budget of peers without a client certificate).
pub(super) async fn accept_tls(
    listener: TcpListener,
    tls: NodeTls,
    limits: NodePeerLimits,
    conns: NodeConns,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    let limits = Arc::new(limits);
    let conns = Arc::new(conns);
    while let Some((tcp, peer)) = next_connection(&listener, &mut stop).await {
        let Some(slot) = limits.any.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, max = limits.any.max(), "node API: too many connections from this address; closing the new one");
            continue;
        };
        let (acceptor, conns, limits) = (acceptor.clone(), conns.clone(), limits.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    return tracing::debug!(%peer, error = %Chain(&e), "TLS handshake failed")
                }
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            if authenticated {
                let io = GuardedIo::new(
                    stream,
                    Box::new(slot),
                    limits.authenticated_conn,
                    peer.to_string(),
                );
                let _ = conns.authenticated.send(io).await;
                return;
            }
            let Some(anonymous) = limits.anonymous.try_acquire(peer.ip()) else {
                return tracing::warn!(%peer, max = limits.anonymous.max(),
                    "node API: too many connections without a client certificate from this address; closing the new one");
            };
            let io = GuardedIo::new(
                stream,
                Box::new((slot, anonymous)),
                limits.anonymous_conn,
                peer.to_string(),
            );
            let _ = conns.anonymous.send(io).await;
        });
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

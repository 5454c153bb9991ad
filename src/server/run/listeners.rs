//! The node API's TLS listener (its config follows the server SVID and the
//! bundle's roots) and the admin API's Unix socket (0600).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};

use super::ServerError;
use crate::errors::Chain;
use crate::server::server_svid::{self, RenewOn, Resolver};
use crate::server::state::ServerState;
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

/// Accepts TCP connections and completes the TLS handshake off the accept
/// path, so one slow client cannot hold up the others.
pub(super) async fn accept_tls(
    listener: TcpListener,
    tls: NodeTls,
    conns: mpsc::Sender<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = conns.send(stream).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %Chain(&e), "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

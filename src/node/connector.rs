//! A node's side of the node API: TLS to the server (checking that it is
//! `spiffe://<td>/herald/server` under the trust domain's roots), join-token
//! attestation without a client certificate, and mTLS with the agent SVID
//! for everything after.
//!
//! Several servers may serve one trust domain (`server_address` lists
//! them, or names them by DNS): each connection round resolves every
//! target and tries the candidates in turn, starting with the server of
//! the last connection, or the one after it once the caller said that
//! server failed ([`ServerConnector::fail_over`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use super::targets::{resolve_all, ServerTarget};
use crate::ca::KeyPair;
use crate::errors::Chain;
use crate::proto::node::node_client::NodeClient as Grpc;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::tls::{certified_key, provider, PeerError, Roots, ServerIdVerifier};

/// Why a node could not reach or use its server.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The server's SPIFFE ID cannot be formed in this trust domain.
    #[error("the server ID of the trust domain")]
    ServerId(#[source] crate::spiffe::IdError),
    /// TLS configuration failed.
    #[error("TLS setup")]
    Tls(#[source] rustls::Error),
    /// The connection failed.
    #[error("cannot connect to the server at {addr}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why (tonic keeps the useful part, e.g. a TLS alert, deep in
        /// the chain: print it with `errors::Chain`).
        source: tonic::transport::Error,
    },
    /// No server address is configured.
    #[error("no server address is configured")]
    NoTargets,
    /// None of the configured names resolved to an address.
    #[error("no server address resolves: {targets}")]
    Unresolved {
        /// The addresses, as configured.
        targets: String,
        /// The resolver's answer for the first.
        #[source]
        source: std::io::Error,
    },
}

impl NodeClientError {
    /// Whether a server answered with a certificate that does not chain
    /// to the roots we hold: what an agent sees when its trust bundle is
    /// stale (the server's CA changed while it was away).
    pub fn server_untrusted(&self) -> bool {
        let NodeClientError::Connect { source, .. } = self else {
            return false;
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source);
        while let Some(e) = cur {
            let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
                e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls {
                return untrusted_certificate(tls);
            }
            cur = e.source();
        }
        false
    }
}

/// A refusal of the server's certificate by the chain check (not by the
/// ID rule: a server with another SPIFFE ID is a wrong address, not a
/// stale bundle).
fn untrusted_certificate(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(_) => true,
        rustls::Error::Other(rustls::OtherError(inner)) => matches!(
            inner.downcast_ref::<PeerError>(),
            Some(PeerError::Chain(_) | PeerError::NoUsableRoot)
        ),
        _ => false,
    }
}

/// The agent's current credential: an SVID chain (leaf first) and its key.
/// Its Debug shows no key: [`KeyPair`]'s leaves it out.
#[derive(Clone, Debug)]
pub struct AgentCredential {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// DER chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The key.
    pub key: Arc<KeyPair>,
    /// The SVID's NotAfter.
    pub not_after: i64,
}

/// Builds connections to the servers of one trust domain. Clones share
/// the position (which server was used last).
#[derive(Debug, Clone)]
pub struct ServerConnector {
    targets: Arc<[ServerTarget]>,
    server_id: SpiffeId,
    roots: Roots,
    insecure: bool,
    position: Arc<Mutex<Position>>,
    /// The local address connections leave from (`None`: the system's choice).
    local: Option<IpAddr>,
}

/// Where the next connection round starts.
#[derive(Debug, Default)]
struct Position {
    /// The server of the last successful connection.
    current: Option<SocketAddr>,
    /// That server failed: start with the one after it.
    move_on: bool,
}

impl ServerConnector {
    /// Connections to the server of `td` at `addr`, trusting `roots`. With
    /// `insecure`, the server is not authenticated (development bootstrap).
    pub fn new(
        addr: SocketAddr,
        td: &TrustDomain,
        roots: Roots,
        insecure: bool,
    ) -> Result<Self, NodeClientError> {
        Self::with_targets(vec![addr.into()], td, roots, insecure)
    }

    /// Connections to any of the servers of `td` at `targets`, in order.
    pub fn with_targets(
        targets: Vec<ServerTarget>,
        td: &TrustDomain,
        roots: Roots,
        insecure: bool,
    ) -> Result<Self, NodeClientError> {
        if targets.is_empty() {
            return Err(NodeClientError::NoTargets);
        }
        let server_id =
            crate::registration::node_alias::server_id(td).map_err(NodeClientError::ServerId)?;
        Ok(ServerConnector {
            targets: targets.into(),
            server_id,
            roots,
            insecure,
            position: Arc::default(),
            local: None,
        })
    }

    /// The same connector, its connections leaving from `local` (any
    /// port): a node with several addresses choosing the one the server
    /// knows it by. The scale bench spreads a thousand simulated agents
    /// over loopback addresses this way, as they would arrive from a
    /// thousand hosts, each under the server's per-address limits.
    pub fn bind_local(mut self, local: IpAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// The server of the last successful connection.
    pub fn current(&self) -> Option<SocketAddr> {
        self.position().current
    }

    /// The current server failed: the next round starts with the next one.
    pub fn fail_over(&self) {
        self.position().move_on = true;
    }

    fn position(&self) -> std::sync::MutexGuard<'_, Position> {
        // A panic while holding it leaves a valid Position.
        self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The roots used to authenticate the server (updated on bundle changes).
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Stops trusting any server blindly (after the first attestation).
    pub fn secure(&mut self) {
        self.insecure = false;
    }

    /// A client with no certificate, for `Attest`.
    pub async fn anonymous(&self) -> Result<Grpc<Channel>, NodeClientError> {
        self.connect(None).await
    }

    /// A client authenticated with `cred`.
    pub async fn authenticated(
        &self,
        cred: &AgentCredential,
    ) -> Result<Grpc<Channel>, NodeClientError> {
        self.connect(Some(cred)).await
    }

    /// The TLS client config: the server checked by SPIFFE ID, and a
    /// client certificate only when `cred` is given.
    fn tls_config(
        &self,
        cred: Option<&AgentCredential>,
    ) -> Result<rustls::ClientConfig, NodeClientError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(NodeClientError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerIdVerifier::new(
                self.roots.clone(),
                self.server_id.clone(),
                self.insecure,
            )));
        let mut config = match cred {
            Some(c) => {
                let (chain, key) = certified_key(&c.chain, c.key.pkcs8_der());
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(NodeClientError::Tls)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// One connection round: every candidate in turn, from where the last
    /// round left off. On failure, the error of a server we do not trust
    /// if there was one (it calls for a re-bootstrap), else the last.
    async fn connect(
        &self,
        cred: Option<&AgentCredential>,
    ) -> Result<Grpc<Channel>, NodeClientError> {
        let config = Arc::new(self.tls_config(cred)?);
        let (candidates, mut unresolved) = resolve_all(&self.targets).await;
        if candidates.is_empty() {
            let (_, source) = unresolved.remove(0);
            let targets: Vec<String> = self.targets.iter().map(|t| t.to_string()).collect();
            return Err(NodeClientError::Unresolved {
                targets: targets.join(", "),
                source,
            });
        }
        let start = {
            let p = self.position();
            p.current
                .and_then(|c| candidates.iter().position(|a| *a == c))
                .map_or(0, |i| i + usize::from(p.move_on))
        };
        let mut failure: Option<NodeClientError> = None;
        for k in 0..candidates.len() {
            let addr = candidates[(start + k) % candidates.len()];
            match self.connect_to(addr, config.clone()).await {
                Ok(client) => {
                    *self.position() = Position {
                        current: Some(addr),
                        move_on: false,
                    };
                    return Ok(client);
                }
                Err(e) => {
                    if candidates.len() > 1 {
                        tracing::debug!(server = %addr, error = %Chain(&e), "cannot connect to this server; trying the next");
                    }
                    if !failure.as_ref().is_some_and(|f| f.server_untrusted()) {
                        failure = Some(e);
                    }
                }
            }
        }
        // The loop ran at least once: candidates is not empty.
        Err(failure.unwrap_or(NodeClientError::NoTargets))
    }

    /// One connection to the server at `addr`.
    async fn connect_to(
        &self,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Grpc<Channel>, NodeClientError> {
        let connector = tokio_rustls::TlsConnector::from(config);
        let local = self.local;
        let channel = Endpoint::from_static("http://herald-server")
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                async move {
                    let tcp = match local {
                        None => tokio::net::TcpStream::connect(addr).await?,
                        Some(ip) => {
                            let socket = match ip {
                                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                            };
                            socket.bind(SocketAddr::new(ip, 0))?;
                            socket.connect(addr).await?
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    // The verifier checks the SPIFFE ID, not this name.
                    let name = ServerName::IpAddress(addr.ip().into());
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|source| NodeClientError::Connect { addr, source })?;
        Ok(Grpc::new(channel)
            .max_decoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE)
            .max_encoding_message_size(crate::proto::NODE_MAX_MESSAGE_SIZE))
    }
}

#[cfg(test)]
#[path = "connector_tests.rs"]
mod tests;

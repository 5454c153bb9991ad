//! A node's side of the node API: TLS to the server (checking that it is
//! `spiffe://<td>/herald/server` under the trust domain's roots), join-token
//! attestation without a client certificate, and mTLS with the agent SVID
//! for everything after.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::ca::KeyPair;
use crate::proto::node::node_client::NodeClient as Grpc;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::tls::{certified_key, provider, Roots, ServerIdVerifier};

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

/// Builds connections to one server.
#[derive(Debug, Clone)]
pub struct ServerConnector {
    addr: SocketAddr,
    server_id: SpiffeId,
    roots: Roots,
    insecure: bool,
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
        let server_id =
            crate::registration::node_alias::server_id(td).map_err(NodeClientError::ServerId)?;
        Ok(ServerConnector {
            addr,
            server_id,
            roots,
            insecure,
        })
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

    async fn connect(
        &self,
        cred: Option<&AgentCredential>,
    ) -> Result<Grpc<Channel>, NodeClientError> {
        let config = self.tls_config(cred)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = self.addr;
        let channel = Endpoint::from_static("http://herald-server")
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
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
mod tests {
    use super::*;
    use crate::ca::x509::{SvidRequest, X509Authority};
    use crate::ca::KeyType;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn connector(addr: SocketAddr) -> ServerConnector {
        ServerConnector::new(addr, &td(), Roots::default(), false).unwrap()
    }

    fn credential() -> AgentCredential {
        let now = crate::clock::now_unix();
        let ca_key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
        let ca = X509Authority::self_signed(&td(), ca_key, 3_600, now).unwrap();
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let spiffe_id = SpiffeId::new(&td(), "/agent").unwrap();
        let leaf = ca
            .sign_svid(
                &SvidRequest {
                    spiffe_id: &spiffe_id,
                    public_key_spki: &key.public_key_spki(),
                    ttl_secs: 600,
                    dns_names: &[],
                },
                now,
            )
            .unwrap();
        AgentCredential {
            spiffe_id,
            chain: leaf.chain,
            key: Arc::new(key),
            not_after: leaf.not_after,
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_naming_the_address() {
        // Bind, note the port, close it: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connector(addr).anonymous().await.unwrap_err();
        match &err {
            NodeClientError::Connect { addr: named, .. } => assert_eq!(*named, addr),
            other => panic!("expected a Connect error, got {other:?}"),
        }
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the transport error is kept"
        );
        let err = connector(addr)
            .authenticated(&credential())
            .await
            .unwrap_err();
        assert!(matches!(err, NodeClientError::Connect { .. }), "{err:?}");
    }

    #[test]
    fn only_the_authenticated_config_presents_the_credential() {
        let c = connector("127.0.0.1:1".parse().unwrap());
        let anonymous = c.tls_config(None).unwrap();
        assert!(!anonymous.client_auth_cert_resolver.has_certs());
        assert_eq!(anonymous.alpn_protocols, [b"h2".to_vec()]);

        let cred = credential();
        let authenticated = c.tls_config(Some(&cred)).unwrap();
        assert!(authenticated.client_auth_cert_resolver.has_certs());
        assert_eq!(authenticated.alpn_protocols, [b"h2".to_vec()]);
        let schemes = [rustls::SignatureScheme::ECDSA_NISTP256_SHA256];
        let presented = authenticated
            .client_auth_cert_resolver
            .resolve(&[], &schemes)
            .expect("a client certificate is offered");
        let chain: Vec<Vec<u8>> = presented.cert.iter().map(|c| c.to_vec()).collect();
        assert_eq!(chain, cred.chain);
    }

    #[test]
    fn the_server_id_is_the_trust_domain_s_herald_server() {
        let c = connector("127.0.0.1:1".parse().unwrap());
        assert_eq!(c.server_id.as_str(), "spiffe://example.org/herald/server");
    }
}

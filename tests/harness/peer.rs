//! In-process servers: a [`Peer`] is the state of a server of one trust
//! domain over a temp store and in-memory keys (no processes, no node
//! API), and [`serve_unix`] puts any of its gRPC services on a Unix socket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use herald::ca::{KeyPair, KeyType, MemoryKeyManager, SvidRequest};
use herald::clock::now_unix;
use herald::server::authorities::{Authorities, CaSettings};
use herald::server::federation::{
    serve_bundle_endpoint, spawn_refresher_with, BundleEndpointConfig, EndpointProfile,
    RefresherHandle, RefresherSettings, WebRoots,
};
use herald::server::metrics::ServerMetrics;
use herald::server::state::{ServerSettings, ServerState};
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use herald::store::SledStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Channel;

use super::web::{tls_server_config, WebCa};

/// A server of one trust domain: its state over a temp store.
pub struct Peer {
    pub dirs: Vec<tempfile::TempDir>,
    pub td: TrustDomain,
    pub state: Arc<ServerState>,
    pub keys: Arc<MemoryKeyManager>,
    pub shutdown: watch::Sender<bool>,
}

/// A fresh store in a temp dir of its own, and the authorities in it.
fn new_store(
    keys: &MemoryKeyManager,
    td: &TrustDomain,
) -> (tempfile::TempDir, SledStore, Authorities) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let store = SledStore::open(&dir.path().join("store")).expect("open the store");
    let authorities =
        Authorities::load_or_create(&store, keys, td, CaSettings::default(), now_unix())
            .expect("create the authorities");
    (dir, store, authorities)
}

impl Peer {
    pub fn new(td: &str) -> Peer {
        let keys = Arc::new(MemoryKeyManager::default());
        let td = TrustDomain::new(td).expect("a trust domain name");
        let (dir, store, authorities) = new_store(&keys, &td);
        let state = ServerState::new(
            td.clone(),
            Arc::new(store),
            keys.clone(),
            authorities,
            ServerSettings::default(),
            ServerMetrics::default(),
        );
        let (shutdown, _) = watch::channel(false);
        Peer {
            dirs: vec![dir],
            td,
            state,
            keys,
            shutdown,
        }
    }

    /// The peer's first temp dir (its store lives there too).
    pub fn dir(&self) -> &Path {
        self.dirs[0].path()
    }

    pub fn stop(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The bundle this peer serves (without the endpoint's refresh hint).
    pub fn bundle(&self) -> Bundle {
        self.state.authorities().bundle().clone()
    }

    /// Replaces the peer's CA with a brand-new one (an abrupt rotation).
    pub fn rotate(&mut self) {
        let (dir, _store, authorities) = new_store(&self.keys, &self.td);
        self.dirs.push(dir);
        self.state.set_authorities(authorities);
    }

    /// Starts this peer's federation refresher, trusting `web_roots` for
    /// https_web endpoints; it stops with the peer.
    pub fn spawn_refresher(
        &self,
        web_roots: WebRoots,
        settings: RefresherSettings,
    ) -> (RefresherHandle, tokio::task::JoinHandle<()>) {
        spawn_refresher_with(self.state.clone(), web_roots, settings, self.stop())
    }

    /// Serves the bundle endpoint with the https_spiffe profile.
    pub async fn serve_spiffe(&self, refresh_hint_secs: u64) -> SocketAddr {
        self.serve_endpoint(EndpointProfile::HttpsSpiffe, refresh_hint_secs)
            .await
    }

    /// Serves the bundle endpoint with the https_web profile and `ca`'s leaf.
    pub async fn serve_web(&self, ca: &WebCa, refresh_hint_secs: u64) -> SocketAddr {
        let profile = EndpointProfile::HttpsWeb {
            cert_path: ca.cert_path.clone(),
            key_path: ca.key_path.clone(),
        };
        self.serve_endpoint(profile, refresh_hint_secs).await
    }

    async fn serve_endpoint(&self, profile: EndpointProfile, refresh_hint_secs: u64) -> SocketAddr {
        serve_bundle_endpoint(
            self.state.clone(),
            BundleEndpointConfig {
                address: "127.0.0.1:0".parse().expect("an address"),
                profile,
                refresh_hint_secs,
            },
            self.stop(),
        )
        .await
        .expect("serve the bundle endpoint")
    }

    /// A TLS server config presenting an SVID of this peer for `path`.
    pub fn svid_server_config(&self, path: &str) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let id = SpiffeId::new(&self.td, path).unwrap();
        let spki = key.public_key_spki();
        let cert = self
            .state
            .authorities()
            .x509()
            .sign_svid(
                &SvidRequest {
                    spiffe_id: &id,
                    public_key_spki: &spki,
                    ttl_secs: 600,
                    dns_names: &[],
                },
                now_unix(),
            )
            .unwrap();
        let chain = cert
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
        tls_server_config(chain, key)
    }
}

/// Serves `routes` on a new Unix socket at `socket`, in the background of
/// the current tokio runtime, and returns a channel to it.
pub async fn serve_unix(routes: Routes, socket: &Path) -> Channel {
    let listener = tokio::net::UnixListener::bind(socket).expect("bind the Unix socket");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    herald::uds::connect_unix(socket)
        .await
        .expect("connect to the Unix socket")
}

//! An agent-like node API client: attests with a join token as
//! `herald agent run` does, then holds the agent SVID for mTLS calls. For
//! tests and benches that need an agent the server sees but whose every
//! step they control (one that never acknowledges a bundle, or thousands
//! of issuance calls without a Workload API in between).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use herald::ca::{KeyPair, KeyType};
use herald::node::make_csr;
use herald::node::{AgentCredential, ServerConnector};
use herald::proto::node;
use herald::spiffe::{SpiffeId, TrustDomain};
use herald::tls::Roots;

use super::cluster::Server;

/// What an agent holds after attesting: the connector and its SVID.
pub struct NodeAgent {
    pub id: SpiffeId,
    pub connector: ServerConnector,
    pub cred: AgentCredential,
}

impl NodeAgent {
    /// Attests to the server of `td` at `node_addr`, trusting `roots` (DER):
    /// a join token, a CSR, `Attest` over server-authenticated TLS without
    /// a client certificate.
    pub async fn attest(
        node_addr: SocketAddr,
        td: &TrustDomain,
        roots: Vec<Vec<u8>>,
        join_token: &str,
    ) -> NodeAgent {
        let connector = ServerConnector::new(node_addr, td, Roots::new(roots), false).unwrap();
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let csr = make_csr(&key).unwrap();
        let resp = connector
            .anonymous()
            .await
            .unwrap()
            .attest(node::AttestRequest {
                join_token: join_token.to_string(),
                x509pop: None,
                k8s_psat: None,
                csr,
            })
            .await
            .expect("Attest")
            .into_inner();
        let facts = herald::ca::x509::cert_facts(&resp.svid_chain[0]).unwrap();
        let id = SpiffeId::parse(&resp.spiffe_id).unwrap();
        NodeAgent {
            cred: AgentCredential {
                spiffe_id: id.clone(),
                chain: resp.svid_chain,
                key: Arc::new(key),
                not_after: facts.not_after,
            },
            id,
            connector,
        }
    }

    /// Attests to the running `server` with a fresh join token, trusting
    /// the roots of its bundle.
    pub async fn join(server: &Server) -> NodeAgent {
        let (token, _) = server.join_token();
        let td = TrustDomain::new(&server.td).unwrap();
        let pem = server.bundle_pem();
        let roots = rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
            .map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.unwrap().to_vec())
            .collect();
        NodeAgent::attest(server.node_addr, &td, roots, &token).await
    }

    /// Opens the Sync stream as this agent (over mTLS).
    pub async fn sync(&self) -> tonic::Streaming<node::SyncUpdate> {
        self.connector
            .authenticated(&self.cred)
            .await
            .unwrap()
            .sync(node::SyncRequest::default())
            .await
            .expect("Sync")
            .into_inner()
    }
}

/// Which federated bundle a test waits for.
type Wanted = Arc<dyn Fn(&node::Bundle) -> bool + Send + Sync>;

/// Agents holding Sync streams open, each reading its messages in a task
/// and counting those that carry the federated bundle a test waits for.
pub struct SyncStreams {
    joined: usize,
    synced: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    wanted: Arc<RwLock<Wanted>>,
}

impl SyncStreams {
    pub fn new() -> SyncStreams {
        SyncStreams {
            joined: 0,
            synced: Arc::default(),
            received: Arc::default(),
            wanted: Arc::new(RwLock::new(Arc::new(|_: &node::Bundle| false))),
        }
    }

    /// Attests `n` more agents to `server`, opens their streams, and waits
    /// for their snapshots.
    pub fn join(&mut self, rt: &tokio::runtime::Runtime, server: &Server, n: usize) {
        for _ in 0..n {
            let agent = rt.block_on(NodeAgent::join(server));
            let mut stream = rt.block_on(agent.sync());
            let (synced, received, wanted) = (
                self.synced.clone(),
                self.received.clone(),
                self.wanted.clone(),
            );
            rt.spawn(async move {
                let _agent = agent;
                while let Some(Ok(update)) = stream.next().await {
                    synced.fetch_add(usize::from(update.complete), Ordering::SeqCst);
                    let wanted = wanted.read().unwrap().clone();
                    let hit = update.federated_bundles.iter().any(|b| wanted(b));
                    received.fetch_add(usize::from(hit), Ordering::SeqCst);
                }
            });
        }
        self.joined += n;
        wait_for(&self.synced, self.joined, "snapshots");
    }

    /// Counts, from now on, the messages carrying a bundle `wanted` accepts.
    pub fn expect(
        &mut self,
        wanted: impl Fn(&node::Bundle) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        *self.wanted.write().unwrap() = Arc::new(wanted);
        self.received.store(0, Ordering::SeqCst);
        self
    }

    /// Waits until every stream has received the bundle expected.
    pub fn wait(&self) {
        wait_for(&self.received, self.joined, "streams holding the bundle");
    }
}

fn wait_for(counter: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "{what}: {counter:?} of {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

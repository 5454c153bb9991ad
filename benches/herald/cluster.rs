//! Servers and agents for the benchmarks: the real `server::run::start`
//! and `agent::run::start` on their own tokio runtimes (so CPU time splits
//! by thread name), real `herald server run` and `herald agent run`
//! processes where a role's own CPU time and peak RSS matter, the admin API
//! over its Unix socket, and enrollment of an agent-like node API client
//! for driving issuance directly. Configuration files, processes and the
//! node client are the test harness's (`tests/harness/`), so benches and
//! tests start Herald the same way.

use herald::config::ConfigFile as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use herald::agent::run::AgentHandle;
use herald::clock::now_unix;
use herald::config::{AgentConfig, ServerConfig};
use herald::proto::admin::{
    self, agents_client::AgentsClient, bundles_client::BundlesClient, entries_client::EntriesClient,
};
use herald::server::run::ServerHandle;
use herald::server::state::ServerState;
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use herald::store::JoinToken;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

pub use crate::harness::config::TRUST_DOMAIN;
use crate::harness::config::{AgentToml, ServerToml};
use crate::harness::node::NodeAgent;
use crate::harness::process::Proc;

pub fn trust_domain() -> TrustDomain {
    TrustDomain::new(TRUST_DOMAIN).unwrap()
}

/// A multi-threaded runtime whose every thread (workers and blocking pool)
/// is named `name`, and whose blocking threads outlive the run, so that
/// per-thread CPU readings lose nothing.
pub fn runtime(name: &'static str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap()
}

/// One runtime per role.
pub struct Runtimes {
    pub server: Runtime,
    pub agent: Runtime,
    pub bench: Runtime,
}

impl Runtimes {
    pub fn new() -> Runtimes {
        Runtimes {
            server: runtime("server"),
            agent: runtime("agent"),
            bench: runtime("bench"),
        }
    }

    pub fn stop(self) {
        self.bench.shutdown_timeout(Duration::from_secs(2));
        self.agent.shutdown_timeout(Duration::from_secs(2));
        self.server.shutdown_timeout(Duration::from_secs(2));
    }
}

// === server ===

/// What an agent needs to join a server: where it listens, a single-use
/// join token (for a fixed agent ID) and the roots to trust it by.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub node_addr: SocketAddr,
    pub token: String,
    pub agent_id: SpiffeId,
    pub bootstrap_pem: String,
}

fn agent_id(name: &str) -> SpiffeId {
    SpiffeId::new(&trust_domain(), &format!("/herald/agent/{name}")).unwrap()
}

fn roots_pem(roots: &[Vec<u8>]) -> String {
    roots
        .iter()
        .map(|c| herald::ca::keys::der_to_pem(c, "CERTIFICATE"))
        .collect()
}

/// An in-process server.
pub struct Server {
    pub handle: ServerHandle,
    pub state: Arc<ServerState>,
    /// The PostgreSQL database of a `HERALD_BENCH_STORE=postgres` run.
    _db: Option<herald::store::postgres::test_database::TempDatabase>,
}

impl Server {
    /// Starts `server::run::start` on the server runtime, data in `dir`.
    pub fn start(rts: &Runtimes, dir: &Path) -> Server {
        let db = crate::backend::Backend::from_env().database();
        let mut toml = ServerToml::new(dir).log_level("off");
        if let Some(db) = &db {
            toml = toml.extra(&crate::harness::postgres::store_table(db, dir));
        }
        let config = ServerConfig::parse(&toml.path(), &toml.render()).expect("server config");
        let handle = rts
            .server
            .block_on(herald::server::run::start(&config))
            .expect("the server starts");
        Server {
            state: handle.state.clone(),
            handle,
            _db: db,
        }
    }

    /// A join token for `/herald/agent/<name>`, written to the store directly.
    pub fn enroll(&self, rts: &Runtimes, name: &str) -> Enrollment {
        let agent_id = agent_id(name);
        let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let record = JoinToken {
            token: token.clone(),
            expires_at: now_unix() + 600,
            agent_id: Some(agent_id.clone()),
        };
        rts.bench
            .block_on(self.state.with_store(move |s| s.create_join_token(record)))
            .unwrap();
        Enrollment {
            node_addr: self.handle.node_addr,
            token,
            agent_id,
            bootstrap_pem: roots_pem(&self.state.authorities().bundle().x509_authorities),
        }
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.handle.admin_socket.clone()
    }

    pub fn stop(self, rts: &Runtimes) {
        rts.server.block_on(self.handle.shutdown());
    }
}

/// A `herald server run` process.
pub struct ServerProcess(pub crate::harness::cluster::Server);

impl ServerProcess {
    /// Starts the binary cargo built beside this bench, data in `dir`.
    pub fn spawn(dir: &Path) -> ServerProcess {
        let toml = ServerToml::new(dir);
        ServerProcess(crate::harness::cluster::Server::start_within(
            &toml,
            Duration::from_secs(60),
        ))
    }

    pub fn pid(&self) -> u32 {
        self.0.proc.pid()
    }

    pub fn admin_socket(&self) -> &Path {
        &self.0.admin_socket
    }

    /// A join token for `/herald/agent/<name>` and the bundle, through the admin API.
    pub fn enroll(&self, rts: &Runtimes, name: &str) -> Enrollment {
        let agent_id = agent_id(name);
        let channel = rts.bench.block_on(uds_channel(self.admin_socket()));
        let token = rts
            .bench
            .block_on(AgentsClient::new(channel.clone()).create_join_token(
                admin::CreateJoinTokenRequest {
                    ttl: 600,
                    token: String::new(),
                    agent_id: agent_id.to_string(),
                },
            ))
            .expect("CreateJoinToken")
            .into_inner()
            .value;
        let bundle = rts
            .bench
            .block_on(BundlesClient::new(channel).get_bundle(admin::GetBundleRequest {}))
            .expect("GetBundle")
            .into_inner();
        let bundle = Bundle::from_spiffe_json(trust_domain(), bundle.spiffe_json.as_bytes())
            .expect("bundle JSON");
        Enrollment {
            node_addr: self.0.node_addr,
            token,
            agent_id,
            bootstrap_pem: roots_pem(&bundle.x509_authorities),
        }
    }
}

// === agents ===

/// The configuration of an agent living in `dir`, written; its path and parsed form.
fn agent_config(e: &Enrollment, dir: &Path, log_level: &str) -> (PathBuf, AgentConfig) {
    let toml = AgentToml::new(
        dir,
        TRUST_DOMAIN,
        &e.node_addr.to_string(),
        &e.bootstrap_pem,
    )
    .join_token(Some(&e.token))
    .log_level(log_level);
    let path = toml.write();
    let config = AgentConfig::parse(&path, &toml.render()).expect("agent config");
    (path, config)
}

/// Starts `agent::run::start` on the agent runtime.
pub fn start_agent(rts: &Runtimes, e: &Enrollment, dir: &Path) -> AgentHandle {
    let (_, config) = agent_config(e, dir, "off");
    rts.agent
        .block_on(herald::agent::run::start(&config))
        .expect("the agent starts")
}

/// Starts a `herald agent run` process, not waited on.
pub fn spawn_agent(e: &Enrollment, dir: &Path, log_level: &str) -> Proc {
    let (path, _) = agent_config(e, dir, log_level);
    crate::harness::cluster::spawn_role("agent", &path)
}

// === clients ===

/// A gRPC channel over a Unix socket (admin API, Workload API).
pub async fn uds_channel(path: &Path) -> Channel {
    herald::uds::connect_unix(path)
        .await
        .expect("connect to the Unix socket")
}

/// The admin API's Entries service over the admin socket.
pub async fn admin_entries(socket: &Path) -> EntriesClient<Channel> {
    EntriesClient::new(uds_channel(socket).await)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// A registration entry for `spiffe://example.org<path>` under `parent`,
/// matching workloads with selector `unix:<selector>`.
pub fn entry(path: &str, parent: &SpiffeId, selector: &str, x509_ttl: i32) -> admin::Entry {
    admin::Entry {
        spiffe_id: format!("spiffe://{TRUST_DOMAIN}{path}"),
        parent_id: parent.to_string(),
        selectors: vec![admin::Selector {
            r#type: "unix".into(),
            value: selector.into(),
        }],
        x509_svid_ttl: x509_ttl,
        ..Default::default()
    }
}

/// Creates entries through BatchCreateEntry, `chunk` per call; their ids.
pub async fn create_entries(
    client: &mut EntriesClient<Channel>,
    entries: Vec<admin::Entry>,
    chunk: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(entries.len());
    for part in entries.chunks(chunk) {
        let resp = client
            .batch_create_entry(admin::BatchCreateEntryRequest {
                entries: part.to_vec(),
            })
            .await
            .expect("BatchCreateEntry")
            .into_inner();
        for r in resp.results {
            let status = r.status.unwrap_or_default();
            assert_eq!(status.code, 0, "entry refused: {}", status.message);
            ids.push(r.entry.expect("created entry").id);
        }
    }
    ids
}

/// Creates the entry `path` of `entry(path, parent, selector, 0)` alone;
/// its id (for deleting it) and its SPIFFE ID (to watch streams for).
pub async fn create_one(
    client: &mut EntriesClient<Channel>,
    path: &str,
    parent: &SpiffeId,
    selector: &str,
) -> (Vec<String>, String) {
    let ids = create_entries(client, vec![entry(path, parent, selector, 0)], 1).await;
    (ids, format!("spiffe://{TRUST_DOMAIN}{path}"))
}

/// Deletes entries through BatchDeleteEntry.
pub async fn delete_entries(client: &mut EntriesClient<Channel>, ids: Vec<String>) {
    let resp = client
        .batch_delete_entry(admin::BatchDeleteEntryRequest { ids })
        .await
        .expect("BatchDeleteEntry")
        .into_inner();
    for r in resp.results {
        let status = r.status.unwrap_or_default();
        assert_eq!(status.code, 0, "delete refused: {}", status.message);
    }
}

/// Attests like `herald agent run` does, with `e`'s join token.
pub async fn attest(e: &Enrollment) -> NodeAgent {
    let roots = herald::ca::keys::pem_blocks(&e.bootstrap_pem, "CERTIFICATE").unwrap();
    NodeAgent::attest(e.node_addr, &trust_domain(), roots, &e.token).await
}

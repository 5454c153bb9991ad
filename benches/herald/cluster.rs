//! Servers and agents for the benchmarks: the real `server::run::start`
//! and `agent::run::start` on their own tokio runtimes (so CPU time splits
//! by thread name), real `herald server run` and `herald agent run`
//! processes where a role's own CPU time and peak RSS matter, the admin API
//! over its Unix socket, and an agent-like node API client (join-token
//! attestation, then mTLS) for driving issuance directly.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use herald::agent::manager::make_csr;
use herald::agent::node_client::{AgentCredential, ServerConnector};
use herald::agent::run::AgentHandle;
use herald::ca::{KeyPair, KeyType};
use herald::config::{AgentConfig, ServerConfig};
use herald::proto::admin::{
    self, agents_client::AgentsClient, bundles_client::BundlesClient, entries_client::EntriesClient,
};
use herald::proto::node;
use herald::server::run::ServerHandle;
use herald::server::state::{now_unix, ServerState};
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use herald::store::JoinToken;
use herald::tls::Roots;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

pub const TRUST_DOMAIN: &str = "example.org";

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

/// A fresh directory under cargo's `target/tmp` (a real disk, so fsync is
/// real; short enough for Unix socket paths).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap()
}

/// The effective uid of this process: what SO_PEERCRED reports to the agent.
pub fn my_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

/// The server configuration every bench server uses; keys not named take
/// the defaults `herald server run` would use.
fn server_toml(dir: &Path, log_level: &str) -> String {
    format!(
        "trust_domain = \"{TRUST_DOMAIN}\"\ndata_dir = \"{}\"\nbind_address = \"127.0.0.1:0\"\n\
         admin_socket = \"{}\"\nlog_level = \"{log_level}\"\n",
        dir.join("server").display(),
        dir.join("admin.sock").display(),
    )
}

/// An in-process server.
pub struct Server {
    pub handle: ServerHandle,
    pub state: Arc<ServerState>,
}

impl Server {
    /// Starts `server::run::start` on the server runtime, data in `dir`.
    pub fn start(rts: &Runtimes, dir: &Path) -> Server {
        let text = server_toml(dir, "off");
        let config = ServerConfig::parse(&dir.join("server.toml"), &text).expect("server config");
        let handle = rts
            .server
            .block_on(herald::server::run::start(&config))
            .expect("the server starts");
        Server {
            state: handle.state.clone(),
            handle,
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
pub struct ServerProcess {
    pub proc: Proc,
    pub node_addr: SocketAddr,
    pub admin_socket: PathBuf,
}

impl ServerProcess {
    /// Starts the binary cargo built beside this bench, data in `dir`.
    pub fn spawn(dir: &Path) -> ServerProcess {
        let path = dir.join("server.toml");
        std::fs::write(&path, server_toml(dir, "info")).unwrap();
        let mut proc = Proc::spawn("server", &path);
        let (_, line) = proc.wait_for_line("server listening", Duration::from_secs(60));
        let node_addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("node_api="))
            .expect("node_api= in the listening line")
            .parse()
            .unwrap();
        ServerProcess {
            proc,
            node_addr,
            admin_socket: dir.join("admin.sock"),
        }
    }

    /// A join token for `/herald/agent/<name>` and the bundle, through the admin API.
    pub fn enroll(&self, rts: &Runtimes, name: &str) -> Enrollment {
        let agent_id = agent_id(name);
        let channel = rts.bench.block_on(uds_channel(&self.admin_socket));
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
            node_addr: self.node_addr,
            token,
            agent_id,
            bootstrap_pem: roots_pem(&bundle.x509_authorities),
        }
    }
}

// === agents ===

/// Writes the configuration of an agent living in `dir`; its path.
fn agent_config(e: &Enrollment, dir: &Path, log_level: &str) -> (PathBuf, AgentConfig) {
    std::fs::create_dir_all(dir).unwrap();
    let bootstrap = dir.join("bootstrap.pem");
    std::fs::write(&bootstrap, &e.bootstrap_pem).unwrap();
    let text = format!(
        "trust_domain = \"{TRUST_DOMAIN}\"\nserver_address = \"{}\"\ndata_dir = \"{}\"\n\
         socket_path = \"{}\"\ntrust_bundle_path = \"{}\"\njoin_token = \"{}\"\nlog_level = \"{log_level}\"\n",
        e.node_addr,
        dir.join("data").display(),
        dir.join("api.sock").display(),
        bootstrap.display(),
        e.token,
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, &text).unwrap();
    let config = AgentConfig::parse(&path, &text).expect("agent config");
    (path, config)
}

/// Starts `agent::run::start` on the agent runtime.
pub fn start_agent(rts: &Runtimes, e: &Enrollment, dir: &Path) -> AgentHandle {
    let (_, config) = agent_config(e, dir, "off");
    rts.agent
        .block_on(herald::agent::run::start(&config))
        .expect("the agent starts")
}

/// Starts a `herald agent run` process.
pub fn spawn_agent(e: &Enrollment, dir: &Path, log_level: &str) -> Proc {
    let (path, _) = agent_config(e, dir, log_level);
    Proc::spawn("agent", &path)
}

/// A `herald server run` or `herald agent run` process whose stderr lines
/// arrive, time-stamped on receipt, on a channel.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    log: Vec<(Instant, String)>,
}

impl Proc {
    /// `herald <role> run --config <config>`, with the binary cargo built
    /// beside this bench.
    fn spawn(role: &str, config: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([role, "run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("bench-{role}-log"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Proc {
            child,
            lines,
            log: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stderr line containing `needle` (already received or
    /// waited for): when it arrived, and the line.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> (Instant, String) {
        if let Some(hit) = self.log.iter().find(|(_, l)| l.contains(needle)) {
            return hit.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.log.push((at, line.clone()));
                    if line.contains(needle) {
                        return (at, line);
                    }
                }
                Err(_) => {
                    let log: Vec<&str> = self.log.iter().map(|(_, l)| l.as_str()).collect();
                    panic!(
                        "no log line containing {needle:?} within {timeout:?}; the log:\n{}",
                        log.join("\n")
                    )
                }
            }
        }
    }
}

impl Drop for Proc {
    /// Kills the process (it is ours) and reaps it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === clients ===

/// A gRPC channel over a Unix socket (admin API, Workload API).
pub async fn uds_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
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

/// What an agent holds after attesting: the connector and its SVID.
pub struct NodeAgent {
    pub id: SpiffeId,
    pub connector: ServerConnector,
    pub cred: AgentCredential,
}

impl NodeAgent {
    /// Attests like `herald agent run` does: a join token, a CSR, `Attest`
    /// over server-authenticated TLS without a client certificate.
    pub async fn attest(e: &Enrollment) -> NodeAgent {
        let roots = herald::ca::keys::pem_blocks(&e.bootstrap_pem, "CERTIFICATE").unwrap();
        let connector =
            ServerConnector::new(e.node_addr, &trust_domain(), Roots::new(roots), false).unwrap();
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        let csr = make_csr(&key).unwrap();
        let mut client = connector.anonymous().await.unwrap();
        let resp = client
            .attest(node::AttestRequest {
                join_token: e.token.clone(),
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
}

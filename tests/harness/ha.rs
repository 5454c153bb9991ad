//! Several `herald server` processes of one trust domain on one PostgreSQL
//! database, each with its ops listener (readiness, metrics); SQL run
//! straight on that database; and [`PgProxy`], a TCP proxy in front of
//! PostgreSQL that a test cuts and restores to play an outage without
//! touching the machine's PostgreSQL. Also what tests of several servers
//! wait for: one bundle on every server, an update on a Sync stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use herald::proto::node;
use herald::store::postgres::test_database::TempDatabase;
use tokio::net::{TcpListener, TcpStream};

use super::cluster::Server;
use super::config::ServerToml;
use super::node::NodeAgent;
use super::ops::{get, loopback, ops_table, scrape, value};
use super::postgres::store_table_url;

/// One server of the trust domain and its ops listener.
pub struct HaServer {
    pub server: Server,
    pub ops: SocketAddr,
}

/// The configuration of server `i` under `root`, its store at `url`.
pub fn ha_toml(root: &Path, i: usize, url: &str) -> (ServerToml, SocketAddr) {
    let dir = root.join(format!("server{i}"));
    let ops = loopback();
    let toml = ServerToml::new(&dir)
        .extra(&store_table_url(url, &dir))
        .extra(&ops_table(ops));
    (toml, ops)
}

/// `n` servers on `db`, started at the same moment.
pub fn start_ha(root: &Path, db: &TempDatabase, n: usize) -> Vec<HaServer> {
    start_ha_on(root, db.url_text(), n)
}

/// `n` servers on the database at `url`, started at the same moment.
pub fn start_ha_on(root: &Path, url: &str, n: usize) -> Vec<HaServer> {
    let (tomls, ops): (Vec<ServerToml>, Vec<SocketAddr>) =
        (0..n).map(|i| ha_toml(root, i, url)).unzip();
    Server::start_many(&tomls)
        .into_iter()
        .zip(ops)
        .map(|(server, ops)| HaServer { server, ops })
        .collect()
}

/// `n` servers on `db`, returned once all publish one bundle with each
/// one's CA and each follows the change feed.
pub fn start_ha_ready(root: &Path, db: &TempDatabase, n: usize) -> Vec<HaServer> {
    start_ha_ready_on(root, db.url_text(), n)
}

/// Like [`start_ha_ready`], on the database at `url`.
pub fn start_ha_ready_on(root: &Path, url: &str, n: usize) -> Vec<HaServer> {
    let servers = start_ha_on(root, url, n);
    wait_one_bundle_of(&servers, n);
    wait_feeds(&servers);
    servers
}

/// A node agent attested to `server`, its Sync stream open past the
/// first snapshot.
pub fn synced_agent(
    rt: &tokio::runtime::Runtime,
    server: &Server,
) -> (NodeAgent, tonic::Streaming<node::SyncUpdate>) {
    rt.block_on(async {
        let agent = NodeAgent::join(server).await;
        let mut sync = agent.sync().await;
        next_update(&mut sync, "snapshot", |u| u.complete).await;
        (agent, sync)
    })
}

/// The value of counter or gauge `name` with `labels` (0 when absent).
pub fn metric(ops: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&scrape(ops), name, labels).unwrap_or(0.0)
}

/// Waits up to `within` for `done`, polling every 50 ms; whether it held.
pub fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until each server's change feed has started reading (it counts
/// its first resync), so that nothing written afterwards predates it.
pub fn wait_feeds(servers: &[HaServer]) {
    for (i, s) in servers.iter().enumerate() {
        let started = eventually(Duration::from_secs(30), || {
            metric(
                s.ops,
                "herald_server_cluster_changes_total",
                &[("kind", "resync")],
            ) >= 1.0
        });
        assert!(started, "server {i}: the change feed never started");
    }
}

/// The SPIFFE IDs of every entry `server` lists.
pub fn entry_ids(server: &Server) -> BTreeSet<String> {
    let listed = server.cli_json(&["entry", "list"]);
    listed["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|e| e["spiffe_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `/ready`'s status code.
pub fn ready_status(ops: SocketAddr) -> u16 {
    get(ops, "/ready").status
}

/// Runs `sql` on `db` (simple query protocol); every row's columns as text.
pub fn pg_rows(db: &TempDatabase, sql: &str) -> Vec<Vec<Option<String>>> {
    let (url, sql) = (db.url.clone(), sql.to_owned());
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a runtime");
        rt.block_on(async {
            let (client, conn) = url
                .parse()
                .expect("a test database URL")
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(conn);
            let messages = client.simple_query(&sql).await.expect("run the query");
            messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    };
    std::thread::spawn(run).join().expect("the query thread")
}

/// A TCP proxy on loopback in front of the test PostgreSQL. While cut,
/// open connections are dropped and new ones closed at once, as a
/// database that went away; restored, it forwards again.
pub struct PgProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    _rt: tokio::runtime::Runtime,
}

impl PgProxy {
    /// A proxy forwarding to the server `db` lives on.
    pub fn start(db: &TempDatabase) -> PgProxy {
        let config = db.url.parse().expect("a test database URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("the test PostgreSQL must be reached over TCP, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("build the proxy runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (cut_c, links_c) = (cut.clone(), links.clone());
        rt.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut_c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links_c.lock().unwrap().push(link.abort_handle());
            }
        });
        PgProxy {
            port,
            cut,
            links,
            _rt: rt,
        }
    }

    /// The connection string of `db`, through this proxy.
    pub fn url(&self, db: &TempDatabase) -> String {
        let config = db.url.parse().expect("a test database URL");
        let mut url = format!(
            "host=127.0.0.1 port={} dbname={} user={}",
            self.port,
            config.get_dbname().expect("a database name"),
            config.get_user().expect("a user"),
        );
        if let Some(pw) = config.get_password() {
            url.push_str(&format!(" password={}", String::from_utf8_lossy(pw)));
        }
        url
    }

    /// The database goes away: every connection drops, new ones fail.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// The database is back.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// The X.509 roots a server publishes (its trust bundle), as DER.
pub fn roots(s: &HaServer) -> Vec<Vec<u8>> {
    let pem = s.server.bundle_pem();
    rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
        .map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.unwrap().to_vec())
        .collect()
}

/// Waits until every server publishes one bundle with `n` X.509 roots.
pub fn wait_one_bundle_of(servers: &[HaServer], n: usize) -> Vec<Vec<u8>> {
    let mut last = Vec::new();
    let agreed = eventually(Duration::from_secs(30), || {
        let all: Vec<Vec<Vec<u8>>> = servers.iter().map(roots).collect();
        let same = all
            .windows(2)
            .all(|w| w[0].iter().collect::<BTreeSet<_>>() == w[1].iter().collect::<BTreeSet<_>>());
        last = all[0].clone();
        same && last.len() == n
    });
    assert!(agreed, "the servers never agreed on a bundle of {n} roots");
    last
}

/// Reads `sync` until an update satisfies `wanted`; panics naming `what`.
pub async fn next_update(
    sync: &mut tonic::Streaming<node::SyncUpdate>,
    what: &str,
    wanted: impl Fn(&node::SyncUpdate) -> bool,
) -> node::SyncUpdate {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, sync.next()).await {
            Ok(Some(Ok(u))) if wanted(&u) => return u,
            Ok(Some(Ok(_))) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

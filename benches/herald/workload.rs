//! Item 2: Workload API latency with `workloads` registered workloads
//! cached on the agent, at concurrency 1 and 32, p50 and p99.
//!
//! A real server and agent run in this process (own runtimes). All but one
//! of the entries name selectors no process has, so the agent holds their
//! SVIDs but this process (the caller) is entitled to one identity: every
//! call pays for attestation of the caller and for finding its identities
//! among all cached ones. Each client task owns one connection (as each
//! workload process would) and times, per call, FetchX509SVID up to its
//! first response (the stream is then dropped) and FetchJWTSVID (served from
//! the agent's JWT cache after the first call, whose cold latency is
//! reported apart). The floor is a minimal tonic service over a Unix socket
//! on the same runtime answering the same RPCs with the same payloads,
//! precomputed.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use herald::agent::metrics::AgentMetrics;
use herald::agent::run::AgentHandle;
use herald::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use herald::proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use herald::proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse, WitsvidRequest,
    WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest, X509svidResponse,
};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::cluster::{self, Runtimes, Server};
use crate::harness::bin::my_uid;
use crate::harness::dirs::temp_dir;
pub use crate::harness::workload::with_header;
use crate::measure::{fmt_dur, percentiles, Percentiles, RoleCpu};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

/// Calls each client makes before the clock starts.
const WARMUP: usize = 20;
/// Rounds of (real, floor) measurements.
const ROUNDS: usize = 5;

pub type WorkloadClient = SpiffeWorkloadApiClient<Channel>;

/// A server and an agent holding `workloads` SVIDs, one of them ours.
pub struct WorkloadCluster {
    pub rts: Runtimes,
    pub server: Server,
    pub agent: AgentHandle,
    pub dir: TempDir,
    pub uid: u32,
}

impl WorkloadCluster {
    /// Starts the pair, registers the workloads through the admin API and
    /// waits until the agent holds an SVID for each.
    pub fn start(scale: &Scale) -> WorkloadCluster {
        let rts = Runtimes::new();
        let dir = temp_dir("hb-wl-");
        let server = Server::start(&rts, dir.path());
        let enrollment = server.enroll(&rts, "workloads");
        let agent = cluster::start_agent(&rts, &enrollment, &dir.path().join("agent"));
        let uid = my_uid();
        let mut entries: Vec<_> = (1..scale.workloads)
            .map(|i| {
                let sel = format!("uid:{}", 1_000_000 + i);
                cluster::entry(&format!("/bench/workload/{i}"), &agent.spiffe_id, &sel, 0)
            })
            .collect();
        entries.push(cluster::entry(
            "/bench/me",
            &agent.spiffe_id,
            &format!("uid:{uid}"),
            0,
        ));
        rts.bench.block_on(async {
            let mut admin = cluster::admin_entries(&server.admin_socket()).await;
            cluster::create_entries(&mut admin, entries, 1_000).await;
        });
        let cache = agent.cache.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let snap = cache.current();
            if snap.ready && snap.identities.len() >= scale.workloads {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not cache every workload in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("  agent holds {} SVIDs", cache.current().identities.len());
        WorkloadCluster {
            rts,
            server,
            agent,
            dir,
            uid,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.agent.socket_path.clone()
    }

    pub fn stop(self) {
        self.rts.agent.block_on(self.agent.shutdown());
        self.server.stop(&self.rts);
        self.rts.stop();
    }
}

// === clients ===

/// Adds the security header every Workload API request needs.
pub async fn workload_client(socket: &Path) -> WorkloadClient {
    SpiffeWorkloadApiClient::new(cluster::uds_channel(socket).await)
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// FetchX509SVID up to its first response.
pub async fn x509_first(client: &mut WorkloadClient) -> X509svidResponse {
    x509_stream_and_first(client).await.1
}

/// A FetchX509SVID stream past its first response (which is returned too),
/// ready to be watched for pushes.
pub async fn x509_stream_and_first(
    client: &mut WorkloadClient,
) -> (tonic::Streaming<X509svidResponse>, X509svidResponse) {
    let mut stream = client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .expect("FetchX509SVID")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("first response")
        .expect("a message");
    (stream, first)
}

async fn jwt(client: &mut WorkloadClient) -> JwtsvidResponse {
    jwt_for(client, "bench").await
}

async fn jwt_for(client: &mut WorkloadClient, audience: &str) -> JwtsvidResponse {
    client
        .fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec![audience.into()],
            spiffe_id: String::new(),
        }))
        .await
        .expect("FetchJWTSVID")
        .into_inner()
}

/// FetchJWTSVID for `n` audiences never asked for before, one after the
/// other on one connection: each token is minted by the server (the cold
/// path a workload meets once per audience).
fn cold_jwts(rts: &Runtimes, socket: &Path, n: usize) -> Percentiles {
    rts.bench.block_on(async {
        let mut client = workload_client(socket).await;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let audience = format!("cold-{i}");
            let t = Instant::now();
            jwt_for(&mut client, &audience).await;
            samples.push(t.elapsed());
        }
        percentiles(&samples)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    X509,
    Jwt,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::X509 => "FetchX509SVID first response",
            Rpc::Jwt => "FetchJWTSVID",
        }
    }
}

async fn call(client: &mut WorkloadClient, rpc: Rpc) {
    match rpc {
        Rpc::X509 => {
            x509_first(client).await;
        }
        Rpc::Jwt => {
            jwt(client).await;
        }
    }
}

/// `concurrency` clients, one connection each, `calls` timed calls each,
/// all starting together after a warm-up; and the CPU each role spent in
/// the timed part (from the barrier until the last client is done, so
/// neither the connections nor the warm-up are counted).
fn samples(
    rts: &Runtimes,
    socket: &Path,
    rpc: Rpc,
    concurrency: usize,
    calls: usize,
) -> (Vec<Duration>, RoleCpu) {
    rts.bench.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(concurrency));
        let started = Arc::new(std::sync::OnceLock::new());
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let socket = socket.to_path_buf();
                let barrier = barrier.clone();
                let started = started.clone();
                tokio::spawn(async move {
                    let mut client = workload_client(&socket).await;
                    for _ in 0..WARMUP {
                        call(&mut client, rpc).await;
                    }
                    if barrier.wait().await.is_leader() {
                        started.get_or_init(RoleCpu::now);
                    }
                    let mut samples = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        let t = Instant::now();
                        call(&mut client, rpc).await;
                        samples.push(t.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let cpu = RoleCpu::now().since(started.get().expect("the barrier's leader read the CPU"));
        (all, cpu)
    })
}

/// What one socket's calls cost: their latencies, and the CPU each role's
/// threads spent while they ran.
struct Measured {
    latency: Percentiles,
    cpu: RoleCpu,
}

impl Measured {
    /// The agent runtime's CPU per call (the floors run on it too).
    fn agent_per_call(&self) -> Duration {
        Duration::from_secs_f64(self.cpu.agent / self.latency.count.max(1) as f64)
    }
}

/// The real service, the floor and the floor behind the agent's
/// `:authority` shim, measured in turn in `ROUNDS` rounds so that all meet
/// the same machine (this one is shared).
fn compare<const N: usize>(
    rts: &Runtimes,
    sockets: [&Path; N],
    rpc: Rpc,
    concurrency: usize,
    calls: usize,
) -> [Measured; N] {
    let per_round = calls.div_ceil(ROUNDS);
    let mut all: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    let mut cpu = [RoleCpu::default(); N];
    for _ in 0..ROUNDS {
        for ((socket, out), cpu) in sockets.iter().zip(all.iter_mut()).zip(cpu.iter_mut()) {
            let (latencies, used) = samples(rts, socket, rpc, concurrency, per_round);
            out.extend(latencies);
            cpu.add(&used);
        }
    }
    let mut cpu = cpu.into_iter();
    all.map(|s| Measured {
        latency: percentiles(&s),
        cpu: cpu.next().unwrap_or_default(),
    })
}

// === the floor ===

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A trivial Workload API: precomputed answers, no attestation, no cache.
#[derive(Clone)]
struct Floor {
    x509: X509svidResponse,
    jwt: JwtsvidResponse,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("floor"))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Floor {
    type FetchX509SVIDStream = BoxStream<X509svidResponse>;
    type FetchX509BundlesStream = BoxStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = BoxStream<JwtBundlesResponse>;
    type FetchWITSVIDStream = BoxStream<WitsvidResponse>;
    type FetchWITBundlesStream = BoxStream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        // Like the real stream: the first message, then open until dropped.
        let first = futures::stream::once(std::future::ready(Ok(self.x509.clone())));
        Ok(Response::new(Box::pin(
            first.chain(futures::stream::pending()),
        )))
    }
    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        unimplemented()
    }
    async fn fetch_jwtsvid(
        &self,
        _: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Ok(Response::new(self.jwt.clone()))
    }
    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        unimplemented()
    }
    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        unimplemented()
    }
    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        unimplemented()
    }
    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        unimplemented()
    }
}

/// Serves the floor on the agent runtime at `path` until the runtime
/// stops; with `shim`, every connection first passes through the agent's
/// HTTP/2 `:authority` shim, as the real Workload API's connections do.
/// What stands in front of the floor service.
#[derive(Clone, Copy, PartialEq)]
enum Front {
    /// Nothing: tonic over the Unix socket.
    Plain,
    /// The agent's `:authority` shim.
    Shim,
    /// The agent's gRPC metrics layer (counting each call by RPC and code).
    Counted,
}

fn serve_floor(rts: &Runtimes, path: &Path, floor: Floor, front: Front) {
    let listener = {
        let _guard = rts.agent.enter();
        tokio::net::UnixListener::bind(path).unwrap()
    };
    let service = SpiffeWorkloadApiServer::new(floor);
    rts.agent.spawn(async move {
        let plain = tokio_stream::wrappers::UnixListenerStream::new;
        match front {
            Front::Shim => tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(herald::agent::h2_authority::incoming(listener))
                .await
                .unwrap(),
            Front::Plain => tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(plain(listener))
                .await
                .unwrap(),
            Front::Counted => tonic::transport::Server::builder()
                .layer(AgentMetrics::default().workload_socket_layer())
                .add_service(service)
                .serve_with_incoming(plain(listener))
                .await
                .unwrap(),
        }
    });
}

// === the item ===

/// Runs item 2.
pub fn run(scale: &Scale, c: &WorkloadCluster, report: &mut Report) {
    heading(
        "2",
        "Workload API latency (1 of N cached identities is the caller's)",
    );
    let socket = c.socket();
    // The real answers (the JWT-SVID is minted by the server here).
    let (x509, jwt_resp) = c.rts.bench.block_on(async {
        let mut client = workload_client(&socket).await;
        let x509 = x509_first(&mut client).await;
        let jwt_resp = jwt(&mut client).await;
        (x509, jwt_resp)
    });
    assert_eq!(
        x509.svids.len(),
        1,
        "the caller is entitled to exactly one identity"
    );
    let floor = Floor {
        x509,
        jwt: jwt_resp,
    };
    let floor_path = c.dir.path().join("floor.sock");
    let shim_path = c.dir.path().join("floor-shim.sock");
    let counted_path = c.dir.path().join("floor-counted.sock");
    serve_floor(&c.rts, &floor_path, floor.clone(), Front::Plain);
    serve_floor(&c.rts, &shim_path, floor.clone(), Front::Shim);
    serve_floor(&c.rts, &counted_path, floor, Front::Counted);

    let mut warm_jwt = Duration::ZERO;
    for rpc in [Rpc::X509, Rpc::Jwt] {
        for (conc, calls) in [(1, scale.calls_c1), (32, scale.calls_c32)] {
            let sockets = [
                socket.as_path(),
                floor_path.as_path(),
                shim_path.as_path(),
                counted_path.as_path(),
            ];
            let [real, floor, shim, counted] = compare(&c.rts, sockets, rpc, conc, calls);
            let agent_cpu = (real.agent_per_call(), floor.agent_per_call());
            println!(
                "  {} c={conc}: agent runtime CPU per call: {} real, {} echo, {} echo behind the shim, {} echo behind the metrics layer",
                rpc.name(),
                fmt_dur(agent_cpu.0),
                fmt_dur(agent_cpu.1),
                fmt_dur(shim.agent_per_call()),
                fmt_dur(counted.agent_per_call()),
            );
            let [real, floor, shim, counted] = [real, floor, shim, counted].map(|m| m.latency);
            if (rpc, conc) == (Rpc::Jwt, 1) {
                warm_jwt = real.p50;
            }
            println!(
                "  {} c={conc}: {} calls each, max {} (floor max {})",
                rpc.name(),
                real.count,
                fmt_dur(real.max),
                fmt_dur(floor.max)
            );
            for (label, v, f, target) in [
                ("p50", real.p50, floor.p50, None),
                ("p99", real.p99, floor.p99, Some(Duration::from_millis(1))),
            ] {
                report.add(Row {
                    item: "2 workload API",
                    figure: format!("{} c={conc} {label}", rpc.name()),
                    value: fmt_dur(v),
                    baseline: format!("tonic echo over UDS {}", fmt_dur(f)),
                    ratio: ratio(v.as_secs_f64(), f.as_secs_f64()),
                    target: target.map_or("–".into(), |t| format!("< {}", fmt_dur(t))),
                    met: target.map(|t| v < t),
                });
            }
            for (part, p) in [(":authority shim", &shim), ("metrics layer", &counted)] {
                report.add(Row {
                    item: "2 workload API",
                    figure: format!("  part: the echo behind the {part}, c={conc} p50"),
                    value: fmt_dur(p.p50),
                    baseline: format!("tonic echo over UDS {}", fmt_dur(floor.p50)),
                    ratio: ratio(p.p50.as_secs_f64(), floor.p50.as_secs_f64()),
                    target: "–".into(),
                    met: None,
                });
            }
            // At c=32 on few cores the p50 is mostly queueing behind other
            // calls, so it moves with the CPU each call costs: this says
            // how much of it is the agent's.
            report.add(Row {
                item: "2 workload API",
                figure: format!("  agent runtime CPU per call, c={conc}"),
                value: fmt_dur(agent_cpu.0),
                baseline: format!("tonic echo over UDS {}", fmt_dur(agent_cpu.1)),
                ratio: ratio(agent_cpu.0.as_secs_f64(), agent_cpu.1.as_secs_f64()),
                target: "–".into(),
                met: None,
            });
        }
    }
    // Last: these audiences stay hot in the agent's JWT cache for a
    // token lifetime, and it re-mints them in the background.
    let n = (scale.calls_c1 / 10).max(10);
    let cold = cold_jwts(&c.rts, &socket, n);
    println!(
        "  FetchJWTSVID cold: {} audiences, max {}",
        cold.count,
        fmt_dur(cold.max)
    );
    for (label, v) in [("p50", cold.p50), ("p99", cold.p99)] {
        report.add(Row {
            item: "2 workload API",
            figure: format!("FetchJWTSVID cold (minted by the server), c=1 {label}"),
            value: fmt_dur(v),
            baseline: format!(
                "FetchJWTSVID warm (agent cache) c=1 p50 {}",
                fmt_dur(warm_jwt)
            ),
            ratio: ratio(v.as_secs_f64(), warm_jwt.as_secs_f64()),
            target: "–".into(),
            met: None,
        });
    }
}

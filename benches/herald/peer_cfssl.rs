//! Item 9: Herald beside a peer CA in the same run (issue 15, item 4):
//! cfssl (Debian's golang-cfssl, `cfssl serve`) and a `herald server run`
//! process, each signing the same P-256 CSRs one per request, at the same
//! concurrency, from this process.
//!
//! cfssl gets a P-256 CA made now (`cfssl gencert -initca`) and is asked
//! over its HTTP API (`POST /api/v1/cfssl/sign`, a PEM CSR in JSON) by a
//! hyper HTTP/1.1 client, one keep-alive connection per caller, in plain
//! HTTP (its default; no TLS to pay for, which favours it). Herald is
//! asked as an agent asks it: BatchNewX509SVID with one CSR per call, over
//! the node API's mTLS, by tonic (hyper's HTTP/2), one connection per
//! caller, with the agent's Sync stream open. Both verify the CSR's
//! signature and sign one certificate per request; Herald also writes its
//! issuance log durably before answering. Each server is a process of
//! its own, so its CPU time is read from /proc.
//!
//! Without a `cfssl` binary the item says so and measures nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use herald::ca::{KeyPair, KeyType};
use herald::node::make_csr;
use herald::proto::node::{self, node_client::NodeClient};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tonic::transport::Channel;

use crate::cluster::{self, Runtimes, ServerProcess};
use crate::harness::dirs::temp_dir;
use crate::measure::{fmt_dur, fmt_rate, percentiles, process_cpu_secs, Percentiles};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

const ITEM: &str = "9 cfssl";

/// Distinct CSRs, used round-robin.
const CSRS: usize = 256;

/// What one CA did in its timed phase.
struct Phase {
    rate: f64,
    latency: Percentiles,
    /// The CA process's CPU per certificate, seconds.
    cpu_per_cert: f64,
}

/// Whether `cfssl` runs here.
fn cfssl_installed() -> bool {
    Command::new("cfssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One request on a caller's own connection: the caller goes in and
/// comes back, so each task owns its connection without borrowing.
type Call<C> = fn(C, usize) -> BoxFuture<'static, C>;

/// Runs `count` requests from the `callers` at once, each one request in
/// flight; the rate, every request's latency, and the callers.
async fn drive<C: Send + 'static>(
    callers: Vec<C>,
    count: usize,
    call: Call<C>,
) -> (f64, Vec<Duration>, Vec<C>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut c| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return (lat, c);
                    }
                    let t = Instant::now();
                    c = call(c, i).await;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    let mut back = Vec::new();
    for t in tasks {
        let (lat, c) = t.await.expect("caller task");
        all.extend(lat);
        back.push(c);
    }
    (count as f64 / start.elapsed().as_secs_f64(), all, back)
}

/// A few requests on every connection before the clock starts.
async fn warm<C: Send + 'static>(callers: Vec<C>, call: Call<C>) -> Vec<C> {
    let n = callers.len() * 4;
    drive(callers, n, call).await.2
}

// === cfssl ===

/// A `cfssl serve` process with a fresh P-256 CA; killed on drop.
struct Cfssl {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Cfssl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cfssl {
    fn start(dir: &Path) -> Cfssl {
        let csr = dir.join("ca-csr.json");
        std::fs::write(
            &csr,
            r#"{"CN":"cfssl bench CA","key":{"algo":"ecdsa","size":256}}"#,
        )
        .unwrap();
        let out = Command::new("cfssl")
            .args(["gencert", "-initca"])
            .arg(&csr)
            .output()
            .expect("cfssl gencert");
        assert!(out.status.success(), "cfssl gencert -initca failed");
        let ca: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cfssl JSON");
        std::fs::write(dir.join("ca.pem"), ca["cert"].as_str().unwrap()).unwrap();
        std::fs::write(dir.join("ca-key.pem"), ca["key"].as_str().unwrap()).unwrap();
        // A free port, given back for cfssl to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("cfssl")
            .current_dir(dir)
            .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string()])
            .args(["-ca", "ca.pem", "-ca-key", "ca-key.pem", "-loglevel", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cfssl serve");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "cfssl serve never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Cfssl { child, addr }
    }
}

type Http1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http1(addr: SocketAddr) -> Http1 {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    send
}

/// Signs `count` CSRs through cfssl's API.
async fn cfssl_phase(cfssl: &Cfssl, csrs: &[Vec<u8>], scale: &Scale, count: usize) -> Phase {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        csrs.iter()
            .map(|der| {
                let pem = herald::ca::pem::der_to_pem(der, "CERTIFICATE REQUEST");
                Bytes::from(serde_json::json!({ "certificate_request": pem }).to_string())
            })
            .collect(),
    );
    let mut callers = Vec::new();
    for _ in 0..scale.peer_concurrency {
        callers.push((http1(cfssl.addr).await, bodies.clone()));
    }
    let call: Call<(Http1, Arc<Vec<Bytes>>)> = |mut c, i| {
        Box::pin(async move {
            let body = c.1[i % c.1.len()].clone();
            let req = http::Request::post("/api/v1/cfssl/sign")
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            c.0.ready().await.expect("cfssl connection");
            let resp = c.0.send_request(req).await.expect("cfssl request");
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("cfssl body")
                .to_bytes();
            assert!(
                status.is_success() && body.windows(14).any(|w| w == b"\"success\":true"),
                "cfssl refused: {status} {}",
                String::from_utf8_lossy(&body)
            );
            c
        })
    };
    let callers = warm(callers, call).await;
    let cpu0 = process_cpu_secs(cfssl.child.id());
    let (rate, lat, _) = drive(callers, count, call).await;
    Phase {
        rate,
        latency: percentiles(&lat),
        cpu_per_cert: (process_cpu_secs(cfssl.child.id()) - cpu0) / count as f64,
    }
}

// === Herald ===

type HeraldCaller = (NodeClient<Channel>, Arc<Vec<node::BatchNewX509svidRequest>>);

/// Signs `count` CSRs through Herald's node API, one per call.
fn herald_phase(
    rts: &Runtimes,
    dir: &Path,
    csrs: &[Vec<u8>],
    scale: &Scale,
    count: usize,
) -> Phase {
    let server = ServerProcess::spawn(dir);
    let enrollment = server.enroll(rts, "peer-bench");
    rts.bench.block_on(async {
        let agent = cluster::attest(&enrollment).await;
        let entries = (0..csrs.len())
            .map(|i| {
                cluster::entry(
                    &format!("/bench/peer/{i}"),
                    &agent.id,
                    &format!("uid:{}", 7_000_000 + i),
                    0,
                )
            })
            .collect();
        let mut admin = cluster::admin_entries(server.admin_socket()).await;
        let ids = cluster::create_entries(&mut admin, entries, 5_000).await;
        // The agent's Sync stream, open as `herald agent run` keeps it.
        let mut sync = agent.sync().await;
        while let Some(u) = sync.message().await.expect("Sync") {
            if u.complete {
                break;
            }
        }
        let requests: Arc<Vec<node::BatchNewX509svidRequest>> = Arc::new(
            ids.into_iter()
                .zip(csrs)
                .map(|(entry_id, csr)| node::BatchNewX509svidRequest {
                    params: vec![node::NewX509svidParams {
                        entry_id,
                        csr: csr.clone(),
                    }],
                })
                .collect(),
        );
        let mut callers: Vec<HeraldCaller> = Vec::new();
        for _ in 0..scale.peer_concurrency {
            let client = agent
                .connector
                .authenticated(&agent.cred)
                .await
                .expect("mTLS");
            callers.push((client, requests.clone()));
        }
        let call: Call<HeraldCaller> = |mut c, i| {
            Box::pin(async move {
                let req = c.1[i % c.1.len()].clone();
                let resp = c.0.batch_new_x509svid(req).await.expect("BatchNewX509SVID");
                let r = &resp.get_ref().results[0];
                assert_eq!(r.code, 0, "Herald refused: {}", r.message);
                c
            })
        };
        let callers = warm(callers, call).await;
        let pid = server.pid();
        let cpu0 = process_cpu_secs(pid);
        let (rate, lat, _) = drive(callers, count, call).await;
        let cpu = process_cpu_secs(pid) - cpu0;
        drop(sync);
        Phase {
            rate,
            latency: percentiles(&lat),
            cpu_per_cert: cpu / count as f64,
        }
    })
}

/// Runs item 9.
pub fn run(scale: &Scale, report: &mut Report) {
    heading(
        "9",
        "Side by side: cfssl and Herald signing one CSR per request",
    );
    if !cfssl_installed() {
        println!("  skipped: cfssl not installed (Debian package golang-cfssl)");
        report.add(Row {
            item: ITEM,
            figure: "cfssl side by side".into(),
            value: "skipped: cfssl not installed".into(),
            baseline: "–".into(),
            ratio: "–".into(),
            target: "–".into(),
            met: None,
        });
        return;
    }
    let rts = Runtimes::new();
    let dir = temp_dir("hb-peer-");
    let csrs: Vec<Vec<u8>> = (0..CSRS)
        .map(|_| make_csr(&KeyPair::generate(KeyType::EcP256).unwrap()).unwrap())
        .collect();
    let count = scale.peer_requests;
    let cfssl_dir = dir.path().join("cfssl");
    std::fs::create_dir_all(&cfssl_dir).unwrap();
    let cfssl = Cfssl::start(&cfssl_dir);
    let peer = rts.bench.block_on(cfssl_phase(&cfssl, &csrs, scale, count));
    drop(cfssl);
    let ours = herald_phase(&rts, &dir.path().join("herald"), &csrs, scale, count);
    rts.stop();
    let c = scale.peer_concurrency;
    println!(
        "  {count} CSRs each, {c} callers; CPU per certificate: cfssl {}, Herald {}",
        fmt_dur(Duration::from_secs_f64(peer.cpu_per_cert)),
        fmt_dur(Duration::from_secs_f64(ours.cpu_per_cert))
    );
    let rows = [
        (
            format!("Herald certificates/s, 1 CSR/call, {c} callers"),
            fmt_rate(ours.rate),
            format!("cfssl serve {}", fmt_rate(peer.rate)),
            ratio(ours.rate, peer.rate),
            "≥ 5.00×".to_string(),
            Some(ours.rate >= 5.0 * peer.rate),
        ),
        (
            format!("Herald latency p50, {c} callers"),
            fmt_dur(ours.latency.p50),
            format!("cfssl serve {}", fmt_dur(peer.latency.p50)),
            ratio(
                ours.latency.p50.as_secs_f64(),
                peer.latency.p50.as_secs_f64(),
            ),
            "–".into(),
            None,
        ),
        (
            format!("Herald latency p99, {c} callers"),
            fmt_dur(ours.latency.p99),
            format!("cfssl serve {}", fmt_dur(peer.latency.p99)),
            ratio(
                ours.latency.p99.as_secs_f64(),
                peer.latency.p99.as_secs_f64(),
            ),
            "–".into(),
            None,
        ),
        (
            "Herald server CPU per certificate".into(),
            fmt_dur(Duration::from_secs_f64(ours.cpu_per_cert)),
            format!(
                "cfssl serve {}",
                fmt_dur(Duration::from_secs_f64(peer.cpu_per_cert))
            ),
            ratio(ours.cpu_per_cert, peer.cpu_per_cert),
            "–".into(),
            None,
        ),
    ];
    report.add_all(ITEM, rows);
}

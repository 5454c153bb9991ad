//! Item 8: a fleet of agents against one server process (issue 15, item 3).
//!
//! A real `herald server run` child (so its RSS and CPU time are its own)
//! holds `fleet_agents × fleet_entries` registration entries; this process
//! simulates the agents (`fleet_agent`), each its own TLS connection from
//! a loopback source address with its own Sync stream. Measured:
//!
//! - time to steady state: from the first attestation to every agent
//!   holding an SVID for every entry, beside the raw crypto of as many
//!   issuances on all cores;
//! - the server's RSS once steady, and the growth per connected agent;
//! - one entry change reaching its agent (p50, p99), beside the admin
//!   write alone;
//! - one federated bundle change reaching every agent (p50, p99 over the
//!   changes), beside the admin write alone.
//!
//! Each change is timed alone: the next starts once the server's CPU has
//! gone quiet again, since a change wakes every stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::ca::{KeyPair, KeyType, X509Authority};
use herald::clock::now_unix;
use herald::node::make_csr;
use herald::proto::admin::{
    self, agents_client::AgentsClient, bundles_client::BundlesClient,
    federated_bundles_client::FederatedBundlesClient,
};
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};

use crate::bound::CryptoBound;
use crate::cluster::{self, trust_domain, ServerProcess};
use crate::fleet_agent::{self, Join, Sightings, AGENTS_PER_ADDRESS};
use crate::harness::dirs::temp_dir;
use crate::measure::{fmt_dur, fmt_int, fmt_kib, percentiles, process_cpu_secs, status_kib};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

const ITEM: &str = "8 fleet";

/// The foreign trust domain whose bundle changes.
const PEER: &str = "peer.example";

/// How long any one step may take before the item gives up.
const DEADLINE: Duration = Duration::from_secs(300);

/// Lets descriptors go up to the hard limit: a thousand connections here,
/// and as many in the server, which inherits the limit.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Waits until the server process has used no CPU for 100 ms (at most 30 s).
async fn settle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let before = process_cpu_secs(pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if process_cpu_secs(pid) - before < 0.005 {
            return;
        }
    }
}

fn agent_id(i: usize) -> SpiffeId {
    SpiffeId::new(&trust_domain(), &format!("/herald/agent/fleet-{i}")).unwrap()
}

/// A federated bundle of `PEER` holding one fresh authority: its admin
/// form and the authority's DER.
fn peer_bundle(sequence: u64) -> (admin::Bundle, Vec<u8>) {
    let td = TrustDomain::new(PEER).unwrap();
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let ca = X509Authority::self_signed(&td, key, 86_400, now_unix()).unwrap();
    let der = ca.cert_der().to_vec();
    let mut bundle = Bundle::new(td);
    bundle.x509_authorities.push(der.clone());
    bundle.sequence = sequence;
    let json = bundle.to_spiffe_json().unwrap();
    (
        admin::Bundle {
            trust_domain: PEER.into(),
            spiffe_json: json,
            sequence_number: 0,
        },
        der,
    )
}

/// Runs item 8.
pub fn run(scale: &Scale, bound: &CryptoBound, report: &mut Report) {
    let (n, per) = (scale.fleet_agents, scale.fleet_entries);
    let svids = n * per;
    heading(
        "8",
        &format!(
            "Fleet: {n} agents × {per} entries ({} SVIDs) against one server process",
            fmt_int(svids as u64)
        ),
    );
    let fds = raise_fd_limit();
    let rt = cluster::runtime("bench");
    let dir = temp_dir("hb-fleet-");
    let server = ServerProcess::spawn(dir.path());
    let pid = server.pid();
    let node_addr = server.0.node_addr;
    let rss_idle = status_kib(pid, "VmRSS");

    // Join tokens for fixed agent IDs, then every agent's entries.
    let (joins, create) = rt.block_on(async {
        let channel = cluster::uds_channel(server.admin_socket()).await;
        let bundle = BundlesClient::new(channel.clone())
            .get_bundle(admin::GetBundleRequest {})
            .await
            .expect("GetBundle")
            .into_inner();
        let roots = Bundle::from_spiffe_json(trust_domain(), bundle.spiffe_json.as_bytes())
            .expect("bundle JSON")
            .x509_authorities;
        let mut agents = AgentsClient::new(channel);
        let mut joins = Vec::with_capacity(n);
        for i in 0..n {
            let token = agents
                .create_join_token(admin::CreateJoinTokenRequest {
                    ttl: 3600,
                    token: String::new(),
                    agent_id: agent_id(i).to_string(),
                })
                .await
                .expect("CreateJoinToken")
                .into_inner()
                .value;
            joins.push(Join {
                index: i,
                token,
                node_addr,
                roots: roots.clone(),
            });
        }
        let entries = (0..svids)
            .map(|k| {
                cluster::entry(
                    &format!("/fleet/{}/{}", k / per, k % per),
                    &agent_id(k / per),
                    &format!("uid:{}", 6_000_000 + k),
                    0,
                )
            })
            .collect();
        let start = Instant::now();
        let mut admin = cluster::admin_entries(server.admin_socket()).await;
        cluster::create_entries(&mut admin, entries, 10_000).await;
        (joins, start.elapsed())
    });
    rt.block_on(settle(pid));
    let rss_before = status_kib(pid, "VmRSS");

    // Every agent at once; CSRs made before the clock starts.
    let csrs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..per)
            .map(|_| make_csr(&KeyPair::generate(KeyType::EcP256).unwrap()).unwrap())
            .collect(),
    );
    let sightings = Arc::new(Sightings::default());
    let cpu0 = process_cpu_secs(pid);
    let start = Instant::now();
    let held = rt.block_on(async {
        tokio::time::timeout(
            DEADLINE,
            fleet_agent::start_all(joins, csrs, sightings.clone()),
        )
        .await
        .expect("the fleet did not reach steady state in time")
    });
    let steady = held.iter().map(|h| h.held).max().unwrap() - start;
    let synced = held.iter().map(|h| h.synced).max().unwrap() - start;
    let server_cpu = process_cpu_secs(pid) - cpu0;
    assert_eq!(held.iter().map(|h| h.svids).sum::<usize>(), svids);
    rt.block_on(settle(pid));
    let (rss_steady, hwm) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    println!(
        "  {n} agents from {} loopback addresses (fd limit {fds}): all synced after {}, all SVIDs held after {}; server CPU {server_cpu:.2} s; {} entries created in {}",
        n.div_ceil(AGENTS_PER_ADDRESS),
        fmt_dur(synced),
        fmt_dur(steady),
        fmt_int(svids as u64),
        fmt_dur(create)
    );

    // One entry change at a time, each for one agent; the baseline is the
    // admin write alone, for an entry of no connected agent.
    let (changed, base_change) = rt.block_on(async {
        let mut admin = cluster::admin_entries(server.admin_socket()).await;
        let nobody = SpiffeId::new(&trust_domain(), "/herald/agent/nobody").unwrap();
        let (mut changed, mut base) = (Vec::new(), Vec::new());
        for k in 0..scale.fleet_changes {
            settle(pid).await;
            let owner = agent_id(k * 7919 % n);
            let path = format!("/fleet/probe/{k}");
            let t = Instant::now();
            let (_, id) = cluster::create_one(&mut admin, &path, &owner, "uid:7").await;
            let arrived = tokio::time::timeout(DEADLINE, sightings.probe(&id))
                .await
                .expect("the probe entry never reached its agent");
            changed.push(arrived - t);
            settle(pid).await;
            let t = Instant::now();
            cluster::create_one(&mut admin, &format!("/fleet/nowhere/{k}"), &nobody, "uid:7").await;
            base.push(t.elapsed());
        }
        (changed, base)
    });

    // One federated bundle change at a time, to every agent.
    let (to_all, to_one, base_bundle) = rt.block_on(async {
        let channel = cluster::uds_channel(server.admin_socket()).await;
        let mut bundles = FederatedBundlesClient::new(channel);
        let (mut to_all, mut to_one, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..scale.fleet_bundle_changes {
            let (bundle, der) = peer_bundle(k as u64 + 1);
            settle(pid).await;
            sightings.expect_bundle(der);
            let t = Instant::now();
            let resp = bundles
                .batch_set_federated_bundle(admin::BatchSetFederatedBundleRequest {
                    bundle: vec![bundle],
                })
                .await
                .expect("BatchSetFederatedBundle")
                .into_inner();
            base.push(t.elapsed());
            for r in resp.results {
                let status = r.status.unwrap_or_default();
                assert_eq!(status.code, 0, "bundle refused: {}", status.message);
            }
            let arrivals = tokio::time::timeout(DEADLINE, sightings.bundle_arrivals(n))
                .await
                .expect("the bundle never reached every agent");
            to_all.push(*arrivals.iter().max().unwrap() - t);
            to_one.extend(arrivals.iter().map(|a| *a - t));
        }
        (to_all, to_one, base)
    });
    assert_eq!(
        sightings.ended.load(Ordering::SeqCst),
        0,
        "Sync streams ended during the item"
    );
    drop(held);
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(server);

    let raw = svids as f64 / bound.issuance_all;
    let raw_cpu = svids as f64 * (1.0 / bound.sign_1 + 1.0 / bound.verify_1);
    let per_agent = rss_steady.saturating_sub(rss_before) / n as u64;
    let rows = [
        (
            format!(
                "start → {n} agents hold all {} SVIDs",
                fmt_int(svids as u64)
            ),
            fmt_dur(steady),
            format!(
                "ring sign+verify × {} on {} cores {}",
                fmt_int(svids as u64),
                bound.cores,
                fmt_dur(Duration::from_secs_f64(raw))
            ),
            ratio(steady.as_secs_f64(), raw),
            "–".to_string(),
            None,
        ),
        (
            "server CPU to steady state".into(),
            format!("{server_cpu:.2} s"),
            format!(
                "1 sign + 1 verify × {} on one core {raw_cpu:.2} s",
                fmt_int(svids as u64)
            ),
            ratio(server_cpu, raw_cpu),
            "–".into(),
            None,
        ),
        (
            format!("server RSS, {n} agents steady"),
            fmt_kib(rss_steady),
            format!("idle, no entries {}", fmt_kib(rss_idle)),
            ratio(rss_steady as f64, rss_idle as f64),
            "< 512 MiB".into(),
            Some(rss_steady < 512 * 1024),
        ),
        (
            "server peak RSS (VmHWM)".into(),
            fmt_kib(hwm),
            format!("idle, no entries {}", fmt_kib(rss_idle)),
            ratio(hwm as f64, rss_idle as f64),
            "< 512 MiB".into(),
            Some(hwm < 512 * 1024),
        ),
        (
            "server RSS per connected agent".into(),
            format!("{} KiB", fmt_int(per_agent)),
            format!("before the agents, entries stored {}", fmt_kib(rss_before)),
            "–".into(),
            "–".into(),
            None,
        ),
    ];
    report.add_all(ITEM, rows);
    let (c, bc) = (percentiles(&changed), percentiles(&base_change));
    let (all, one, bb) = (
        percentiles(&to_all),
        percentiles(&to_one),
        percentiles(&base_bundle),
    );
    let second = Duration::from_secs(1);
    let latencies = [
        (
            "entry created → its agent's stream p50",
            c.p50,
            "BatchCreateEntry alone",
            bc.p50,
            None,
        ),
        (
            "entry created → its agent's stream p99",
            c.p99,
            "BatchCreateEntry alone",
            bc.p99,
            None,
        ),
        (
            "federated bundle set → one agent p50",
            one.p50,
            "BatchSetFederatedBundle alone",
            bb.p50,
            None,
        ),
        (
            "federated bundle set → all agents p50",
            all.p50,
            "BatchSetFederatedBundle alone",
            bb.p50,
            None,
        ),
        (
            "federated bundle set → all agents p99",
            all.p99,
            "BatchSetFederatedBundle alone",
            bb.p99,
            Some(second),
        ),
    ];
    for (figure, v, what, b, target) in latencies {
        report.add(Row {
            item: ITEM,
            figure: figure.replace("all agents", &format!("all {n} agents")),
            value: fmt_dur(v),
            baseline: format!("{what} {}", fmt_dur(b)),
            ratio: ratio(v.as_secs_f64(), b.as_secs_f64()),
            target: target.map_or("–".into(), |t: Duration| format!("< {}", fmt_dur(t))),
            met: target.map(|t| v < t),
        });
    }
}

//! Item 7: Envoy SDS beside the Workload API, on the item 2 cluster (the
//! agent holds `workloads` SVIDs, one of them the caller's).
//!
//! - First response: open StreamSecrets (`default` and `ROOTCA`, as an
//!   Envoy sidecar asks) or DeltaSecrets (wildcard) and time its first
//!   response, on one connection per client; the baseline is FetchX509SVID
//!   up to its first response, measured in the same rounds, alternating.
//!   Both attest the caller and wait for nothing; SDS also encodes PEM and
//!   hashes each secret for its version.
//! - Update push: a Workload API stream, a StreamSecrets stream (wildcard)
//!   and a DeltaSecrets stream (wildcard) are open at once; each change
//!   creates an entry for this process and times, per stream, until a
//!   message carries its SPIFFE ID. The Workload API stream's time for the
//!   same change is the baseline. The entry is then deleted (and the
//!   streams read until it is gone), so every change starts from the same
//!   state.

use std::path::Path;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use herald::proto::workload::X509svidResponse;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::cluster;
use crate::harness::sds::{
    delta_first, delta_request, names, request, sotw_first, DeltaStream, SotwStream,
};
use crate::measure::{fmt_dur, percentiles, Percentiles};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;
use crate::workload::{workload_client, x509_first, x509_stream_and_first, WorkloadClient};

/// Calls before the clock starts.
const WARMUP: usize = 20;
/// Rounds of alternating measurements.
const ROUNDS: usize = 5;
/// How long one stream may take to show a change.
const WAIT: Duration = Duration::from_secs(30);

type SdsClient = SecretDiscoveryServiceClient<Channel>;

#[derive(Debug, Clone, Copy)]
enum First {
    WorkloadApi,
    Sotw,
    Delta,
}

async fn first(wl: &mut WorkloadClient, sds: &mut SdsClient, what: First) {
    match what {
        First::WorkloadApi => {
            x509_first(wl).await;
        }
        First::Sotw => {
            let (_, r) = sotw_first(sds, request(&["default", "ROOTCA"], "", "")).await;
            assert_eq!(r.resources.len(), 2);
        }
        First::Delta => {
            delta_first(sds, delta_request(&[], &[], "")).await;
        }
    }
}

/// `calls` timed first responses of each kind, alternating in rounds.
fn first_responses(
    rts: &crate::cluster::Runtimes,
    socket: &Path,
    calls: usize,
) -> [Vec<Duration>; 3] {
    rts.bench.block_on(async {
        let mut wl = workload_client(socket).await;
        let mut sds = SdsClient::new(cluster::uds_channel(socket).await);
        let kinds = [First::WorkloadApi, First::Sotw, First::Delta];
        for kind in kinds {
            for _ in 0..WARMUP {
                first(&mut wl, &mut sds, kind).await;
            }
        }
        let mut out: [Vec<Duration>; 3] = Default::default();
        for _ in 0..ROUNDS {
            for (kind, samples) in kinds.iter().zip(out.iter_mut()) {
                for _ in 0..calls.div_ceil(ROUNDS) {
                    let t = Instant::now();
                    first(&mut wl, &mut sds, *kind).await;
                    samples.push(t.elapsed());
                }
            }
        }
        out
    })
}

async fn wl_until(
    stream: &mut Streaming<X509svidResponse>,
    id: &str,
    present: bool,
    t: Instant,
) -> Duration {
    tokio::time::timeout(WAIT, async {
        loop {
            let msg = stream.message().await.expect("stream").expect("open");
            if msg.svids.iter().any(|s| s.spiffe_id == id) == present {
                return t.elapsed();
            }
        }
    })
    .await
    .expect("the Workload API stream did not update")
}

async fn sotw_until(s: &mut SotwStream, id: &str, present: bool, t: Instant) -> Duration {
    loop {
        let r = s.next(WAIT, "StreamSecrets update").await;
        s.send(request(&[], &r.version_info, &r.nonce)).await;
        if names(&r).iter().any(|n| n == id) == present {
            return t.elapsed();
        }
    }
}

async fn delta_until(s: &mut DeltaStream, id: &str, present: bool, t: Instant) -> Duration {
    loop {
        let r = s.next(WAIT, "DeltaSecrets update").await;
        s.send(delta_request(&[], &[], &r.nonce)).await;
        let seen = match present {
            true => r.resources.iter().any(|x| x.name == id),
            false => r.removed_resources.iter().any(|n| n == id),
        };
        if seen {
            return t.elapsed();
        }
    }
}

/// Per change: (Workload API, StreamSecrets, DeltaSecrets) times to show it.
fn pushes(c: &crate::workload::WorkloadCluster, n: usize) -> [Vec<Duration>; 3] {
    let socket = c.socket();
    let me = format!("uid:{}", c.uid);
    let parent = c.agent.spiffe_id.clone();
    c.rts.bench.block_on(async {
        let mut admin = cluster::admin_entries(&c.server.admin_socket()).await;
        let mut wl = workload_client(&socket).await;
        let (mut wl_stream, _) = x509_stream_and_first(&mut wl).await;
        let mut sds = SdsClient::new(cluster::uds_channel(&socket).await);
        let (mut sotw, r) = sotw_first(&mut sds, request(&[], "", "")).await;
        sotw.send(request(&[], &r.version_info, &r.nonce)).await;
        let (mut delta, r) = delta_first(&mut sds, delta_request(&[], &[], "")).await;
        delta.send(delta_request(&[], &[], &r.nonce)).await;

        let mut out: [Vec<Duration>; 3] = Default::default();
        for i in 0..n {
            let path = format!("/bench/sds/{i}");
            let t = Instant::now();
            let (ids, id) = cluster::create_one(&mut admin, &path, &parent, &me).await;
            let (a, b, d) = tokio::join!(
                wl_until(&mut wl_stream, &id, true, t),
                sotw_until(&mut sotw, &id, true, t),
                delta_until(&mut delta, &id, true, t),
            );
            out[0].push(a);
            out[1].push(b);
            out[2].push(d);
            let t = Instant::now();
            cluster::delete_entries(&mut admin, ids).await;
            tokio::join!(
                wl_until(&mut wl_stream, &id, false, t),
                sotw_until(&mut sotw, &id, false, t),
                delta_until(&mut delta, &id, false, t),
            );
        }
        out
    })
}

/// p50 and p99 of `samples` beside `base`'s, the p99 held to `p99_target`.
fn add_rows(
    report: &mut Report,
    figure: &str,
    samples: &[Duration],
    base: &Percentiles,
    base_label: &str,
    p99_target: Option<Duration>,
) {
    let p = percentiles(samples);
    println!("  {figure}: {} samples, max {}", p.count, fmt_dur(p.max));
    for (label, v, b, target) in [
        ("p50", p.p50, base.p50, None),
        ("p99", p.p99, base.p99, p99_target),
    ] {
        report.add(Row {
            item: "7 SDS",
            figure: format!("{figure} {label}"),
            value: fmt_dur(v),
            baseline: format!("{base_label} {}", fmt_dur(b)),
            ratio: ratio(v.as_secs_f64(), b.as_secs_f64()),
            target: target.map_or("–".into(), |t| format!("< {}", fmt_dur(t))),
            met: target.map(|t| v < t),
        });
    }
}

/// Runs item 7.
pub fn run(scale: &Scale, c: &crate::workload::WorkloadCluster, report: &mut Report) {
    heading("7", "Envoy SDS beside the Workload API");
    let [wl, sotw, delta] = first_responses(&c.rts, &c.socket(), scale.calls_c1);
    let wl = percentiles(&wl);
    for (name, samples) in [("StreamSecrets", sotw), ("DeltaSecrets", delta)] {
        let figure = format!("{name} first response c=1");
        add_rows(
            report,
            &figure,
            &samples,
            &wl,
            "FetchX509SVID first response",
            None,
        );
    }
    let [wl, sotw, delta] = pushes(c, scale.propagation_changes);
    let wl = percentiles(&wl);
    for (name, samples) in [("StreamSecrets", sotw), ("DeltaSecrets", delta)] {
        let figure = format!("entry created → {name} update");
        let target = Some(Duration::from_secs(1));
        add_rows(
            report,
            &figure,
            &samples,
            &wl,
            "→ Workload API stream",
            target,
        );
    }
}

//! Item 5: propagation, from an entry created through the admin API to the
//! update on an open Workload API stream, p50 and p99 over many changes.
//!
//! On the item 2 cluster (the agent already holds every workload's SVID),
//! this process keeps one FetchX509SVID stream open. Each change creates an
//! entry for this process's uid with a new SPIFFE ID and times until a
//! stream message carries that ID: the durable write, the push on the sync
//! stream, the agent's new key and CSR, the server's signature and issuance
//! log write, the cache publish and the stream's response. The entry is
//! then deleted and the removal timed the same way, so every change starts
//! from the same state. The baseline is the admin write alone: the same
//! create and delete for an entry whose parent is no connected agent.

use std::time::{Duration, Instant};

use herald::proto::workload::X509svidResponse;
use herald::spiffe::SpiffeId;
use tonic::Streaming;

use crate::cluster::{self, trust_domain};
use crate::measure::{fmt_dur, percentiles};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;
use crate::workload::{workload_client, x509_stream_and_first, WorkloadCluster};

/// Reads the stream until a message satisfies `done`.
pub async fn wait_for(
    stream: &mut Streaming<X509svidResponse>,
    done: impl Fn(&X509svidResponse) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let msg = stream
                .message()
                .await
                .expect("stream")
                .expect("stream open");
            if done(&msg) {
                return;
            }
        }
    })
    .await
    .expect("the Workload API stream did not update within 30 s");
}

/// Whether the response carries an SVID for `id`.
pub fn has(msg: &X509svidResponse, id: &str) -> bool {
    msg.svids.iter().any(|s| s.spiffe_id == id)
}

/// Runs item 5.
pub fn run(scale: &Scale, c: &WorkloadCluster, report: &mut Report) {
    heading(
        "5",
        "Propagation: entry created → Workload API stream update",
    );
    let socket = c.socket();
    let me = format!("uid:{}", c.uid);
    let parent = c.agent.spiffe_id.clone();
    let n = scale.propagation_changes;
    let (created, deleted, base_create, base_delete) = c.rts.bench.block_on(async {
        let mut admin = cluster::admin_entries(&c.server.admin_socket()).await;
        let mut client = workload_client(&socket).await;
        let (mut stream, _) = x509_stream_and_first(&mut client).await;
        let (mut created, mut deleted) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let path = format!("/bench/propagation/{i}");
            let t = Instant::now();
            let (ids, id) = cluster::create_one(&mut admin, &path, &parent, &me).await;
            wait_for(&mut stream, |m| has(m, &id)).await;
            created.push(t.elapsed());
            let t = Instant::now();
            cluster::delete_entries(&mut admin, ids).await;
            wait_for(&mut stream, |m| !has(m, &id)).await;
            deleted.push(t.elapsed());
        }
        let nobody = SpiffeId::new(&trust_domain(), "/herald/agent/nobody").unwrap();
        let (mut base_create, mut base_delete) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let path = format!("/bench/nowhere/{i}");
            let t = Instant::now();
            let ids = cluster::create_entries(
                &mut admin,
                vec![cluster::entry(&path, &nobody, &me, 0)],
                1,
            )
            .await;
            base_create.push(t.elapsed());
            let t = Instant::now();
            cluster::delete_entries(&mut admin, ids).await;
            base_delete.push(t.elapsed());
        }
        (created, deleted, base_create, base_delete)
    });
    let (c_p, d_p) = (percentiles(&created), percentiles(&deleted));
    let (bc_p, bd_p) = (percentiles(&base_create), percentiles(&base_delete));
    println!(
        "  {n} changes; created max {}, deleted max {}",
        fmt_dur(c_p.max),
        fmt_dur(d_p.max)
    );
    let rows = [
        (
            "entry created → stream update p50",
            c_p.p50,
            bc_p.p50,
            "BatchCreateEntry alone",
            None,
        ),
        (
            "entry created → stream update p99",
            c_p.p99,
            bc_p.p99,
            "BatchCreateEntry alone",
            Some(Duration::from_secs(1)),
        ),
        (
            "entry deleted → stream update p50",
            d_p.p50,
            bd_p.p50,
            "BatchDeleteEntry alone",
            None,
        ),
        (
            "entry deleted → stream update p99",
            d_p.p99,
            bd_p.p99,
            "BatchDeleteEntry alone",
            None,
        ),
    ];
    for (figure, v, b, what, target) in rows {
        report.add(Row {
            item: "5 propagation",
            figure: figure.into(),
            value: fmt_dur(v),
            baseline: format!("{what} {}", fmt_dur(b)),
            ratio: ratio(v.as_secs_f64(), b.as_secs_f64()),
            target: target.map_or("–".into(), |t: Duration| format!("< {}", fmt_dur(t))),
            met: target.map(|t| v < t),
        });
    }
}

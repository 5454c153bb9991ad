//! Item 9 (`crossserver`): propagation between servers sharing one
//! PostgreSQL database, beside propagation within one server, from the
//! same run on the same database.
//!
//! Two `herald server run` processes on a fresh database and a `herald
//! agent run` attested to server A; this process is its workload and keeps
//! one FetchX509SVID stream open. Each change creates an entry for this
//! process's uid through the admin API of server B, then another through
//! server A, and times each until the stream carries it (the entries are
//! then deleted, untimed, so each change starts from the same state). The
//! cross-server path adds B's commit → NOTIFY → A's change feed read → A's
//! push on the agent's Sync stream; the same-server figure is its
//! baseline. Needs PostgreSQL (`HERALD_TEST_PG_URL`); skipped without it.

use std::time::{Duration, Instant};

use herald::proto::workload::X509svidRequest;
use herald::spiffe::SpiffeId;
use herald::store::postgres::test_database::TempDatabase;

use crate::cluster::{admin_entries, create_one, delete_entries, runtime};
use crate::harness::cluster::Agent;
use crate::harness::ha::{start_ha, wait_feeds};
use crate::measure::{fmt_dur, percentiles};
use crate::propagation::{has, wait_for};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;
use crate::workload::{with_header, workload_client};

/// Runs item 9.
pub fn run(scale: &Scale, report: &mut Report) {
    heading("9", "Cross-server propagation: 2 servers on PostgreSQL");
    let db = match TempDatabase::create() {
        Ok(db) => db,
        Err(e) => {
            println!("  skipped: PostgreSQL unreachable ({e}); set HERALD_TEST_PG_URL");
            return;
        }
    };
    let tmp = crate::harness::dirs::temp_dir("bench-crossserver");
    let servers = start_ha(tmp.path(), &db, 2);
    wait_feeds(&servers);
    let (a, b) = (&servers[0].server, &servers[1].server);
    let (token, agent_id) = a.join_token();
    let agent = Agent::start(&a.agent_config(&tmp.path().join("agent"), Some(&token)));
    let parent = SpiffeId::parse(&agent_id).unwrap();
    let me = format!("uid:{}", crate::harness::bin::my_uid());
    let n = scale.propagation_changes.min(200);
    let rt = runtime("bench-cross");
    let (cross, same) = rt.block_on(async {
        let mut via_a = admin_entries(&a.admin_socket).await;
        let mut via_b = admin_entries(&b.admin_socket).await;
        // One standing entry makes this process a workload of the agent.
        create_one(&mut via_a, "/bench/cross/anchor", &parent, &me).await;
        let mut client = workload_client(&agent.socket).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            let opened = client.fetch_x509svid(with_header(X509svidRequest {})).await;
            if let Ok(resp) = opened {
                let mut s = resp.into_inner();
                if let Ok(Some(_)) = s.message().await {
                    break s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the agent never served this workload"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (mut cross, mut same) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            for (via, times, name) in [(&mut via_b, &mut cross, "b"), (&mut via_a, &mut same, "a")]
            {
                let path = format!("/bench/cross/{name}/{i}");
                let t = Instant::now();
                let (ids, id) = create_one(via, &path, &parent, &me).await;
                wait_for(&mut stream, |m| has(m, &id)).await;
                times.push(t.elapsed());
                delete_entries(via, ids).await;
                wait_for(&mut stream, |m| !has(m, &id)).await;
            }
        }
        (cross, same)
    });
    drop(agent);
    drop(servers);
    let (x, s) = (percentiles(&cross), percentiles(&same));
    println!(
        "  {n} changes through each server; cross-server max {}",
        fmt_dur(x.max)
    );
    for (figure, v, base, target) in [
        ("entry via B → A's agent stream p50", x.p50, s.p50, None),
        (
            "entry via B → A's agent stream p99",
            x.p99,
            s.p99,
            Some(Duration::from_secs(1)),
        ),
    ] {
        report.add(Row {
            item: "9 crossserver",
            figure: figure.into(),
            value: fmt_dur(v),
            baseline: format!("same via A {}", fmt_dur(base)),
            ratio: ratio(v.as_secs_f64(), base.as_secs_f64()),
            target: target.map_or("–".into(), |t: Duration| format!("< {}", fmt_dur(t))),
            met: target.map(|t| v < t),
        });
    }
}

//! Item 6: the store. Durable issuance-log writes per second on the real
//! sled store (every `append_issuances` returns after sled's flush, i.e.
//! an fsync), one record per call, one record per call from 8 threads at
//! once, and 500 records per call (what the node API does per batch, with
//! serials drawn in blocks as the CA draws them). The
//! baseline is the disk itself: 200-byte writes each followed by
//! `fdatasync`, in the same directory.

use std::io::Write as _;
use std::time::{Duration, Instant};

use herald::ca::serial::SerialBlock;
use herald::ca::template::serial_hex;
use herald::spiffe::SpiffeId;
use herald::store::{DataStore, IssuanceRecord};

use crate::cluster::trust_domain;
use crate::harness::dirs::temp_dir;
use crate::measure::{fmt_dur, fmt_rate, percentiles};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

const BATCH: usize = 500;
const THREADS: usize = 8;

/// A record whose serial is the next of `serials`, as the CA draws them (a
/// batch's serials in blocks of 16, which the log stores as one group).
fn record(serials: &mut SerialBlock, agent: &SpiffeId, workload: &SpiffeId) -> IssuanceRecord {
    let now = herald::clock::now_unix();
    IssuanceRecord {
        serial: serial_hex(&serials.next_serial(now).unwrap()),
        spiffe_id: workload.clone(),
        agent_id: Some(agent.clone()),
        entry_id: Some(uuid::Uuid::new_v4().to_string()),
        not_after: now + 3600,
        issued_at: now,
    }
}

/// Single-record appends: latencies.
fn single(store: &dyn DataStore, n: usize, agent: &SpiffeId, wl: &SpiffeId) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let r = record(&mut SerialBlock::new(), agent, wl);
            let t = Instant::now();
            store.append_issuances(&[r]).unwrap();
            t.elapsed()
        })
        .collect()
}

/// `fdatasync`ed writes of `bytes` bytes each: latencies.
fn fsyncs(dir: &std::path::Path, n: usize, bytes: usize) -> Vec<Duration> {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let buf = vec![0x42; bytes];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect()
}

fn per_sec(n: usize, samples: &[Duration]) -> f64 {
    n as f64 / samples.iter().sum::<Duration>().as_secs_f64()
}

/// An entry for the entry-write figures.
fn entry(tag: &str, i: usize, agent: &SpiffeId) -> herald::registration::RegistrationEntry {
    herald::registration::RegistrationEntry::new(
        SpiffeId::new(&trust_domain(), &format!("/bench/{tag}/{i}")).unwrap(),
        agent.clone(),
        vec![herald::registration::Selector::parse(&format!("unix:uid:{i}")).unwrap()],
    )
}

/// `create_entry` one at a time: entries/s.
fn entry_writes(
    store: &dyn DataStore,
    n: usize,
    agent: &SpiffeId,
    disk_rate: f64,
    baseline: &str,
) -> (&'static str, f64, String, f64) {
    let start = Instant::now();
    for i in 0..n {
        store.create_entry(entry("one", i, agent)).unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (
        "entry writes/s, 1 entry/call",
        rate,
        baseline.to_owned(),
        disk_rate,
    )
}

/// `create_entries` of BATCH entries per call: entries/s.
fn entry_batch(
    store: &dyn DataStore,
    batches: usize,
    agent: &SpiffeId,
    disk_batch_rate: f64,
) -> (&'static str, f64, String, f64) {
    let start = Instant::now();
    for b in 0..batches {
        let part = (0..BATCH)
            .map(|i| entry("batch", b * BATCH + i, agent))
            .collect();
        let results = store.create_entries(part).unwrap();
        assert!(results.iter().all(|r| r.is_ok()));
    }
    let rate = (batches * BATCH) as f64 / start.elapsed().as_secs_f64();
    (
        "entries/s, 500 entries/call",
        rate,
        format!("issuance batch bound {}", fmt_rate(disk_batch_rate)),
        disk_batch_rate,
    )
}

/// Runs item 6.
pub fn run(scale: &Scale, report: &mut Report) {
    let backend = crate::backend::Backend::from_env();
    heading(
        "6",
        &format!(
            "The store ({}): durable issuance-log and entry writes",
            backend.name()
        ),
    );
    let dir = temp_dir("hb-store-");
    let (store, _db) = backend.open(dir.path());
    let agent = SpiffeId::new(&trust_domain(), "/herald/agent/store").unwrap();
    let wl = SpiffeId::new(&trust_domain(), "/bench/store").unwrap();
    let n = scale.store_single;

    single(&*store, 20, &agent, &wl);
    // Interleaved, so that the disk and its neighbours treat both alike.
    let (mut disk, mut one) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..10 {
        disk.extend(fsyncs(dir.path(), n / 10, 200));
        one.extend(single(&*store, n / 10, &agent, &wl));
    }
    let n = one.len();

    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let (agent, wl) = (agent.clone(), wl.clone());
            std::thread::Builder::new()
                .name(format!("bench-store-{t}"))
                .spawn(move || single(&*store, n / THREADS, &agent, &wl))
                .unwrap()
        })
        .collect();
    let concurrent: usize = threads.into_iter().map(|t| t.join().unwrap().len()).sum();
    let concurrent_rate = concurrent as f64 / start.elapsed().as_secs_f64();

    let batches: Vec<Vec<IssuanceRecord>> = (0..scale.store_batches)
        .map(|_| {
            let mut serials = SerialBlock::new();
            (0..BATCH)
                .map(|_| record(&mut serials, &agent, &wl))
                .collect()
        })
        .collect();
    let start = Instant::now();
    for b in &batches {
        store.append_issuances(b).unwrap();
    }
    let batch_rate = (scale.store_batches * BATCH) as f64 / start.elapsed().as_secs_f64();
    // The disk's bound for a batch: its records' JSON written once, one fdatasync.
    let batch_bytes: usize = batches[0]
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    let disk_batch = fsyncs(dir.path(), scale.store_batches, batch_bytes);
    let disk_batch_rate =
        (scale.store_batches * BATCH) as f64 / disk_batch.iter().sum::<Duration>().as_secs_f64();

    let (disk_p, one_p) = (percentiles(&disk), percentiles(&one));
    let disk_rate = per_sec(n, &disk);
    let one_rate = per_sec(n, &one);
    println!(
        "  fdatasync p50 {} p99 {}; append p50 {} p99 {}",
        fmt_dur(disk_p.p50),
        fmt_dur(disk_p.p99),
        fmt_dur(one_p.p50),
        fmt_dur(one_p.p99)
    );
    let baseline = format!("write+fdatasync {}", fmt_rate(disk_rate));
    let rows = [
        (
            "durable appends/s, 1 record/call",
            one_rate,
            baseline.clone(),
            disk_rate,
        ),
        (
            "durable appends/s, 1 record/call, 8 threads",
            concurrent_rate,
            baseline.clone(),
            disk_rate,
        ),
        entry_writes(&*store, n, &agent, disk_rate, &baseline),
        (
            "records/s, 500 records/call (node API batch)",
            batch_rate,
            format!(
                "{} KiB write+fdatasync per 500 {}",
                batch_bytes / 1024,
                fmt_rate(disk_batch_rate)
            ),
            disk_batch_rate,
        ),
    ];
    let mut rows = rows.to_vec();
    rows.push(entry_batch(
        &*store,
        scale.store_batches,
        &agent,
        disk_batch_rate,
    ));
    for (figure, v, b, bv) in rows {
        report.add(Row {
            item: "6 store",
            figure: figure.into(),
            value: fmt_rate(v),
            baseline: b,
            ratio: ratio(v, bv),
            target: "–".into(),
            met: None,
        });
    }
    report.add(Row {
        item: "6 store",
        figure: "append latency p99, 1 record/call".into(),
        value: fmt_dur(one_p.p99),
        baseline: format!("fdatasync p99 {}", fmt_dur(disk_p.p99)),
        ratio: ratio(one_p.p99.as_secs_f64(), disk_p.p99.as_secs_f64()),
        target: "–".into(),
        met: None,
    });
}

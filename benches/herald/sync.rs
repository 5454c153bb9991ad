//! Item 4: entry sync at scale. `sync_entries` entries created through the
//! admin API's BatchCreateEntry; the time to sync them to an agent and the
//! agent's peak RSS.
//!
//! The server runs in this process; the agent is a real `herald agent run`
//! process (the binary cargo built beside this bench), so its VmHWM is its
//! own. The entries are created first, then the agent starts with a join
//! token: it attests, opens the sync stream and receives the snapshot. The
//! time runs from spawning the process to its `snapshot applied` log line
//! (debug level of `herald::agent::manager`) and the agent's VmHWM is read
//! at that moment (the agent then starts issuing an SVID for every entry;
//! that is items 1 and 3, and it is stopped a second later, when its
//! VmHWM is read again). Baselines: for the time, protobuf encoding,
//! decoding and converting the same number of entries into the agent's map
//! on one core; for the RSS, an idle agent's peak RSS, and the RSS that
//! map alone takes in a fresh process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald::node::wire::{entry_from_wire, AgentEntry};
use herald::proto::node;
use herald::spiffe::SpiffeId;
use prost::Message as _;

use crate::cluster::{self, Enrollment, Runtimes, Server};
use crate::harness::dirs::temp_dir;
use crate::measure::{fmt_dur, fmt_int, fmt_kib, fmt_rate, status_kib};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

const AGENT_LOG: &str = "info,herald::agent::manager=debug";

/// The entries' wire form, as the server sends them.
fn wire_entries(n: usize, parent: &SpiffeId) -> Vec<node::Entry> {
    (0..n)
        .map(|i| node::Entry {
            id: uuid::Uuid::new_v4().to_string(),
            spiffe_id: format!("spiffe://{}/bench/sync/{i}", cluster::TRUST_DOMAIN),
            parent_id: parent.to_string(),
            selectors: vec![node::Selector {
                r#type: "unix".into(),
                value: format!("uid:{}", 4_000_000 + i),
            }],
            revision: 1,
            created_at: 1_700_000_000,
            ..Default::default()
        })
        .collect()
}

/// The serialization floor: encode in the server's 1,000-entry messages,
/// decode, and convert into the agent's map (`BTreeMap<id, AgentEntry>`, as
/// the manager keeps it), on one core; the time, and how much this
/// process's RSS grew to hold the map (KiB). Run in a child process.
pub fn codec_floor(n: usize, parent: &SpiffeId) -> (Duration, u64) {
    let entries = wire_entries(n, parent);
    let rss0 = status_kib(std::process::id(), "VmRSS");
    let start = Instant::now();
    let mut map: BTreeMap<String, AgentEntry> = BTreeMap::new();
    for chunk in entries.chunks(1_000) {
        let msg = node::SyncUpdate {
            snapshot: true,
            upserted: chunk.to_vec(),
            ..Default::default()
        };
        let bytes = msg.encode_to_vec();
        let decoded = node::SyncUpdate::decode(bytes.as_slice()).unwrap();
        for e in decoded.upserted {
            let e = entry_from_wire(e).unwrap();
            map.insert(e.id.clone(), e);
        }
    }
    assert_eq!(map.len(), n);
    let elapsed = start.elapsed();
    let grown = status_kib(std::process::id(), "VmRSS").saturating_sub(rss0);
    drop(map);
    (elapsed, grown)
}

/// What one agent process showed.
struct Synced {
    /// Spawn → `snapshot applied`.
    sync: Duration,
    /// Spawn → `agent running` (attested).
    attest: Duration,
    /// VmHWM when the snapshot was applied.
    hwm: u64,
    /// VmHWM one second later (the agent is issuing SVIDs by then).
    hwm_later: u64,
    line: String,
}

/// Starts an agent process and waits for its first snapshot.
fn sync_agent(enrollment: &Enrollment, dir: &std::path::Path, timeout: Duration) -> Synced {
    let spawned = Instant::now();
    let mut agent = cluster::spawn_agent(enrollment, dir, AGENT_LOG);
    let (running, _) = agent.first_line("agent running", Duration::from_secs(60));
    let (applied, line) = agent.first_line("snapshot applied", timeout);
    let hwm = status_kib(agent.pid(), "VmHWM");
    std::thread::sleep(Duration::from_secs(1));
    let hwm_later = status_kib(agent.pid(), "VmHWM");
    Synced {
        sync: applied - spawned,
        attest: running - spawned,
        hwm,
        hwm_later,
        line,
    }
}

/// Runs item 4.
pub fn run(scale: &Scale, report: &mut Report) {
    let n = scale.sync_entries;
    heading(
        "4",
        &format!(
            "Entry sync at scale: {} entries to one agent",
            fmt_int(n as u64)
        ),
    );
    let rts = Runtimes::new();
    let dir = temp_dir("hb-sync-");
    let server = Server::start(&rts, dir.path());

    let idle = sync_agent(
        &server.enroll(&rts, "idle"),
        &dir.path().join("idle"),
        Duration::from_secs(60),
    );

    let enrollment = server.enroll(&rts, "sync");
    let parent = enrollment.agent_id.clone();
    let entries: Vec<_> = (0..n)
        .map(|i| {
            cluster::entry(
                &format!("/bench/sync/{i}"),
                &parent,
                &format!("uid:{}", 4_000_000 + i),
                0,
            )
        })
        .collect();
    let start = Instant::now();
    rts.bench.block_on(async {
        let mut admin = cluster::admin_entries(&server.admin_socket()).await;
        cluster::create_entries(&mut admin, entries, scale.sync_create_batch).await;
    });
    let create = start.elapsed();

    let timeout = Duration::from_secs(120);
    let synced = sync_agent(&enrollment, &dir.path().join("sync"), timeout);
    let expected = format!("entries={n}");
    assert!(
        synced.line.contains(&expected),
        "snapshot line without {expected}: {}",
        synced.line
    );
    let (sync, attest, hwm) = (synced.sync, synced.attest, synced.hwm);
    let floor_result = crate::child::measure(&format!("agent-map {n}"));
    let (floor, map_kib) = (Duration::from_nanos(floor_result[0]), floor_result[1]);
    println!(
        "  created in {} ({}); agent process: attested and running after {}, snapshot applied after {}",
        fmt_dur(create),
        fmt_rate(n as f64 / create.as_secs_f64()),
        fmt_dur(attest),
        fmt_dur(sync)
    );
    report.add(Row {
        item: "4 sync",
        figure: format!("agent start → {} entries synced", fmt_int(n as u64)),
        value: fmt_dur(sync),
        baseline: format!("protobuf encode+decode+convert, 1 core {}", fmt_dur(floor)),
        ratio: ratio(sync.as_secs_f64(), floor.as_secs_f64()),
        target: "< 2 s".into(),
        met: Some(sync < Duration::from_secs(2)),
    });
    report.add(Row {
        item: "4 sync",
        figure: "agent peak RSS when synced".into(),
        value: fmt_kib(hwm),
        baseline: format!("idle agent {}", fmt_kib(idle.hwm)),
        ratio: ratio(hwm as f64, idle.hwm as f64),
        target: "< 64 MiB".into(),
        met: Some(hwm < 64 * 1024),
    });
    report.add(Row {
        item: "4 sync",
        figure: "agent RSS growth over idle when synced".into(),
        value: fmt_kib(hwm.saturating_sub(idle.hwm)),
        baseline: format!(
            "the entry map alone, in a fresh process {}",
            fmt_kib(map_kib)
        ),
        ratio: ratio(hwm.saturating_sub(idle.hwm) as f64, map_kib as f64),
        target: "–".into(),
        met: None,
    });
    report.add(Row {
        item: "4 sync",
        figure: "agent peak RSS 1 s later (issuing SVIDs)".into(),
        value: fmt_kib(synced.hwm_later),
        baseline: format!("idle agent {}", fmt_kib(idle.hwm)),
        ratio: ratio(synced.hwm_later as f64, idle.hwm as f64),
        target: "–".into(),
        met: None,
    });
    report.add(Row {
        item: "4 sync",
        figure: format!(
            "BatchCreateEntry of {} ({}/call)",
            fmt_int(n as u64),
            fmt_int(scale.sync_create_batch as u64)
        ),
        value: fmt_dur(create),
        baseline: "–".into(),
        ratio: "–".into(),
        target: "–".into(),
        met: None,
    });
    server.stop(&rts);
    rts.stop();
}

//! Item 3: rotation storm. `rotation_entries` entries on one agent with a
//! short X509-SVID TTL; the time until every SVID has been renewed, and
//! the server's and the agent's CPU time and peak RSS meanwhile.
//!
//! The server is a real `herald server run` process (its CPU time and
//! VmHWM are its own); the agent runs in this process on its own runtime
//! (its CPU time is its threads'; its peak RSS is this process's VmHWM,
//! reset before the item, which runs first while the process is fresh,
//! beside this process's RSS before the entries),
//! so that its cache can be watched directly: an entry counts as renewed
//! when the SVID the agent holds for it expires later than the first one
//! seen (a renewal comes at least TTL/2 later, so its NotAfter is later;
//! the watcher keeps only NotAfters, so it holds no SVID alive). Figures: the initial issuance (entries created → every SVID held:
//! a storm of first issuances) and the renewal storm (the first SVID due →
//! every SVID renewed).
//!
//! The agent renews at half the lifetime minus a jitter of up to a tenth
//! of it, in whole seconds; below a 20 s TTL the jitter is zero, so with
//! the 18 s TTL used here every SVID is due exactly 9 s after it was
//! issued: a real storm, spread only as much as the initial issuance was.
//! The due time of the first SVID is computed from its NotAfter (due =
//! NotAfter − TTL/2, whole seconds), so the figure includes the agent's
//! one-second timer resolution. The bound is the raw crypto of that many
//! renewals on all cores (agent keygen + CSR signature, server verify +
//! signature).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald::agent::run::AgentHandle;

use crate::bound::CryptoBound;
use crate::cluster::{self, Runtimes, ServerProcess};
use crate::harness::dirs::temp_dir;
use crate::measure::{
    fmt_dur, fmt_kib, process_cpu_secs, reset_self_peak_rss, status_kib, RoleCpu,
};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

/// CPU seconds so far: the agent's threads here, the server process.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    agent: f64,
    server: f64,
}

impl Cpu {
    fn now(server_pid: u32) -> Cpu {
        Cpu {
            agent: RoleCpu::now().agent,
            server: process_cpu_secs(server_pid),
        }
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            agent: self.agent - earlier.agent,
            server: self.server - earlier.server,
        }
    }
}

/// When things happened, as seen from the agent's cache.
struct Observed {
    all_issued: Instant,
    first_due: Instant,
    all_renewed: Instant,
    cpu_issue: Cpu,
    cpu_renew: Cpu,
}

/// The `Instant` at which the Unix clock read `unix` seconds.
fn instant_of_unix(unix: i64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let at = Duration::from_secs(u64::try_from(unix).unwrap());
    Instant::now() - now.saturating_sub(at)
}

/// Watches the cache until every entry's SVID has been renewed once.
fn watch(
    rts: &Runtimes,
    agent: &AgentHandle,
    n: usize,
    ttl: i64,
    server_pid: u32,
    cpu0: Cpu,
    timeout: Duration,
) -> Observed {
    let mut rx = agent.cache.subscribe();
    rts.bench.block_on(async move {
        let deadline = Instant::now() + timeout;
        let mut first: HashMap<String, i64> = HashMap::with_capacity(n);
        let mut renewed: HashSet<String> = HashSet::with_capacity(n);
        let mut issued: Option<(Instant, Cpu)> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, rx.changed())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} of {n} SVIDs renewed within {timeout:?}", renewed.len())
                })
                .unwrap();
            let snap = rx.borrow_and_update().clone();
            let now = Instant::now();
            for id in &snap.identities {
                match first.get(&id.entry_id) {
                    None => {
                        first.insert(id.entry_id.clone(), id.not_after);
                    }
                    Some(&not_after) if id.not_after > not_after => {
                        renewed.insert(id.entry_id.clone());
                    }
                    Some(_) => {}
                }
            }
            if first.len() >= n && issued.is_none() {
                issued = Some((now, Cpu::now(server_pid)));
            }
            if renewed.len() >= n {
                let (all_issued, cpu_issued) = issued.unwrap();
                let first_not_after = first.values().copied().min().unwrap();
                return Observed {
                    all_issued,
                    first_due: instant_of_unix(first_not_after - ttl / 2),
                    all_renewed: now,
                    cpu_issue: cpu_issued.since(&cpu0),
                    cpu_renew: Cpu::now(server_pid).since(&cpu_issued),
                };
            }
        }
    })
}

/// Runs item 3.
pub fn run(scale: &Scale, bound: &CryptoBound, report: &mut Report) {
    let n = scale.rotation_entries;
    let ttl = scale.rotation_ttl;
    heading(
        "3",
        &format!("Rotation storm: {n} entries on one agent, X509-SVID TTL {ttl} s"),
    );
    let rts = Runtimes::new();
    let dir = temp_dir("hb-rot-");
    let server = ServerProcess::spawn(dir.path());
    let server_pid = server.pid();
    let enrollment = server.enroll(&rts, "rotation");
    let agent = cluster::start_agent(&rts, &enrollment, &dir.path().join("agent"));
    let entries: Vec<_> = (0..n)
        .map(|i| {
            cluster::entry(
                &format!("/bench/rotate/{i}"),
                &agent.spiffe_id,
                &format!("uid:{}", 2_000_000 + i),
                ttl,
            )
        })
        .collect();
    let mut admin = rts
        .bench
        .block_on(cluster::admin_entries(server.admin_socket()));

    reset_self_peak_rss();
    let me = std::process::id();
    let (agent_rss0, server_rss0) = (status_kib(me, "VmRSS"), status_kib(server_pid, "VmRSS"));
    let cpu0 = Cpu::now(server_pid);
    let created = Instant::now();
    rts.bench
        .block_on(cluster::create_entries(&mut admin, entries, 5_000));
    let timeout = Duration::from_secs(120 + 3 * ttl as u64);
    let o = watch(&rts, &agent, n, i64::from(ttl), server_pid, cpu0, timeout);
    let (agent_hwm, server_hwm) = (status_kib(me, "VmHWM"), status_kib(server_pid, "VmHWM"));

    let issue = o.all_issued - created;
    let storm = o.all_renewed.saturating_duration_since(o.first_due);
    let crypto = Duration::from_secs_f64(n as f64 / bound.renewal_all);
    println!(
        "  initial issuance: {} (CPU server {:.2} s, agent {:.2} s); renewal storm {} (CPU server {:.2} s, agent {:.2} s)",
        fmt_dur(issue),
        o.cpu_issue.server,
        o.cpu_issue.agent,
        fmt_dur(storm),
        o.cpu_renew.server,
        o.cpu_renew.agent
    );
    report.add(Row {
        item: "3 rotation",
        figure: format!("renewal storm: first SVID due → all {n} renewed"),
        value: fmt_dur(storm),
        baseline: format!("raw crypto of {n} renewals {}", fmt_dur(crypto)),
        ratio: ratio(storm.as_secs_f64(), crypto.as_secs_f64()),
        target: "< 5 s".into(),
        met: Some(storm < Duration::from_secs(5)),
    });
    report.add(Row {
        item: "3 rotation",
        figure: format!("initial storm: {n} entries created → all SVIDs held"),
        value: fmt_dur(issue),
        baseline: format!("raw crypto of {n} renewals {}", fmt_dur(crypto)),
        ratio: ratio(issue.as_secs_f64(), crypto.as_secs_f64()),
        target: "–".into(),
        met: None,
    });
    let server_crypto = n as f64 * (1.0 / bound.sign_1 + 1.0 / bound.verify_1);
    let agent_crypto = n as f64 * (1.0 / bound.keygen_1 + 1.0 / bound.sign_1);
    for (figure, secs, what, raw) in [
        (
            "CPU in the renewal storm: server (process)",
            o.cpu_renew.server,
            "verify+sign",
            server_crypto,
        ),
        (
            "CPU in the renewal storm: agent (threads)",
            o.cpu_renew.agent,
            "keygen+sign",
            agent_crypto,
        ),
    ] {
        report.add(Row {
            item: "3 rotation",
            figure: figure.into(),
            value: format!("{secs:.2} s"),
            baseline: format!("one-core {what} × {n} {raw:.2} s"),
            ratio: ratio(secs, raw),
            target: "–".into(),
            met: None,
        });
    }
    for (figure, hwm, before) in [
        ("peak RSS: server (process)", server_hwm, server_rss0),
        (
            "peak RSS: agent (in the bench process)",
            agent_hwm,
            agent_rss0,
        ),
    ] {
        report.add(Row {
            item: "3 rotation",
            figure: figure.into(),
            value: fmt_kib(hwm),
            baseline: format!("RSS before the entries {}", fmt_kib(before)),
            ratio: ratio(hwm as f64, before as f64),
            target: "–".into(),
            met: None,
        });
    }
    rts.agent.block_on(agent.shutdown());
    drop(server);
    rts.stop();
}

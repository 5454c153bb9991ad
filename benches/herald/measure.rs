//! Measuring tools: latency percentiles from sorted samples, CPU time and
//! peak RSS from /proc (of this process, of one role's threads, or of a
//! child process), and formatting.

use std::collections::HashMap;
use std::time::Duration;

// === latencies ===

/// p50, p99 and max of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: usize,
}

/// Percentiles by the nearest-rank method over the sorted samples.
pub fn percentiles(samples: &[Duration]) -> Percentiles {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |p: f64| {
        let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[idx]
    };
    Percentiles {
        p50: rank(0.50),
        p99: rank(0.99),
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    }
}

// === formatting ===

/// `456 ns`, `123 µs`, `4.56 ms` or `7.89 s`.
pub fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A rate with thousands separators: `12,345/s`.
pub fn fmt_rate(per_sec: f64) -> String {
    format!("{}/s", fmt_int(per_sec.round() as u64))
}

/// `1,234,567`.
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// KiB as `12.3 MiB`.
pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// === /proc ===

/// Clock ticks per second of /proc times (USER_HZ; 100 on Linux).
fn ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds used so far by one thread, from its `/proc/.../task/<tid>`
/// directory: the scheduler's nanosecond count (`schedstat`) where the
/// kernel keeps one, else `stat`'s clock ticks (10 ms), too coarse for a
/// per-call figure.
fn task_cpu_secs(task: &std::path::Path) -> Option<f64> {
    let ns = std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    match ns {
        Some(ns) => Some(ns as f64 / 1e9),
        None => std::fs::read_to_string(task.join("stat"))
            .ok()
            .map(|s| stat_cpu_secs(&s)),
    }
}

/// utime + stime, in seconds, from a `stat` file's text.
fn stat_cpu_secs(stat: &str) -> f64 {
    // The comm field may contain spaces; the fields after it start past ')'.
    let rest = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the state is field 3; utime and stime are fields 14 and 15.
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    (utime + stime) / ticks_per_sec()
}

/// CPU seconds used so far by process `pid` (all threads, live and dead).
pub fn process_cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat"))
}

/// CPU seconds used so far by the calling thread (10 ms resolution).
pub fn thread_cpu_secs() -> f64 {
    stat_cpu_secs(&std::fs::read_to_string("/proc/thread-self/stat").expect("read stat"))
}

/// CPU seconds used so far by this process.
pub fn self_cpu_secs() -> f64 {
    process_cpu_secs(std::process::id())
}

/// A field of /proc/<pid>/status in KiB (`VmHWM`, `VmRSS`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets this process's peak RSS (VmHWM) to its current RSS.
pub fn reset_self_peak_rss() {
    // `echo 5 > /proc/self/clear_refs` (Linux 4.0+); harmless if refused.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Names the calling thread (as `prctl(PR_SET_NAME)` would), so its CPU
/// time is attributed to a role.
pub fn name_this_thread(name: &str) {
    let _ = std::fs::write("/proc/thread-self/comm", name);
}

/// CPU seconds of this process's live threads, by role: threads named
/// `agent…`, `bench…`, and the rest (server runtime, sled's threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleCpu {
    pub server: f64,
    pub agent: f64,
    pub bench: f64,
}

impl RoleCpu {
    /// Reads every thread of this process. Runtimes keep their blocking
    /// threads alive for the whole run (see `cluster::runtime`), so no
    /// thread's time is lost between two readings; whatever is not
    /// accounted to a live thread (threads that exited) counts as server.
    pub fn now() -> RoleCpu {
        let total = self_cpu_secs();
        let mut by_role: HashMap<&'static str, f64> = HashMap::new();
        let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
        for task in tasks.flatten() {
            let path = task.path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            let Some(cpu) = task_cpu_secs(&path) else {
                continue;
            };
            let role = if comm.starts_with("agent") {
                "agent"
            } else if comm.starts_with("bench") {
                "bench"
            } else {
                "server"
            };
            *by_role.entry(role).or_default() += cpu;
        }
        let agent = by_role.get("agent").copied().unwrap_or(0.0);
        let bench = by_role.get("bench").copied().unwrap_or(0.0);
        RoleCpu {
            server: (total - agent - bench).max(0.0),
            agent,
            bench,
        }
    }

    /// Adds `other` to `self`, role by role.
    pub fn add(&mut self, other: &RoleCpu) {
        self.server += other.server;
        self.agent += other.agent;
        self.bench += other.bench;
    }

    /// The CPU used between `earlier` and `self`.
    pub fn since(&self, earlier: &RoleCpu) -> RoleCpu {
        RoleCpu {
            server: self.server - earlier.server,
            agent: self.agent - earlier.agent,
            bench: self.bench - earlier.bench,
        }
    }
}

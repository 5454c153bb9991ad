//! What the kernel says about a process: resident memory now and at its
//! peak, and the CPU time it has used. Security tests bound memory and CPU
//! with these, never with the wall clock.

use std::time::Duration;

/// A `VmRSS:`/`VmHWM:` style field of /proc/<pid>/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of `pid` (VmRSS), bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:") * 1024
}

/// Resident memory of `pid`, MiB.
pub fn rss_mib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:") / 1024
}

/// Peak resident memory of `pid` (VmHWM), MiB.
pub fn hwm_mib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:") / 1024
}

/// CPU time `pid` has used, user and system (utime + stime of
/// /proc/<pid>/stat), all threads.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The command name may hold spaces; the fields after it may not.
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after
    // the name and state.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ: 100 on every Linux architecture /proc reports to.
    Duration::from_millis(ticks * 10)
}

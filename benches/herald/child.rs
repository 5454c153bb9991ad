//! Measurements that need a process of their own: how much memory one data
//! structure takes is only readable from /proc on a fresh process (a
//! process that ran other items reuses the memory they freed). The bench
//! runs itself again with `HERALD_BENCH_CHILD=<task> <args…>`; the child
//! does that one task and prints one `result:` line of numbers.

use std::process::Command;

use herald::spiffe::SpiffeId;

use crate::cluster::trust_domain;

const VAR: &str = "HERALD_BENCH_CHILD";

/// In a child, runs its task, prints the result and returns true.
pub fn dispatch() -> bool {
    let Ok(task) = std::env::var(VAR) else {
        return false;
    };
    let args: Vec<usize> = task
        .split_whitespace()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let parent = SpiffeId::new(&trust_domain(), "/herald/agent/child").unwrap();
    let result: Vec<u64> = match task.split_whitespace().next() {
        Some("sled-entries") => {
            let (rss, hwm) = crate::breakdown::store_with_entries(args[0], args[1], &parent);
            vec![rss, hwm]
        }
        Some("agent-map") => {
            let (elapsed, rss) = crate::sync::codec_floor(args[0], &parent);
            vec![elapsed.as_nanos() as u64, rss]
        }
        _ => panic!("{VAR}={task:?}: unknown task"),
    };
    let line: Vec<String> = result.iter().map(u64::to_string).collect();
    println!("result: {}", line.join(" "));
    true
}

/// Runs `task` in a fresh copy of this bench; its numbers.
pub fn measure(task: &str) -> Vec<u64> {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--bench")
        .env(VAR, task)
        .output()
        .expect("run the bench as a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| {
            panic!(
                "child {task:?} printed no result; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

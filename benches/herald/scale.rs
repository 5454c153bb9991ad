//! Sizes of every item, chosen by `HERALD_BENCH_SCALE` (`full`, the
//! default, or `smoke`: tiny sizes that finish in seconds, to keep the
//! suite from rotting), and the `HERALD_BENCH_ONLY` filter.

use std::time::Duration;

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Scale {
    /// `full` or `smoke`.
    pub name: &'static str,
    /// How long each raw-crypto rate is sampled.
    pub bound_time: Duration,
    /// Item 1: entries on the issuing agent (one CSR each, reused per round).
    pub issuance_entries: usize,
    /// Item 1: SVIDs issued in the timed phase.
    pub issuance_total: usize,
    /// Item 1: CSRs per BatchNewX509SVID call (the agent's SIGN_BATCH).
    pub issuance_batch: usize,
    /// Item 1: concurrent agent connections.
    pub issuance_conns: usize,
    /// Item 2: workloads registered and cached on the agent.
    pub workloads: usize,
    /// Items 2 and 7: calls per client at concurrency 1.
    pub calls_c1: usize,
    /// Item 2: calls per client at concurrency 32.
    pub calls_c32: usize,
    /// Item 3: entries on the rotating agent.
    pub rotation_entries: usize,
    /// Item 3: their X509-SVID TTL, seconds.
    pub rotation_ttl: i32,
    /// Item 4: entries synced to a fresh agent.
    pub sync_entries: usize,
    /// Item 4: entries per BatchCreateEntry call.
    pub sync_create_batch: usize,
    /// Items 5, 7 and 9 (at most 200 there): entry changes timed.
    pub propagation_changes: usize,
    /// Item 6: single-record durable appends timed.
    pub store_single: usize,
    /// Item 6: 500-record batches timed.
    pub store_batches: usize,
    /// Breakdown: entries behind `authorized_entries`.
    pub breakdown_entries: usize,
    /// Breakdown: iterations per measured step.
    pub breakdown_iters: usize,
    /// Item 8: simulated agents, each its own connection and Sync stream.
    pub fleet_agents: usize,
    /// Item 8: entries (and SVIDs) per agent.
    pub fleet_entries: usize,
    /// Item 8: entry changes timed, one agent each.
    pub fleet_changes: usize,
    /// Item 8: federated bundle changes timed, to every agent.
    pub fleet_bundle_changes: usize,
    /// Item 9: CSRs signed by each CA, one per request.
    pub peer_requests: usize,
    /// Item 9: requests in flight at once (one connection each).
    pub peer_concurrency: usize,
}

impl Scale {
    /// Reads `HERALD_BENCH_SCALE` (default `full`), and
    /// `HERALD_BENCH_FLEET=agents,entries,changes,bundle_changes` (item 8's
    /// sizes, to try it at other scales).
    pub fn from_env() -> Scale {
        let mut scale = match std::env::var("HERALD_BENCH_SCALE").as_deref() {
            Ok("smoke") => Scale::smoke(),
            Ok("full") | Err(_) => Scale::full(),
            Ok(other) => panic!("HERALD_BENCH_SCALE={other:?}: use `full` or `smoke`"),
        };
        if let Ok(fleet) = std::env::var("HERALD_BENCH_FLEET") {
            let n: Vec<usize> = fleet
                .split(',')
                .map(|v| v.trim().parse().expect("HERALD_BENCH_FLEET: numbers"))
                .collect();
            let [agents, entries, changes, bundles] = n[..] else {
                panic!("HERALD_BENCH_FLEET={fleet:?}: agents,entries,changes,bundle_changes");
            };
            scale.fleet_agents = agents;
            scale.fleet_entries = entries;
            scale.fleet_changes = changes;
            scale.fleet_bundle_changes = bundles;
        }
        scale
    }

    fn full() -> Scale {
        Scale {
            name: "full",
            bound_time: Duration::from_secs(2),
            issuance_entries: 2_000,
            issuance_total: 40_000,
            issuance_batch: 500,
            issuance_conns: 4,
            workloads: 1_000,
            calls_c1: 3_000,
            calls_c32: 300,
            rotation_entries: 10_000,
            rotation_ttl: 18,
            sync_entries: 100_000,
            sync_create_batch: 10_000,
            propagation_changes: 1_000,
            store_single: 2_000,
            store_batches: 100,
            breakdown_entries: 10_000,
            breakdown_iters: 2_000,
            fleet_agents: 1_000,
            fleet_entries: 100,
            fleet_changes: 100,
            fleet_bundle_changes: 20,
            peer_requests: 20_000,
            peer_concurrency: 16,
        }
    }

    fn smoke() -> Scale {
        Scale {
            name: "smoke",
            bound_time: Duration::from_millis(200),
            issuance_entries: 100,
            issuance_total: 500,
            issuance_batch: 50,
            issuance_conns: 2,
            workloads: 20,
            calls_c1: 100,
            calls_c32: 5,
            rotation_entries: 200,
            rotation_ttl: 6,
            sync_entries: 2_000,
            sync_create_batch: 1_000,
            propagation_changes: 20,
            store_single: 100,
            store_batches: 5,
            breakdown_entries: 100,
            breakdown_iters: 50,
            fleet_agents: 20,
            fleet_entries: 5,
            fleet_changes: 5,
            fleet_bundle_changes: 3,
            peer_requests: 200,
            peer_concurrency: 4,
        }
    }
}

/// The items named in `HERALD_BENCH_ONLY` (comma-separated), if set.
pub fn only_from_env() -> Option<Vec<String>> {
    const ITEMS: [&str; 11] = [
        "issuance",
        "workload",
        "rotation",
        "sync",
        "propagation",
        "store",
        "sds",
        "breakdown",
        "crossserver",
        "fleet",
        "cfssl",
    ];
    let raw = std::env::var("HERALD_BENCH_ONLY").ok()?;
    let names: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for n in &names {
        assert!(
            ITEMS.contains(&n.as_str()),
            "HERALD_BENCH_ONLY: unknown item {n:?}; items: {}",
            ITEMS.join(", ")
        );
    }
    Some(names)
}

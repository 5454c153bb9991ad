//! Herald's benchmark suite (issue 6): every figure printed beside a
//! baseline measured in the same run, and the ratio between them.
//!
//! ```text
//! cargo bench --bench herald                              # everything, full sizes
//! HERALD_BENCH_SCALE=smoke cargo bench --bench herald     # tiny sizes, seconds
//! HERALD_BENCH_ONLY=issuance,store cargo bench --bench herald
//! HERALD_BENCH_STORE=postgres HERALD_BENCH_ONLY=issuance,store cargo bench --bench herald
//! ```
//!
//! Items (names for `HERALD_BENCH_ONLY`): `issuance`, `workload`,
//! `rotation`, `sync`, `propagation`, `store`, `sds`, `breakdown`, `fleet`,
//! `cfssl`, `crossserver` (two real servers on PostgreSQL). Servers and
//! agents run in this process on their own tokio runtimes (threads named
//! `server…`, `agent…`, `bench…`, so CPU time is split by role), on temp
//! dirs under `target/tmp`, loopback TCP and Unix sockets. Where a role's
//! own CPU time or peak RSS matters, it runs as a real process instead
//! (`herald server run` in the rotation storm, `herald agent run` in the
//! entry sync), the binary cargo builds beside this bench. BENCHMARKS.md
//! records results and commands.

mod backend;
mod bound;
mod breakdown;
mod child;
mod cluster;
mod crossserver;
mod fleet;
mod fleet_agent;
#[path = "../../tests/harness/mod.rs"]
mod harness;
mod issuance;
mod measure;
mod peer_cfssl;
mod propagation;
mod report;
mod rotation;
mod scale;
mod sds;
mod store;
mod sync;
mod workload;

use report::Report;
use scale::Scale;

fn main() {
    // The harness is ours: ignore `--bench` and any filter cargo passes.
    if child::dispatch() {
        return;
    }
    measure::name_this_thread("bench-main");
    let scale = Scale::from_env();
    let only = scale::only_from_env();
    let selected = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    report::print_machine(&scale);
    let mut report = Report::new();

    // The raw crypto rates every other item compares against.
    let bound = bound::CryptoBound::measure(&scale);
    bound.print();

    // First, while this process is fresh: its in-process agent's peak RSS
    // is read from this process.
    if selected("rotation") {
        rotation::run(&scale, &bound, &mut report);
    }
    if selected("issuance") {
        issuance::run(&scale, &bound, &mut report);
    }
    if selected("workload") || selected("propagation") || selected("sds") {
        let cluster = workload::WorkloadCluster::start(&scale);
        if selected("workload") {
            workload::run(&scale, &cluster, &mut report);
        }
        if selected("propagation") {
            propagation::run(&scale, &cluster, &mut report);
        }
        if selected("sds") {
            sds::run(&scale, &cluster, &mut report);
        }
        cluster.stop();
    }
    if selected("sync") {
        sync::run(&scale, &mut report);
    }
    if selected("store") {
        store::run(&scale, &mut report);
    }
    if selected("breakdown") {
        breakdown::run(&scale, &bound, &mut report);
    }
    if selected("fleet") {
        fleet::run(&scale, &bound, &mut report);
    }
    if selected("cfssl") {
        peer_cfssl::run(&scale, &mut report);
    }
    if selected("crossserver") {
        crossserver::run(&scale, &mut report);
    }
    report.print_table();
}

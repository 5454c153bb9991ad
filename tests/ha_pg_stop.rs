//! PostgreSQL stopped for 30 s under two servers (issue 11, faults). The
//! database is really stopped (`pg_ctl stop -m fast`), so the test runs
//! its own cluster ([`PrivatePg`]) rather than the machine's shared one.
//!
//! While it is down: the agent keeps serving the SVIDs it holds (a
//! workload watching its X.509 context never holds an expired one and
//! every fetch works), both servers answer 503 on `/ready` naming the
//! store, and a write through either is refused. Once PostgreSQL is back,
//! with no operator step: both servers are ready again, an entry written
//! then reaches the agent, every write acknowledged before the outage is
//! there, and the refused one never appears.
//!
//! No wall-clock assertion: every wait has a generous deadline.

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::bin::{herald, now};
use harness::cluster::entry_create_on;
use harness::cluster::Agent;
use harness::ha::{entry_ids, eventually, ready_status, start_ha_ready_on, HaServer};
use harness::ops::get;
use harness::private_pg::PrivatePg;
use harness::svid_watch::SvidWatch;
use harness::workload::rt;

const WAIT: Duration = Duration::from_secs(90);
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(30);

fn id(name: &str) -> String {
    format!("spiffe://example.org/pg-stop/{name}")
}

/// One `herald api fetch x509` (no retry): it must work first time; the
/// leaf's NotAfter.
fn fetch_once(agent: &Agent, out: &std::path::Path) -> i64 {
    let o = herald()
        .args(["api", "fetch", "x509", "--socket"])
        .arg(&agent.socket)
        .arg("--write")
        .arg(out)
        .output()
        .expect("spawn herald");
    assert!(
        o.status.success(),
        "herald api fetch failed during the outage: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pem = std::fs::read_to_string(out.join("svid.0.pem")).expect("svid.0.pem");
    let chain = herald::ca::keys::pem_blocks(&pem, "CERTIFICATE").expect("PEM certificates");
    herald::ca::x509::cert_facts(&chain[0]).unwrap().not_after
}

fn wait_ready(servers: &[HaServer], status: u16, what: &str) {
    for (i, s) in servers.iter().enumerate() {
        assert!(
            eventually(WAIT, || ready_status(s.ops) == status),
            "server {i}: {what}; /ready says {:?}",
            get(s.ops, "/ready").body
        );
    }
}

#[test]
fn postgresql_stopped_for_30_s_agents_serve_cached_svids_and_servers_recover_alone() {
    let Some(pg) = PrivatePg::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha_ready_on(tmp.path(), &pg.url(), 2);
    wait_ready(&servers, 200, "never ready");
    let (a, b) = (&servers[0].server, &servers[1].server);
    let addrs = [a.node_addr.to_string(), b.node_addr.to_string()];
    let (token, agent_id) = a.join_token();
    let config = a
        .agent_toml(&tmp.path().join("agent"), Some(&token))
        .server_addresses(&addrs)
        .write();
    let agent = Agent::start(&config);

    // Acknowledged before the outage, through either server.
    let mut before = BTreeSet::new();
    for (i, s) in [a, b].into_iter().enumerate() {
        for n in 0..3 {
            let e = id(&format!("before-{i}-{n}"));
            s.create_entry(&e, &agent_id, &[]);
            before.insert(e);
        }
    }
    let runtime = rt();
    let watch = SvidWatch::start(&runtime, &agent.socket);
    assert!(
        eventually(WAIT, || watch.latest_ids().is_superset(&before)),
        "the agent never served {before:?}: {:?}",
        watch.latest_ids()
    );

    pg.stop();
    let stopped = Instant::now();
    wait_ready(&servers, 503, "still ready without its database");
    for (i, s) in servers.iter().enumerate() {
        let why = get(s.ops, "/ready").body;
        assert!(why.contains("store"), "server {i}: {why}");
    }
    // A write neither server can commit is refused by both.
    let refused = id("refused");
    for s in [a, b] {
        let out = entry_create_on(&s.admin_socket, &refused, &agent_id, &[]);
        assert!(
            !out.status.success(),
            "acknowledged without a database: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!out.stderr.is_empty());
    }
    // The agent serves what it holds for the whole outage.
    let fetched = tmp.path().join("fetched");
    while stopped.elapsed() < OUTAGE {
        let not_after = fetch_once(&agent, &fetched);
        assert!(not_after > now(), "an expired SVID was fetched");
        let held = watch.latest_ids();
        assert!(
            held.is_superset(&before),
            "the agent dropped SVIDs: {held:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(
            ready_status(s.ops),
            503,
            "server {i} ready without PostgreSQL"
        );
    }

    pg.start_again();
    wait_ready(&servers, 200, "not ready again once PostgreSQL is back");
    // Written through B after recovery; the agent is A's (or B's, if it
    // failed over during the outage): either way it must arrive.
    let after = id("after");
    b.create_entry(&after, &agent_id, &[]);
    assert!(
        eventually(WAIT, || watch.latest_ids().contains(&after)),
        "an entry written after recovery never reached the agent; agent log:\n{}",
        agent.proc.log_text()
    );
    for (i, s) in [a, b].into_iter().enumerate() {
        let listed = entry_ids(s);
        let lost: Vec<&String> = before.difference(&listed).collect();
        assert!(
            lost.is_empty(),
            "server {i} lost acknowledged entries {lost:?}"
        );
        assert!(listed.contains(&after), "server {i}: {listed:?}");
        assert!(
            !listed.contains(&refused),
            "server {i} lists a refused write"
        );
    }
    assert!(!watch.latest_ids().contains(&refused));
    let violations = watch.violations();
    assert!(
        violations.is_empty(),
        "the workload held an expired SVID or lost the Workload API: {violations:#?}"
    );
}

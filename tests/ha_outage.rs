//! PostgreSQL goes away under a running server (played by cutting a TCP
//! proxy between the two, not by stopping the machine's PostgreSQL): the
//! server reports not ready, refuses writes it cannot commit, and comes
//! back on its own when the database does; a write made through another
//! server during the outage reaches it afterwards, and nothing it refused
//! was written.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::cluster::Server;
use harness::ha::{
    entry_ids, eventually, ha_toml, metric, ready_status, wait_feeds, HaServer, PgProxy,
};
use harness::postgres::temp_database;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_server_cut_off_from_postgresql_is_not_ready_refuses_writes_and_recovers_alone() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let proxy = PgProxy::start(&db);
    // Server 0 reaches the database through the proxy, server 1 directly.
    let (t0, ops0) = ha_toml(tmp.path(), 0, &proxy.url(&db));
    let (t1, ops1) = ha_toml(tmp.path(), 1, db.url_text());
    let servers: Vec<HaServer> = Server::start_many(&[t0, t1])
        .into_iter()
        .zip([ops0, ops1])
        .map(|(server, ops)| HaServer { server, ops })
        .collect();
    let (cut_off, other) = (&servers[0], &servers[1]);
    wait_feeds(&servers);
    for s in &servers {
        assert!(eventually(PATIENCE, || ready_status(s.ops) == 200));
    }
    let (_, agent) = cut_off.server.join_token();
    let id = |name: &str| format!("spiffe://example.org/outage/{name}");
    cut_off.server.create_entry(&id("before"), &agent, &[]);

    proxy.cut();
    assert!(
        eventually(PATIENCE, || ready_status(cut_off.ops) == 503),
        "still ready without its database"
    );
    let why = harness::ops::get(cut_off.ops, "/ready").body;
    assert!(why.contains("store"), "{why}");
    // A write it cannot commit is refused, not acknowledged.
    let (code, out, err) = cut_off.server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        &id("refused"),
        "--parent-id",
        &agent,
        "--selector",
        "unix:uid:1",
    ]);
    assert_ne!(code, 0, "acknowledged without a database: {out}");
    assert!(!err.is_empty());
    // The other server carries on.
    assert_eq!(ready_status(other.ops), 200);
    other.server.create_entry(&id("elsewhere"), &agent, &[]);
    let resyncs = metric(
        other.ops,
        "herald_server_cluster_changes_total",
        &[("kind", "resync")],
    );

    proxy.restore();
    assert!(
        eventually(PATIENCE, || ready_status(cut_off.ops) == 200),
        "not ready again once the database is back"
    );
    let resynced = eventually(PATIENCE, || {
        metric(
            cut_off.ops,
            "herald_server_cluster_changes_total",
            &[("kind", "resync")],
        ) >= 2.0
    });
    assert!(resynced, "the change feed did not reconnect");
    // The server that stayed connected never needed to resync.
    assert_eq!(
        metric(
            other.ops,
            "herald_server_cluster_changes_total",
            &[("kind", "resync")]
        ),
        resyncs
    );
    assert_eq!(
        entry_ids(&cut_off.server),
        BTreeSet::from([id("before"), id("elsewhere")])
    );
    // And it writes again, for everyone.
    cut_off.server.create_entry(&id("after"), &agent, &[]);
    assert!(entry_ids(&other.server).contains(&id("after")));
}

//! Several real `herald server` processes on one PostgreSQL database, and
//! agents of one server hearing what is done through another: a rotation,
//! a federated bundle and a ban reach them; and a rotation waits for
//! agents that acknowledge through another server.

mod harness;

use std::time::Duration;

use futures::StreamExt as _;
use harness::ha::{eventually, next_update, start_ha_ready, synced_agent};
use harness::postgres::temp_database;
use harness::workload::rt;
use herald::proto::node;

#[test]
fn rotations_bundles_and_bans_made_through_one_server_reach_agents_of_another() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha_ready(tmp.path(), &db, 2);
    let (a, b) = (&servers[0], &servers[1]);
    let rt = rt();
    let (agent, mut sync) = synced_agent(&rt, &a.server);

    // B prepares its next CA: A's agent gets the bundle with it.
    b.server.cli_ok(&["authority", "prepare", "--kind", "x509"]);
    rt.block_on(next_update(&mut sync, "bundle with B's prepared CA", |u| {
        u.bundle
            .as_ref()
            .is_some_and(|b| b.x509_authorities.len() == 3)
    }));

    // A federated bundle set through B.
    b.server.set_foreign_bundle("peer.example", tmp.path());
    rt.block_on(next_update(
        &mut sync,
        "federated bundle set through B",
        |u| {
            u.federated_bundles_changed
                && u.federated_bundles
                    .iter()
                    .any(|f| f.trust_domain == "peer.example")
        },
    ));

    // Banned through B: its stream on A closes.
    b.server
        .cli_ok(&["agent", "ban", "--spiffe-id", &agent.id.to_string()]);
    let end = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, sync.next()).await {
                Ok(Some(Ok(_))) => continue,
                other => return other,
            }
        }
    });
    match end {
        Ok(Some(Err(status))) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}")
        }
        other => panic!("the banned agent's stream on A did not close: {other:?}"),
    }
}

#[test]
fn rotation_on_one_server_waits_for_agents_connected_to_another() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha_ready(tmp.path(), &db, 2);
    let (a, b) = (&servers[0], &servers[1]);
    let rt = rt();
    // An agent connected to B only, that acknowledges nothing yet.
    let (agent, mut sync) = synced_agent(&rt, &b.server);
    let me = agent.id.to_string();
    let lagging_on_a = || {
        let shown = a.server.cli_json(&["authority", "show"]);
        let lagging: Vec<String> = shown["lagging_agents"]
            .as_array()
            .unwrap_or_else(|| panic!("{shown}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        lagging
    };
    // A prepares a CA: until B's agent holds it, A names it as lagging.
    let prepared = a
        .server
        .cli_json(&["authority", "prepare", "--kind", "x509"]);
    let sequence = prepared["bundle_sequence"].as_u64().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || lagging_on_a()
            == vec![me.clone()]),
        "A does not wait for B's agent: {:?}",
        lagging_on_a()
    );
    // B pushes the new bundle; the agent acknowledges it to B.
    let update = rt.block_on(next_update(&mut sync, "bundle with A's prepared CA", |u| {
        u.bundle.as_ref().is_some_and(|b| b.sequence >= sequence)
    }));
    let held = update.bundle.unwrap().sequence;
    rt.block_on(async {
        agent
            .connector
            .authenticated(&agent.cred)
            .await
            .unwrap()
            .ack_bundle(node::AckBundleRequest { sequence: held })
            .await
            .unwrap();
    });
    assert!(
        eventually(Duration::from_secs(20), || lagging_on_a().is_empty()),
        "A still waits for an agent that acknowledged through B: {:?}",
        lagging_on_a()
    );
}

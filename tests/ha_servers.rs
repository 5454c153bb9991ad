//! Several real `herald server` processes of one trust domain on one real
//! PostgreSQL database (a database of each test's own):
//!
//! - servers started at the same moment on an empty database make one
//!   schema and one bundle holding every server's CA, without deadlock;
//! - entries created concurrently through every server each reach every
//!   server's change feed exactly once (counted by each server), and an
//!   agent connected to one server receives those created through others;
//! - an entry created through server B reaches a real agent connected to
//!   server A, pushed (the latency is printed);
//! - a join token stays single-use: two servers racing on it, one wins.

mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harness::bin::{assert_success, my_uid};
use harness::cluster::entry_create_on;
use harness::cluster::Agent;
use harness::ha::{
    eventually, metric, pg_rows, start_ha, start_ha_ready, wait_one_bundle_of, HaServer,
};
use harness::node::NodeAgent;
use harness::postgres::temp_database;
use harness::workload::{client, rt};
use herald::ca::{KeyPair, KeyType};
use herald::node::{make_csr, ServerConnector};
use herald::proto::node;
use herald::spiffe::TrustDomain;
use herald::tls::Roots;

#[test]
fn servers_started_together_on_an_empty_database_share_one_schema_and_bundle() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // All three race to migrate, mint and publish.
    let servers = start_ha(tmp.path(), &db, 3);
    let versions = pg_rows(&db, "SELECT version FROM schema_version ORDER BY version");
    assert_eq!(
        versions,
        vec![vec![Some("1".into())], vec![Some("2".into())]]
    );
    let bundle = wait_one_bundle_of(&servers, 3);
    // Each server's own active CA is one of the three.
    for s in &servers {
        let own = s.server.cli_json(&["authority", "show"]);
        let active = own["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "x509")
            .count();
        assert_eq!(active, 1, "{own}");
    }
    let rows = pg_rows(
        &db,
        "SELECT count(DISTINCT record->>'server_id') FROM authorities",
    );
    assert_eq!(rows, vec![vec![Some("3".into())]]);
    assert_eq!(bundle.len(), 3);
}

/// Attests through `s` with `token`: the SPIFFE ID, or the refusal.
async fn attest(s: &HaServer, roots: Vec<Vec<u8>>, token: &str) -> Result<String, tonic::Status> {
    let td = TrustDomain::new(&s.server.td).unwrap();
    let connector =
        ServerConnector::new(s.server.node_addr, &td, Roots::new(roots), false).unwrap();
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let request = node::AttestRequest {
        join_token: token.to_string(),
        csr: make_csr(&key).unwrap(),
        ..Default::default()
    };
    let resp = connector.anonymous().await.unwrap().attest(request).await?;
    Ok(resp.into_inner().spiffe_id)
}

#[test]
fn two_servers_racing_on_one_join_token_admit_exactly_one_agent() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha(tmp.path(), &db, 2);
    let roots = wait_one_bundle_of(&servers, 2);
    let rt = rt();
    for round in 0..10 {
        // Made through one server, presented to both at once.
        let (token, agent_id) = servers[round % 2].server.join_token();
        let (a, b) = rt.block_on(async {
            tokio::join!(
                attest(&servers[0], roots.clone(), &token),
                attest(&servers[1], roots.clone(), &token)
            )
        });
        let won: Vec<&String> = [&a, &b]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {a:?} / {b:?}");
        assert_eq!(won[0], &agent_id);
        let lost = [a, b].into_iter().find_map(Result::err).unwrap();
        assert_eq!(
            lost.code(),
            tonic::Code::PermissionDenied,
            "round {round}: {lost:?}"
        );
    }
}

/// Creates an entry for this process under `parent` through the server
/// whose admin socket is `socket`; its ID.
fn create(socket: &Path, path: &str, parent: &str) -> String {
    let id = format!("spiffe://example.org/{path}");
    let extra = ["--output", "json"];
    let out = assert_success(
        &["entry", "create", &id],
        &entry_create_on(socket, &id, parent, &extra),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["results"][0]["entry"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn entries_created_concurrently_through_every_server_reach_every_server_once() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha_ready(tmp.path(), &db, 3);
    let rt = rt();
    // A node agent on server 0 follows its Sync stream.
    let (agent, mut sync) = rt.block_on(async {
        let agent = NodeAgent::join(&servers[0].server).await;
        let sync = agent.sync().await;
        (agent, sync)
    });
    let parent = agent.id.to_string();
    const EACH: usize = 15;
    let created: Vec<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..2).map(move |w| (i, w, s.server.admin_socket.clone())))
            .map(|(i, w, socket)| {
                let parent = parent.clone();
                scope.spawn(move || {
                    (0..EACH)
                        .map(|n| create(&socket, &format!("s{i}/w{w}/{n}"), &parent))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let total = created.len();
    assert_eq!(total, 3 * 2 * EACH);
    assert!(created.iter().all(|id| !id.is_empty()));
    // Each create is one transaction, hence one `entries` event; every
    // server reads each exactly once, its own and the others'.
    for (i, s) in servers.iter().enumerate() {
        let seen = |s: &HaServer| {
            metric(
                s.ops,
                "herald_server_cluster_changes_total",
                &[("kind", "entries")],
            )
        };
        let all = eventually(Duration::from_secs(30), || seen(s) >= total as f64);
        assert!(all, "server {i} read {} of {total} entry events", seen(s));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(seen(s), total as f64, "server {i} read an event twice");
    }
    // The agent on server 0 got every entry, whichever server made it.
    let want: BTreeSet<String> = created.into_iter().collect();
    let got = rt.block_on(async {
        let mut got = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !want.is_subset(&got) {
            let next = tokio::time::timeout_at(deadline, sync.next()).await;
            let Ok(Some(Ok(update))) = next else { break };
            got.extend(update.upserted.into_iter().map(|e| e.id));
        }
        got
    });
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "never reached the agent: {missing:?}");
}

#[test]
fn an_entry_made_through_one_server_reaches_an_agent_of_another_pushed() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let servers = start_ha_ready(tmp.path(), &db, 2);
    // A real agent on server A; entries are made through server B.
    let (token, agent_id) = servers[0].server.join_token();
    let agent = Agent::start(
        &servers[0]
            .server
            .agent_config(&tmp.path().join("agent"), Some(&token)),
    );
    let rt = rt();
    let c = rt.block_on(client(&agent.socket));
    let uid = my_uid();
    let mut latencies = Vec::new();
    let mut stream = None;
    for round in 0..8 {
        let id = format!("spiffe://example.org/cross/uid{uid}/{round}");
        let started = Instant::now();
        servers[1].server.create_entry(&id, &agent_id, &[]);
        let committed = Instant::now();
        if stream.is_none() {
            // The first entry makes this process a workload: from then on
            // its context stream is open.
            rt.block_on(harness::workload::wait_for_svid(&c));
            stream = Some(rt.block_on(c.stream_x509_contexts()).unwrap());
            continue;
        }
        let s = stream.as_mut().unwrap();
        let arrived = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let next = tokio::time::timeout_at(deadline, s.next()).await;
                let ctx = next
                    .unwrap_or_else(|_| {
                        panic!("{id} made through server B never reached the agent of server A")
                    })
                    .expect("the context stream ended")
                    .expect("an X.509 context");
                if ctx
                    .svids()
                    .iter()
                    .any(|svid| svid.spiffe_id().to_string() == id)
                {
                    return Instant::now();
                }
            }
        });
        latencies.push((arrived - committed, arrived - started));
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    println!(
        "cross-server propagation (entry made through B, SVID on the Workload API of A's agent), {} rounds: \
         from commit p50 {:.1} ms max {:.1} ms; from the create command p50 {:.1} ms max {:.1} ms",
        latencies.len(),
        ms(p50.0),
        ms(max.0),
        ms(p50.1),
        ms(max.1)
    );
}

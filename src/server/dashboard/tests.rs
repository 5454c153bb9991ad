//! The server's dashboard views over a real state and store, read through
//! the JSON endpoints as the page reads them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::ServerDashboard;
use crate::ops::dashboard::tests::{json_of, local};
use crate::ops::dashboard::{Dashboard, Source, Topic};
use crate::registration::{RegistrationEntry, Selector};
use crate::server::federation::{spawn_refresher, WebRoots};
use crate::server::state::{test_state, ServerEvent, ServerState};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};
use crate::store::{AttestedAgent, SledStore};

const AGENT: &str = "spiffe://example.org/herald/agent/a";
const OFFLINE: &str = "spiffe://example.org/herald/agent/b";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn entry(spiffe_id: &str, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    let selectors = selectors
        .iter()
        .map(|s| {
            let (kind, value) = s.split_once(':').unwrap();
            Selector::new(kind, value).unwrap()
        })
        .collect();
    RegistrationEntry::new(id(spiffe_id), id(parent), selectors)
}

fn agent(spiffe_id: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: id(spiffe_id),
        attestation_type: "join_token".into(),
        serial: "0a1b".into(),
        expires_at: crate::clock::now_unix() + 3600,
        banned: false,
        selectors: Vec::new(),
        created_at: 1,
        updated_at: 2,
    }
}

struct Fixture {
    state: Arc<ServerState>,
    source: Arc<ServerDashboard>,
    dashboard: Dashboard,
    _stop: watch::Sender<bool>,
    _connection: crate::server::state::Connection,
    _dir: tempfile::TempDir,
}

/// A server with three entries (one federating with peer.org, two
/// overlapping), a connected agent that acknowledged the bundle and was
/// sent one entry, an offline agent, one named by a join token, and
/// peer.org's bundle set by hand.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = test_state(SledStore::open(dir.path()).unwrap());
    let mut web = entry("spiffe://example.org/web", AGENT, &["unix:uid:1000"]);
    web.federates_with = vec![TrustDomain::new("peer.org").unwrap()];
    web.x509_svid_ttl = 600;
    let db = entry(
        "spiffe://example.org/db",
        AGENT,
        &["unix:uid:1000", "unix:gid:5"],
    );
    let batch = entry("spiffe://example.org/batch", OFFLINE, &["k8s:ns:jobs"]);
    let created = state.store.create_entries(vec![web, db, batch]).unwrap();
    let web_id = created[0].as_ref().unwrap().id.clone();
    for a in [AGENT, OFFLINE] {
        state.store.attest_agent(&agent(a)).unwrap();
    }
    let tokened = format!("spiffe://example.org/herald/agent/join_token/{TOKEN}");
    state.store.attest_agent(&agent(&tokened)).unwrap();
    let mut peer = Bundle::new(TrustDomain::new("peer.org").unwrap());
    peer.sequence = 3;
    state.store.set_bundle(&peer).unwrap();

    let connection = state.agent_connected(&id(AGENT));
    state.agent_acked(&id(AGENT), state.authorities().bundle().sequence);
    let web_entry = state.store.get_entry(&web_id).unwrap().unwrap();
    let sent = crate::server::authorized::sent_form(&[(web_id, web_entry)].into_iter().collect());
    state.set_authorized(&id(AGENT), Arc::new(sent));

    let (stop, stop_rx) = watch::channel(false);
    let (refresher, _task) = spawn_refresher(state.clone(), WebRoots::empty(), stop_rx.clone());
    let source = ServerDashboard::new(state.clone(), refresher, stop_rx.clone());
    let dashboard = Dashboard::new(source.clone(), stop_rx);
    Fixture {
        state,
        source,
        dashboard,
        _stop: stop,
        _connection: connection,
        _dir: dir,
    }
}

impl Fixture {
    async fn get(&self, path: &str) -> Value {
        let r = self.dashboard.answer(&local(path)).await;
        assert_eq!(r.status(), http::StatusCode::OK, "{path}");
        json_of(r).await
    }
}

#[tokio::test]
async fn the_overview_shows_authorities_bundle_acks_and_budget() {
    let f = fixture().await;
    let o = f.get("/dashboard/api/overview").await;
    assert_eq!(o["trust_domain"], "example.org");
    let sequence = f.state.authorities().bundle().sequence;
    assert_eq!(o["bundle"]["sequence"], sequence);
    assert_eq!(o["bundle"]["agents_connected"], 1);
    assert_eq!(o["bundle"]["agents_acked"], 1);
    let states: Vec<(&str, &str)> = o["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("x509", "active")), "{states:?}");
    assert!(states.contains(&("jwt", "active")), "{states:?}");
    let x509 = o["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "x509")
        .unwrap();
    assert!(x509["prepare_at"].as_i64() < x509["activate_at"].as_i64());
    // The web entry's 600 s lifetime is the shortest: renewed by 300 s left.
    assert_eq!(o["outage_budget"]["seconds"], 300);
    assert_eq!(o["outage_budget"]["earliest_agent"]["id"], AGENT);
    assert_eq!(o["counts"]["entries"], 3);
    assert_eq!(o["counts"]["agents"], 3);
    assert_eq!(o["counts"]["agents_connected"], 1);
    // The overlap of web's and db's selectors, at least.
    assert!(
        o["counts"]["findings"]["warning"].as_u64().unwrap() >= 1,
        "{o}"
    );
}

#[tokio::test]
async fn agents_show_connection_acknowledgement_and_no_join_token() {
    let f = fixture().await;
    let body = f.get("/dashboard/api/agents").await;
    let agents = body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 3);
    // Connected first.
    assert_eq!(agents[0]["id"], AGENT);
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[0]["bundle_acked"], true);
    assert_eq!(agents[0]["entries"], 1);
    let offline = agents.iter().find(|a| a["id"] == OFFLINE).unwrap();
    assert_eq!(offline["connected"], false);
    assert_eq!(offline["bundle_acked"], false);
    assert_eq!(offline["entries"], Value::Null);
    let text = body.to_string();
    assert!(!text.contains(TOKEN), "a join token on the page: {text}");
    assert!(
        text.contains("/herald/agent/join_token/0123...sha256:"),
        "{text}"
    );
}

#[tokio::test]
async fn entries_are_searched_paged_and_show_their_agents() {
    let f = fixture().await;
    let all = f.get("/dashboard/api/entries").await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["matched"], 3);
    let ids: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["spiffe_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "spiffe://example.org/batch",
            "spiffe://example.org/db",
            "spiffe://example.org/web"
        ]
    );

    let by_selector = f
        .get("/dashboard/api/entries?q=UNIX:uid:1000&field=selector&page_size=1")
        .await;
    assert_eq!(by_selector["matched"], 2);
    assert_eq!(by_selector["pages"], 2);
    assert_eq!(
        by_selector["entries"][0]["spiffe_id"],
        "spiffe://example.org/db"
    );
    let second = f
        .get("/dashboard/api/entries?q=uid:1000&field=selector&page_size=1&page=1")
        .await;
    let web = &second["entries"][0];
    assert_eq!(web["spiffe_id"], "spiffe://example.org/web");
    assert_eq!(
        web["agents"],
        serde_json::json!([{ "id": AGENT, "connected": true }])
    );
    assert_eq!(web["federates_with"], serde_json::json!(["peer.org"]));

    let by_parent = f.get("/dashboard/api/entries?q=agent/b&field=parent").await;
    assert_eq!(by_parent["matched"], 1);
    let batch = &by_parent["entries"][0];
    assert_eq!(
        batch["agents"],
        serde_json::json!([{ "id": OFFLINE, "connected": false }])
    );
    let none = f
        .get("/dashboard/api/entries?q=agent/b&field=spiffe_id")
        .await;
    assert_eq!(none["matched"], 0);
}

#[tokio::test]
async fn federation_and_findings_are_the_admin_apis_and_checks() {
    let f = fixture().await;
    let fed = f.get("/dashboard/api/federation").await;
    assert_eq!(fed["relationships"], serde_json::json!([]));
    assert_eq!(
        fed["bundles"],
        serde_json::json!([{ "trust_domain": "peer.org", "sequence": 3, "relationship": false, "entries": 1 }])
    );
    let findings = f.get("/dashboard/api/findings").await;
    let checks: Vec<&str> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    // db's selectors include web's, under one agent: a workload with both
    // would get both identities.
    assert!(checks.contains(&"selector_overlap"), "{checks:?}");
    assert_eq!(findings["counts"]["error"].as_u64().unwrap() as usize, {
        let errors = findings["findings"].as_array().unwrap();
        errors.iter().filter(|f| f["severity"] == "error").count()
    });
}

/// Waits for `want` among the changes.
async fn changed(rx: &mut tokio::sync::broadcast::Receiver<Topic>, want: Topic) {
    let wait = async {
        loop {
            if rx.recv().await.unwrap() == want {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {want:?} change within 10 s"));
}

#[tokio::test]
async fn changes_come_from_events_and_from_agents_connecting() {
    let f = fixture().await;
    let mut rx = f.source.changes();
    f.state.publish(ServerEvent::EntriesChanged);
    changed(&mut rx, Topic::Entries).await;
    f.state.publish(ServerEvent::BundleChanged);
    changed(&mut rx, Topic::Bundle).await;
    // No event is published when an agent connects or acknowledges a
    // bundle: the periodic look sees it. (Changed until seen, since the
    // first look is the baseline and may come after the first change.)
    let _second = f.state.agent_connected(&id(OFFLINE));
    let acking = async {
        for sequence in 100.. {
            f.state.agent_acked(&id(OFFLINE), sequence);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::select! {
        () = changed(&mut rx, Topic::Agents) => {}
        () = acking => unreachable!("acknowledging never ends"),
    }
}

/// One GET over TCP to a real ops listener: the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn only_an_ops_listener_on_loopback_serves_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let state = test_state(SledStore::open(dir.path()).unwrap());
    let (stop, stop_rx) = watch::channel(false);
    let (refresher, _task) = spawn_refresher(state.clone(), WebRoots::empty(), stop_rx.clone());
    let role = crate::server::metrics::ServerOps::new(state, refresher, stop_rx.clone());

    let local = crate::ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        vec![role.clone()],
        stop_rx.clone(),
    );
    let local = local.await.unwrap();
    assert!(local.dashboard);
    let (status, body) = http_get(local.address, "/").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("/dashboard/app.js"));
    // The listener hands each request its peer: the check passes for a
    // loopback client, and JSON comes back.
    let (status, body) = http_get(local.address, "/dashboard/api/agents").await;
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains("\"agents\":[]"), "{body}");

    let any = crate::ops::serve("0.0.0.0:0".parse().unwrap(), vec![role], stop_rx)
        .await
        .unwrap();
    assert!(!any.dashboard);
    let reached = std::net::SocketAddr::from(([127, 0, 0, 1], any.address.port()));
    let (status, _) = http_get(reached, "/").await;
    assert!(status.contains("404"), "{status}");
    let (status, _) = http_get(reached, "/dashboard/api/overview").await;
    assert!(status.contains("404"), "{status}");
    let (status, _) = http_get(reached, "/live").await;
    assert!(status.contains("200"), "{status}");
    stop.send_replace(true);
}

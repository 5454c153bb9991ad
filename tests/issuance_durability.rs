//! The issuance log under concurrent signing: many one-CSR calls at once
//! share their durable writes (a flush, a commit) in groups. A `herald
//! server run` process signs for 16 callers and is killed with SIGKILL
//! while they call; every X509-SVID a caller received must then have its
//! issuance record in the store, on sled and on PostgreSQL.

mod harness;

use std::sync::{Arc, Mutex};

use harness::cluster::Server;
use harness::config::ServerToml;
use harness::node::NodeAgent;
use harness::postgres::{store_table, temp_database};
use harness::workload::rt;
use herald::ca::{KeyPair, KeyType};
use herald::node::make_csr;
use herald::proto::admin::{self, entries_client::EntriesClient};
use herald::proto::node;
use herald::store::postgres::{PostgresSettings, PostgresStore};
use herald::store::{DataStore, SledStore};

/// Callers signing at once, each on its own connection.
const CALLERS: usize = 16;
/// SVIDs received before the server is killed.
const ACKS_BEFORE_KILL: usize = 300;

/// An SVID a caller received: its serial and the entry it was for.
type Ack = (String, String);

#[test]
fn acknowledged_issuances_survive_sigkill_on_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(&ServerToml::new(tmp.path()));
    let acked = sign_until_killed(server);
    let store = SledStore::open(&tmp.path().join("data/store")).unwrap();
    assert_recorded(&store, &acked);
}

#[test]
fn acknowledged_issuances_survive_sigkill_on_postgres() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let toml = ServerToml::new(tmp.path()).extra(&store_table(&db, tmp.path()));
    let acked = sign_until_killed(Server::start_with(&toml));
    let store = PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap();
    assert_recorded(&store, &acked);
}

/// Registers entries for an agent, signs one CSR per call from
/// [`CALLERS`] connections, SIGKILLs the server once [`ACKS_BEFORE_KILL`]
/// SVIDs came back (calls still in flight), and returns every SVID any
/// caller received, those answered after the kill was decided included.
fn sign_until_killed(mut server: Server) -> Vec<Ack> {
    let rt = rt();
    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    rt.block_on(async {
        let agent = NodeAgent::join(&server).await;
        let entry_ids = create_entries(&server, &agent, CALLERS * 4).await;
        let csr = make_csr(&KeyPair::generate(KeyType::EcP256).unwrap()).unwrap();
        let mut callers = Vec::new();
        for c in 0..CALLERS {
            let mut client = agent.connector.authenticated(&agent.cred).await.unwrap();
            let (acked, csr) = (acked.clone(), csr.clone());
            let entry_ids = entry_ids.clone();
            callers.push(tokio::spawn(async move {
                for i in 0.. {
                    let entry_id = entry_ids[(c + i * CALLERS) % entry_ids.len()].clone();
                    let params = vec![node::NewX509svidParams {
                        entry_id: entry_id.clone(),
                        csr: csr.clone(),
                    }];
                    let req = node::BatchNewX509svidRequest { params };
                    // The server is gone: this caller is done.
                    let Ok(resp) = client.batch_new_x509svid(req).await else {
                        return;
                    };
                    let result = &resp.get_ref().results[0];
                    assert_eq!(result.code, 0, "not signed: {}", result.message);
                    let serial = herald::ca::x509::cert_facts(&result.cert_chain[0])
                        .unwrap()
                        .serial;
                    acked.lock().unwrap().push((serial, entry_id));
                }
            }));
        }
        while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        server.proc.kill(); // SIGKILL: no flush on exit, calls in flight
        for caller in callers {
            caller.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKS_BEFORE_KILL, "only {}", acked.len());
    acked
}

/// Creates `n` entries under `agent` through the admin socket; their ids.
async fn create_entries(server: &Server, agent: &NodeAgent, n: usize) -> Vec<String> {
    let channel = herald::uds::connect_unix(&server.admin_socket)
        .await
        .unwrap();
    let entries = (0..n)
        .map(|i| admin::Entry {
            spiffe_id: format!("spiffe://example.org/durable/{i}"),
            parent_id: agent.id.to_string(),
            selectors: vec![admin::Selector {
                r#type: "unix".into(),
                value: format!("uid:{}", 5_000 + i),
            }],
            ..Default::default()
        })
        .collect();
    let resp = EntriesClient::new(channel)
        .batch_create_entry(admin::BatchCreateEntryRequest { entries })
        .await
        .unwrap()
        .into_inner();
    resp.results
        .into_iter()
        .map(|r| {
            let status = r.status.unwrap_or_default();
            assert_eq!(status.code, 0, "entry refused: {}", status.message);
            r.entry.unwrap().id
        })
        .collect()
}

/// Every acknowledged SVID has its record, naming the entry it was for.
fn assert_recorded(store: &dyn DataStore, acked: &[Ack]) {
    for (serial, entry_id) in acked {
        let record = store
            .get_issuance(serial)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged SVID {serial} has no issuance record"));
        assert_eq!(record.entry_id.as_deref(), Some(entry_id.as_str()));
    }
}

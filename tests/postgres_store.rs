//! A real `herald server` on PostgreSQL (`[store] kind = "postgres"`): an
//! agent gets its workload's SVID over the Workload API, and the entry and
//! the agent survive a server restart. And `herald store migrate` from the
//! sled data directory a real server populated: every record of every
//! family is compared between the two stores.
//!
//! Each test has a database of its own (see `harness::postgres`).

mod harness;

use harness::bin::{herald, my_uid};
use harness::cluster::Server;
use harness::config::ServerToml;
use harness::postgres::{store_table, temp_database};
use harness::workload::{client, rt, wait_for_svid};
use herald::store::postgres::{PostgresSettings, PostgresStore};
use herald::store::{DataStore, EntryFilter, PageRequest, SledStore};

#[test]
fn a_server_on_postgres_serves_svids_and_keeps_its_state_across_a_restart() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let port = harness::dirs::free_port();
    let toml = ServerToml::new(&server_dir)
        .bind_address(&format!("127.0.0.1:{port}"))
        .extra(&store_table(&db, &server_dir));
    let server = Server::start_with(&toml);
    let (agent, agent_id) = server.start_agent(&tmp.path().join("agent"));
    let workload = format!("spiffe://example.org/pg/uid{}", my_uid());
    let entry_id = server.create_entry(&workload, &agent_id, &[]);
    assert!(!entry_id.is_empty());

    let svid = rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await
    });
    assert_eq!(svid.spiffe_id().to_string(), workload);
    // Nothing went to a sled store.
    assert!(!server_dir.join("data/store").exists());

    let server = server.relaunch();
    // The schema is already there: no PostgreSQL NOTICE in the log.
    let log = server.proc.log_text();
    assert!(!log.contains("already exists"), "{log}");
    let shown = server.cli_json(&["entry", "show", "--entry-id", &entry_id]);
    assert_eq!(shown["spiffe_id"], workload.as_str(), "{shown}");
    let agents = server.cli_json(&["agent", "list"]);
    assert!(agents.to_string().contains(&agent_id), "{agents}");
    // The restarted server still serves the agent (its next sync).
    let again = rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await
    });
    assert_eq!(again.spiffe_id().to_string(), workload);
}

/// A self-signed CA certificate (PEM) of trust domain `td`.
fn ca_of(td: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(format!("spiffe://{td}")).unwrap(),
    )];
    params.self_signed(&key).unwrap().pem()
}

/// Every page of `list`, concatenated.
fn all_pages<T>(mut list: impl FnMut(&PageRequest) -> herald::store::Page<T>) -> Vec<T> {
    let mut page = PageRequest::default();
    let mut out = Vec::new();
    loop {
        let got = list(&page);
        out.extend(got.items);
        match got.next_token {
            Some(t) => page.token = Some(t),
            None => return out,
        }
    }
}

#[test]
fn store_migrate_from_a_running_servers_data_dir_says_to_stop_it() {
    let tmp = tempfile::tempdir().unwrap();
    let _server = Server::start_with(&ServerToml::new(&tmp.path().join("server")));
    // The sled store is opened before the database is reached: none is needed.
    let out = herald()
        .args(["store", "migrate", "--from"])
        .arg(tmp.path().join("server/data"))
        .args(["--to", "host=127.0.0.1 port=1 dbname=unused"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stop the server first"), "{stderr}");
}

#[test]
fn store_migrate_copies_every_record_of_a_real_servers_sled_store() {
    let Some(db) = temp_database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A sled server with records of every family.
    let mut server = Server::start_with(&ServerToml::new(&tmp.path().join("server")));
    let (_agent, agent_id) = server.start_agent(&tmp.path().join("agent"));
    for i in 0..5 {
        server.create_entry(&format!("spiffe://example.org/m/{i}"), &agent_id, &[]);
    }
    let _unused_token = server.join_token();
    server.cli_ok(&[
        "federation",
        "create",
        "--trust-domain",
        "b.org",
        "--bundle-endpoint-url",
        "https://127.0.0.1:1/bundle",
        "--profile",
        "https_web",
    ]);
    let pem = tmp.path().join("c.org.pem");
    std::fs::write(&pem, ca_of("c.org")).unwrap();
    server.cli_ok(&[
        "bundle",
        "set",
        "--trust-domain",
        "c.org",
        "--path",
        pem.to_str().unwrap(),
        "--format",
        "pem",
    ]);
    server.cli_ok(&["authority", "prepare", "--kind", "x509"]);
    // An SVID issued for a workload, so that the issuance log has records.
    let workload = format!("spiffe://example.org/m/uid{}", my_uid());
    server.create_entry(&workload, &agent_id, &[]);
    rt().block_on(async {
        let c = client(&_agent.socket).await;
        wait_for_svid(&c).await
    });
    drop(_agent);
    server.proc.stop();

    let data_dir = tmp.path().join("server/data");
    let migrate = |url: &str| {
        herald()
            .args(["store", "migrate", "--from"])
            .arg(&data_dir)
            .args(["--sslmode", "disable"])
            .env("HERALD_STORE_URL", url)
            .output()
            .unwrap()
    };
    let out = migrate(db.url_text());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("registration entries"), "{stdout}");

    // A second migration into the now non-empty database is refused.
    let out = migrate(db.url_text());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");

    let sled = SledStore::open(&data_dir.join("store")).unwrap();
    let pg = PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap();
    let everything = EntryFilter::default();
    let entries = all_pages(|p| sled.list_entries(&everything, p).unwrap());
    assert_eq!(entries.len(), 6);
    assert_eq!(
        entries,
        all_pages(|p| pg.list_entries(&everything, p).unwrap())
    );
    let agents = all_pages(|p| sled.list_agents(p).unwrap());
    assert_eq!(agents.len(), 1);
    assert_eq!(agents, all_pages(|p| pg.list_agents(p).unwrap()));
    let bundles = sled.list_bundles().unwrap();
    assert_eq!(bundles.len(), 2, "own and c.org");
    assert_eq!(bundles, pg.list_bundles().unwrap());
    let rels = sled.list_federation_relationships().unwrap();
    assert_eq!(rels.len(), 1);
    assert_eq!(rels, pg.list_federation_relationships().unwrap());
    let authorities = sled.list_authorities().unwrap();
    assert!(authorities.len() >= 3, "x509 active + prepared, jwt");
    assert_eq!(authorities, pg.list_authorities().unwrap());
    let issuances = sled.export_issuances().unwrap();
    assert!(issuances.len() >= 2, "agent and workload SVIDs");
    assert_eq!(pg.count_issuances().unwrap(), issuances.len() as u64);
    for record in &issuances {
        assert_eq!(
            pg.get_issuance(&record.serial).unwrap().as_ref(),
            Some(record)
        );
    }
    let tokens = sled.export_join_tokens().unwrap();
    assert_eq!(tokens.len(), 1, "the unused token");
    for token in tokens {
        assert_eq!(pg.consume_join_token(&token.token, 0).unwrap(), token);
    }
}

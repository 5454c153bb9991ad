//! Node aliases with real processes: a server trusting two machine PKIs
//! made at test time (`ca_bundle_paths`), three x509pop agents (db-1 and
//! db-2 from one CA, web-1 from the other). An alias by CA fingerprint and
//! one by subject CN (`herald entry create --node`) each parent a workload
//! entry: exactly the agents they name serve it, the other does not;
//! deleting an alias takes its workloads off its agents (a Sync push);
//! `herald check` finds no orphaned parent; aliases refuse workload
//! selectors.

mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::bin::my_uid;
use harness::cluster::{Agent, Server};
use harness::workload::{client, rt};
use harness::x509pop::{agent_config, alias_args, create_alias, default_agent_id, server};
use herald::x509pop::fingerprint;
use herald::x509pop::test_pki::{TestCa, TestPki};

/// The SPIFFE IDs (paths) the agent at `socket` serves this process now
/// (none when it serves nothing).
async fn served(socket: &Path) -> BTreeSet<String> {
    match client(socket).await.fetch_x509_context().await {
        Ok(ctx) => ctx
            .svids()
            .iter()
            .map(|s| s.spiffe_id().path().to_string())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Waits until the agent at `socket` serves exactly `want`; panics
/// naming `agent` and what it served after 30 s.
fn wait_serves(agent: &str, socket: &Path, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt().block_on(async {
        loop {
            let got = served(socket).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{agent} serves {got:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// `herald entry create` of a workload entry for this very process under
/// `parent`; its entry ID.
fn workload(server: &Server, path: &str, parent: &str) -> String {
    server.create_entry(&format!("spiffe://example.org{path}"), parent, &[])
}

/// A node alias entry for `spiffe://example.org<path>`; its entry ID.
fn alias(server: &Server, path: &str, selectors: &[&str]) -> String {
    create_alias(server, &format!("spiffe://example.org{path}"), selectors)
}

struct Node {
    name: &'static str,
    id: String,
    agent: Agent,
}

fn start(server: &Server, dir: &Path, name: &'static str, pki: (&TestCa, &TestCa)) -> Node {
    let (_, inter) = pki;
    let machine = inter
        .machine(
            name,
            &format!("{name}.example.net"),
            rcgen::KeyPair::generate().unwrap(),
        )
        .unwrap();
    let config = agent_config(server, &dir.join(name), &machine, inter, "");
    Node {
        name,
        id: default_agent_id(&machine),
        agent: Agent::start(&config),
    }
}

#[test]
fn aliases_give_workload_entries_to_every_agent_they_name_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let db_pki = TestPki::new("db machines", "unused", "unused.example.net").unwrap();
    let web_root = TestCa::root("web machines root").unwrap();
    let web_inter = web_root.intermediate("web machines intermediate").unwrap();
    let server = server(dir.path(), &[&db_pki.root, &web_root], "", "");
    let db = (&db_pki.root, &db_pki.inter);
    let nodes = [
        start(&server, dir.path(), "db-1", db),
        start(&server, dir.path(), "db-2", db),
        start(&server, dir.path(), "web-1", (&web_root, &web_inter)),
    ];

    let db_ca = format!(
        "x509pop:ca:fingerprint:{}",
        fingerprint(&db_pki.inter.der())
    );
    let fleet = alias(&server, "/fleet/db", &[&db_ca]);
    alias(&server, "/fleet/db-1", &["x509pop:subject:cn:db-1", &db_ca]);
    workload(&server, "/db", "spiffe://example.org/fleet/db");
    workload(&server, "/db-primary", "spiffe://example.org/fleet/db-1");
    // Created after the rest: an agent serving its marker has had every
    // change before it, so what it does not serve it was not given.
    for n in &nodes {
        workload(&server, &format!("/marker/{}", n.name), &n.id);
    }
    let expect = |n: &Node, extra: &[&str]| {
        let marker = format!("/marker/{}", n.name);
        let mut want = vec![marker.as_str()];
        want.extend_from_slice(extra);
        wait_serves(n.name, &n.agent.socket, &want);
    };
    expect(&nodes[0], &["/db", "/db-primary"]);
    expect(&nodes[1], &["/db"]);
    expect(&nodes[2], &[]);

    // `herald check` finds no parent nothing stands for, and no idle alias.
    let (_, out, stderr) = server.cli(&["check", "--output", "json"]);
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {stderr}"));
    assert!(
        !findings
            .iter()
            .any(|f| f["check"] == "entry_parent" || f["check"] == "node_alias"),
        "{findings:#?}"
    );

    // The alias by CA goes: its workload leaves both db agents, pushed.
    server.cli_ok(&["entry", "delete", "--entry-id", &fleet]);
    expect(&nodes[0], &["/db-primary"]);
    expect(&nodes[1], &[]);
    expect(&nodes[2], &[]);
}

#[test]
fn alias_entries_refuse_workload_selectors_and_svid_fields() {
    let server = Server::start_temp();
    let uid = format!("unix:uid:{}", my_uid());
    let fleet = "spiffe://example.org/fleet";
    let args = alias_args(fleet, &[&uid], &[]);
    let out = server.cli_fails(&args, 2, "is not a node selector type");
    assert!(out.contains("selectors[0].type"), "{out}");
    let cn = "x509pop:subject:cn:a";
    let args = alias_args(fleet, &[cn], &["--dns-name", "a.example.org"]);
    server.cli_fails(&args, 2, "no SVID is issued for an alias");
    // --node names the parent itself.
    let args = alias_args(fleet, &[cn], &["--parent-id", "spiffe://example.org/x"]);
    server.cli_fails(&args, 2, "--parent-id");
}

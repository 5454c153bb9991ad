//! An agent with several servers (issue 11, agents): `server_address`
//! lists them (a DNS name among them), the agent attests past a closed
//! port, and when its server dies it fails over to the next one, resumes
//! its Sync without a full re-download, and its workload keeps getting
//! fresh SVIDs. Real processes: `herald server run` (killed with SIGKILL,
//! then started from the same data directory on another port), `herald
//! agent run`, the `spiffe` crate and `herald api fetch` as the workload.
//!
//! No wall-clock assertion: every wait has a generous deadline.

mod harness;

use std::time::Duration;

use harness::bin::now;
use harness::cluster::{Agent, Server};
use harness::config::ServerToml;
use harness::dirs::{free_port, temp_dir};
use harness::ops::{loopback, ops_table, scrape, value};
use harness::workload::{client, fetch_x509_files, next_svid_where, rt, wait_for_svid};

const WAIT: Duration = Duration::from_secs(60);

fn not_before(svid: &spiffe::X509Svid) -> i64 {
    herald::ca::x509::cert_facts(svid.leaf().as_ref())
        .unwrap()
        .not_before
}

#[test]
fn an_agent_listing_a_closed_port_first_attests_with_the_next_server() {
    let dir = temp_dir("h-failover-");
    let server = Server::start_with(&ServerToml::new(&dir.path().join("server")));
    let closed = format!("127.0.0.1:{}", free_port());
    // The live server by DNS name: `localhost` resolves from /etc/hosts.
    let live = format!("localhost:{}", server.node_addr.port());
    let (token, agent_id) = server.join_token();
    let config = server
        .agent_toml(&dir.path().join("agent"), Some(&token))
        .server_addresses(&[closed, live])
        .write();
    let mut agent = Agent::start(&config);
    let line = agent.proc.first_line("connected to the server", WAIT).1;
    assert!(
        line.contains(&format!("server=127.0.0.1:{}", server.node_addr.port())),
        "{line}"
    );
    server.create_entry("spiffe://example.org/failover/first", &agent_id, &[]);
    let svid = rt().block_on(async { wait_for_svid(&client(&agent.socket).await).await });
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/failover/first"
    );
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(shown["attestation_type"], "join_token", "{shown}");
}

#[test]
fn a_killed_server_restarted_on_the_second_address_takes_over_its_agents() {
    let dir = temp_dir("h-failover-");
    let server_dir = dir.path().join("server");
    let (first, second) = (free_port(), free_port());
    let first_addr = format!("127.0.0.1:{first}");
    let second_addr = format!("127.0.0.1:{second}");
    let mut server = Server::start_with(&ServerToml::new(&server_dir).bind_address(&first_addr));
    let (token, agent_id) = server.join_token();
    let agent_ops = loopback();
    let config = server
        .agent_toml(&dir.path().join("agent"), Some(&token))
        .server_addresses(&[first_addr.clone(), second_addr.clone()])
        .extra(&ops_table(agent_ops))
        .write();
    let mut agent = Agent::start(&config);
    // Short-lived SVIDs: renewed every few seconds, so "fresh" is visible.
    server.create_entry(
        "spiffe://example.org/failover/web",
        &agent_id,
        &["--x509-svid-ttl", "10s"],
    );
    let runtime = rt();
    let c = runtime.block_on(client(&agent.socket));
    let mut stream = runtime.block_on(async {
        wait_for_svid(&c).await;
        c.stream_x509_svids().await.expect("an SVID stream")
    });
    let before = runtime.block_on(next_svid_where(&mut stream, WAIT, "no SVID", |_| true));

    // The server dies without a word; it comes back from the same data
    // directory on the agent's second address.
    server.proc.kill();
    let killed_at = now();
    let server = Server::start_with(&ServerToml::new(&server_dir).bind_address(&second_addr));
    let line = agent
        .proc
        .wait_for_line("failed over to another server", WAIT);
    assert!(line.contains(&format!("server={second_addr}")), "{line}");
    assert!(line.contains(&format!("previous={first_addr}")), "{line}");
    // It already holds every entry: the new server sends no entry again.
    let resumed = agent.proc.wait_for_line("sync resumed", WAIT);
    assert!(resumed.contains("changed=0 removed=0"), "{resumed}");

    // The workload keeps getting fresh SVIDs, from the new server, and
    // never an expired one.
    runtime.block_on(async {
        let fresh = next_svid_where(&mut stream, WAIT, "no fresh SVID after the failover", |s| {
            let facts = herald::ca::x509::cert_facts(s.leaf().as_ref()).unwrap();
            assert!(facts.not_after > now(), "an expired SVID was served");
            facts.not_before > killed_at
        })
        .await;
        assert_eq!(
            fresh.spiffe_id().to_string(),
            "spiffe://example.org/failover/web"
        );
        assert_ne!(fresh.leaf().as_ref(), before.leaf().as_ref());
        assert!(not_before(&fresh) > not_before(&before));
    });
    let chain = fetch_x509_files(&agent.socket, &dir.path().join("fetched"));
    let facts = herald::ca::x509::cert_facts(&chain[0]).unwrap();
    assert!(
        facts.not_after > now(),
        "herald api fetch got an expired SVID"
    );

    // A change made after the failover arrives as usual.
    server.create_entry("spiffe://example.org/failover/new", &agent_id, &[]);
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let ids: Vec<String> = c
                .fetch_all_x509_svids()
                .await
                .unwrap_or_default()
                .iter()
                .map(|s| s.spiffe_id().to_string())
                .collect();
            if ids.iter().any(|i| i == "spiffe://example.org/failover/new") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "serves {ids:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let samples = scrape(agent_ops);
    assert_eq!(
        value(&samples, "herald_agent_failovers_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "herald_agent_server_connected",
            &[("address", second_addr.as_str())]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "herald_agent_server_connected",
            &[("address", first_addr.as_str())]
        ),
        None,
        "only the current server has a series"
    );
    let resumes = value(&samples, "herald_agent_sync_resumes_total", &[]).unwrap_or(0.0);
    assert!(resumes >= 1.0, "{resumes}");
}

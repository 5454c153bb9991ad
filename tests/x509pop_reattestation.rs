//! x509pop re-attestation in a running agent, with real processes, a
//! machine PKI made at test time and a 30 s agent SVID: when its SVID is
//! due the agent proves possession again (the server records a new
//! attestation); when its machine certificate is replaced on disk by a
//! renewed one it attests with that at once (the server's selectors follow
//! the new certificate); evicted, it attests again; a machine key it
//! cannot read falls back to SVID renewal; and through all of it the agent
//! keeps serving, and keeps receiving new entries. With the default, fingerprint-based agent ID a
//! renewal gives the node a new ID, and a workload entry parented to a node
//! alias (by CA fingerprint) follows it.

mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::cluster::{Agent, Server};
use harness::workload::{client, rt};
use harness::x509pop::{
    agent_config, create_alias, default_agent_id, selector_values, server, wait_for_agent,
    write_machine,
};
use herald::x509pop::fingerprint;
use herald::x509pop::test_pki::{Machine, TestCa, TestPki};

/// Two renewals of a 30 s SVID, with room to spare.
const WAIT: Duration = Duration::from_secs(45);

/// Waits until the agent at `socket` serves this process `path`.
fn wait_serves(socket: &Path, path: &str) {
    let deadline = Instant::now() + WAIT;
    rt().block_on(async {
        loop {
            if let Ok(ctx) = client(socket).await.fetch_x509_context().await {
                if ctx.svids().iter().any(|s| s.spiffe_id().path() == path) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{path} not served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// An agent of `server` in `dir` with `machine`'s files, looking at its
/// certificate file every second.
fn start_agent(server: &Server, dir: &Path, machine: &Machine, inter: &TestCa) -> Agent {
    let every_second = "certificate_check_interval = \"1s\"\n";
    Agent::start(&agent_config(server, dir, machine, inter, every_second))
}

fn renewed(inter: &TestCa, cn: &str) -> Machine {
    let key = rcgen::KeyPair::generate().unwrap();
    inter
        .machine(cn, &format!("{cn}.example.net"), key)
        .unwrap()
}

fn serial_selector(machine: &Machine) -> String {
    let facts = herald::x509pop::selectors::leaf_facts(&machine.leaf).unwrap();
    format!("x509pop:serialnumber:{}", facts.serial_number)
}

#[test]
fn a_running_agent_reattests_when_due_and_when_its_certificate_is_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let TestPki {
        root,
        inter,
        machine,
    } = TestPki::new("machines", "db-1", "db-1.example.net").unwrap();
    let mut server = server(
        dir.path(),
        &[&root],
        "agent_svid_ttl = \"30s\"\n",
        "agent_path_template = \"/x509pop/{{subject_cn}}\"\n",
    );
    let agent_dir = dir.path().join("agent");
    let mut agent = start_agent(&server, &agent_dir, &machine, &inter);
    let agent_id = "spiffe://example.org/herald/agent/x509pop/db-1";
    server.proc.wait_for_line("agent attested by x509pop", WAIT);
    let first = server.cli_json(&["agent", "show", "--spiffe-id", agent_id]);
    server.create_entry("spiffe://example.org/db", agent_id, &[]);
    wait_serves(&agent.socket, "/db");

    // Half of the 30 s SVID: the agent proves possession again.
    agent
        .proc
        .wait_for_line("re-attested with x509pop (the agent SVID is due)", WAIT);
    server.proc.wait_for_line("agent attested by x509pop", WAIT);
    let again = wait_for_agent(&server, agent_id, WAIT, "a new agent SVID", |a| {
        a["x509svid_serial_number"] != first["x509svid_serial_number"]
    });
    assert_eq!(again["attestation_type"], "x509pop", "{again}");

    // The machine certificate is renewed on disk: the agent attests with
    // the new one at once, and the server's selectors follow it.
    let next = renewed(&inter, "db-1");
    assert!(selector_values(&again).contains(&serial_selector(&machine)));
    write_machine(&agent_dir, &next, &inter);
    agent.proc.wait_for_line(
        "re-attested with x509pop (the machine certificate was renewed)",
        WAIT,
    );
    let shown = wait_for_agent(
        &server,
        agent_id,
        WAIT,
        "the renewed certificate's selectors",
        |a| selector_values(a).contains(&serial_selector(&next)),
    );
    assert!(
        !selector_values(&shown).contains(&serial_selector(&machine)),
        "{shown}"
    );
    // Still connected and syncing: a new entry reaches the workload.
    server.create_entry("spiffe://example.org/after-renewal", agent_id, &[]);
    wait_serves(&agent.socket, "/after-renewal");

    // Evicted, the agent proves itself again (banning keeps it out).
    server.cli_ok(&["agent", "evict", "--spiffe-id", agent_id]);
    agent.proc.wait_for_line(
        "re-attested with x509pop (the server refused the agent SVID)",
        WAIT,
    );
    server.create_entry("spiffe://example.org/after-eviction", agent_id, &[]);
    wait_serves(&agent.socket, "/after-eviction");

    // A machine key that cannot be read: renewal with the SVID instead.
    std::fs::write(agent_dir.join("machine.key"), "not a key\n").unwrap();
    agent.proc.wait_for_line(
        "x509pop re-attestation failed; renewing the agent SVID with the SVID instead",
        WAIT,
    );
    agent.proc.wait_for_line("agent SVID renewed", WAIT);
    server.create_entry("spiffe://example.org/after-fallback", agent_id, &[]);
    wait_serves(&agent.socket, "/after-fallback");
    assert_eq!(
        server.cli_json(&["agent", "list"])["agents"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// With the default template a renewed certificate is a new agent ID: the
/// entry parented to a node alias by CA fingerprint follows the node.
#[test]
fn a_renewal_that_changes_the_agent_id_keeps_the_workloads_of_a_node_alias() {
    let dir = tempfile::tempdir().unwrap();
    let TestPki {
        root,
        inter,
        machine,
    } = TestPki::new("fleet", "vm-1", "vm-1.example.net").unwrap();
    let server: Server = server(dir.path(), &[&root], "", "");
    let agent_dir = dir.path().join("agent");
    let mut agent = start_agent(&server, &agent_dir, &machine, &inter);
    let ca = format!("x509pop:ca:fingerprint:{}", fingerprint(&inter.der()));
    create_alias(&server, "spiffe://example.org/fleet", &[&ca]);
    server.create_entry(
        "spiffe://example.org/app",
        "spiffe://example.org/fleet",
        &[],
    );
    wait_serves(&agent.socket, "/app");

    let next = renewed(&inter, "vm-1");
    write_machine(&agent_dir, &next, &inter);
    let line = agent
        .proc
        .wait_for_line("gave this node a new agent ID", WAIT);
    assert!(line.contains(&default_agent_id(&next)), "{line}");
    wait_for_agent(
        &server,
        &default_agent_id(&next),
        WAIT,
        "the new agent",
        |a| a["attestation_type"] == "x509pop",
    );
    // Connected under its new ID, the node still gets the alias's entries,
    // new ones included.
    server.create_entry(
        "spiffe://example.org/app-2",
        "spiffe://example.org/fleet",
        &[],
    );
    wait_serves(&agent.socket, "/app-2");
    wait_serves(&agent.socket, "/app");
}

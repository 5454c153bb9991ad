//! x509pop node attestation with real processes and a machine PKI made at
//! test time (root -> intermediate -> machine leaf, ECDSA P-256; an RSA leaf
//! whose key openssl makes): the agent
//! proves possession of its machine key, gets the template's agent ID and
//! the certificate's selectors, serves a workload; re-attests under the
//! same ID with its data dir wiped, but not once banned; and a machine
//! certificate from another CA is refused with a clear error.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::cluster::{spawn_role, Agent, Server};
use harness::workload::{client, rt, wait_for_svid};
use harness::x509pop::{self, selector_values};
use herald::x509pop::fingerprint;
use herald::x509pop::test_pki::{Machine, TestCa, TestPki};

const WAIT: Duration = Duration::from_secs(30);

/// A server of example.org trusting `root` for x509pop.
fn server(dir: &Path, root: &TestCa) -> Server {
    x509pop::server(dir, &[root], "", "")
}

/// Writes the machine's files into `dir` and the agent config using them.
fn agent_config(
    server: &Server,
    dir: &Path,
    machine: &Machine,
    inter: &TestCa,
) -> std::path::PathBuf {
    x509pop::agent_config(server, dir, machine, inter, "")
}

#[test]
fn agent_attests_by_x509pop_reattests_and_is_stopped_by_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let TestPki {
        root,
        inter,
        machine,
    } = TestPki::new("machines", "db-1", "db-1.example.net").unwrap();
    let server = server(dir.path(), &root);
    let agent_dir = dir.path().join("agent");
    let config = agent_config(&server, &agent_dir, &machine, &inter);
    let mut agent = Agent::start(&config);
    let agent_id = format!(
        "spiffe://example.org/herald/agent/x509pop/{}",
        fingerprint(&machine.leaf)
    );

    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(shown["attestation_type"], "x509pop", "{shown}");
    let selectors = selector_values(&shown);
    for want in [
        "x509pop:subject:cn:db-1".to_string(),
        "x509pop:san:dns:db-1.example.net".into(),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&inter.der())),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&root.der())),
    ] {
        assert!(selectors.contains(&want), "{want} not in {selectors:?}");
    }

    server.create_entry("spiffe://example.org/vm/db", &agent_id, &[]);
    rt().block_on(async {
        let svid = wait_for_svid(&client(&agent.socket).await).await;
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/vm/db");
    });

    // Data dir wiped: the agent proves possession again, same ID.
    let serial_before = shown["x509svid_serial_number"].clone();
    agent.proc.stop();
    std::fs::remove_dir_all(agent_dir.join("data")).unwrap();
    let mut agent = Agent::start(&config);
    let log = agent.proc.log_text();
    assert!(log.contains("attested with x509pop"), "{log}");
    let again = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(again["attestation_type"], "x509pop", "{again}");
    assert_ne!(again["x509svid_serial_number"], serial_before, "{again}");
    assert_eq!(
        server.cli_json(&["agent", "list"])["agents"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Banned: the same proof no longer admits it.
    server.cli_ok(&["agent", "ban", "--spiffe-id", &agent_id]);
    agent.proc.stop();
    std::fs::remove_dir_all(agent_dir.join("data")).unwrap();
    let mut refused = spawn_role("agent", &config);
    let line = refused.wait_for_line("is banned", WAIT);
    assert!(line.contains(&agent_id), "{line}");
}

#[test]
fn a_machine_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestCa::root("trusted machines root").unwrap();
    let TestPki { inter, machine, .. } =
        TestPki::new("other", "intruder", "intruder.example.net").unwrap();
    let server = server(dir.path(), &trusted);
    let config = agent_config(&server, &dir.path().join("agent"), &machine, &inter);
    let mut agent = spawn_role("agent", &config);
    let line = agent.wait_for_line("does not chain to the server's ca_bundle_path", WAIT);
    assert!(line.contains("permission denied"), "{line}");
    let agents = server.cli_json(&["agent", "list"]);
    assert_eq!(
        agents["agents"].as_array().map(Vec::len),
        Some(0),
        "{agents}"
    );
}

#[test]
fn an_rsa_machine_key_attests() {
    let dir = tempfile::tempdir().unwrap();
    harness::openssl::rsa_key(dir.path(), "rsa");
    let pem = std::fs::read_to_string(dir.path().join("rsa.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let root = TestCa::root("rsa machines root").unwrap();
    let inter = root.intermediate("rsa machines intermediate").unwrap();
    let machine = inter.machine("rsa-1", "rsa-1.example.net", key).unwrap();
    let server = server(dir.path(), &root);
    let config = agent_config(&server, &dir.path().join("agent"), &machine, &inter);
    let _agent = Agent::start(&config);
    let agent_id = format!(
        "spiffe://example.org/herald/agent/x509pop/{}",
        fingerprint(&machine.leaf)
    );
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert!(
        selector_values(&shown).contains(&"x509pop:subject:cn:rsa-1".to_string()),
        "{shown}"
    );
}

/// Machine keys in the older forms OpenSSL and many PKIs still write: SEC1
/// (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`), as openssl makes
/// them, attest like PKCS#8 ones.
#[test]
fn sec1_and_pkcs1_machine_keys_attest() {
    let dir = tempfile::tempdir().unwrap();
    let root = TestCa::root("legacy key machines root").unwrap();
    let inter = root
        .intermediate("legacy key machines intermediate")
        .unwrap();
    let server = server(dir.path(), &root);
    let forms: [(&str, &[&str], &str); 2] = [
        (
            "ec-1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec-1.key",
            ],
            "EC PRIVATE KEY",
        ),
        (
            "rsa-2",
            &["genrsa", "-traditional", "-out", "rsa-2.key", "2048"],
            "RSA PRIVATE KEY",
        ),
    ];
    let mut agents = Vec::new();
    for (cn, args, label) in forms {
        let (ok, out) = harness::openssl::openssl(dir.path(), args);
        assert!(ok, "{out}");
        let pem = std::fs::read_to_string(dir.path().join(format!("{cn}.key"))).unwrap();
        assert!(pem.contains(&format!("-----BEGIN {label}-----")), "{pem}");
        // The certificate is issued for the same key (rcgen needs PKCS#8);
        // the agent reads the file in openssl's form.
        let pkcs8 = herald::ca::key_pem::pkcs8_from_pem(&pem).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let mut machine = inter
            .machine(cn, &format!("{cn}.example.net"), key)
            .unwrap();
        machine.key_pem = pem;
        let config = agent_config(&server, &dir.path().join(cn), &machine, &inter);
        agents.push(Agent::start(&config));
        let shown = server.cli_json(&[
            "agent",
            "show",
            "--spiffe-id",
            &x509pop::default_agent_id(&machine),
        ]);
        let want = format!("x509pop:subject:cn:{cn}");
        assert!(selector_values(&shown).contains(&want), "{shown}");
    }
}

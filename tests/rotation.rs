//! CA rotation with real processes: authorities rotate on their own while a
//! workload watches, activation waits for agents, JWT keys rotate without
//! breaking tokens, taint forces re-issue, and a restart mid-rotation
//! resumes it.

mod harness;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harness::cluster::{Agent, Server};
use harness::node::NodeAgent;
use harness::workload::{client, next_svid_where, rt, wait_for_svid};
use herald::ca::x509::cert_facts;
use rustls::pki_types::{CertificateDer, UnixTime};

fn setup(dir: &std::path::Path, extra: &str, x509_ttl: &str) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), extra);
    let (agent, agent_id) = server.start_agent(&dir.join("agent"));
    server.create_entry(
        "spiffe://example.org/rot/web",
        &agent_id,
        &["--x509-svid-ttl", x509_ttl],
    );
    (server, agent, agent_id)
}

/// Does this SVID chain to one of these roots right now?
fn chains(svid: &spiffe::X509Svid, roots: &[Vec<u8>]) -> Result<(), String> {
    let certs: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let leaf = CertificateDer::from(certs[0].clone());
    let inter: Vec<CertificateDer<'_>> = certs[1..]
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    herald::tls::verify_svid(
        &leaf,
        &inter,
        roots,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn issuer(svid: &spiffe::X509Svid) -> Vec<u8> {
    cert_facts(svid.leaf().as_ref())
        .unwrap()
        .authority_key_id
        .unwrap()
}

fn authorities(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.cli_ok(&["authority", "show", "--output", "json"])).unwrap()
}

fn ids_in(v: &serde_json::Value, kind: &str, state: &str) -> Vec<String> {
    v["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["state"] == state)
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_full_rotations_with_zero_disagreements() {
    let dir = tempfile::tempdir().unwrap();
    // CA lifetime 90 s: prepare at 45 s left, activate at 15 s left, so a
    // rotation every ~45 s; SVIDs live 15 s (never longer than ca_ttl/6).
    let (_server, agent, _) = setup(
        dir.path(),
        "ca_ttl = \"90s\"\ndefault_x509_svid_ttl = \"15s\"\n",
        "15s",
    );
    rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await;
        let mut stream = c.stream_x509_contexts().await.unwrap();
        let td = spiffe::TrustDomain::new("example.org").unwrap();
        let mut issuers: Vec<Vec<u8>> = Vec::new();
        let mut updates = 0;
        let deadline = Instant::now() + Duration::from_secs(240);
        while issuers.len() < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            let ctx = tokio::time::timeout(left, stream.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("only {} CAs seen after {updates} updates", issuers.len())
                })
                .expect("stream ended")
                .expect("stream error");
            updates += 1;
            let svid = ctx.default_svid().expect("an SVID");
            let bundle = ctx.bundle_set().get(&td).expect("own bundle");
            let roots: Vec<Vec<u8>> = bundle
                .authorities()
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect();
            if let Err(e) = chains(svid, &roots) {
                panic!("update {updates}: the SVID does not chain to the bundle sent with it: {e}");
            }
            let i = issuer(svid);
            if !issuers.contains(&i) {
                issuers.push(i);
            }
        }
        // Three CAs signed in turn: two full rotations, every update consistent.
        assert!(updates >= 3);
    });
}

#[test]
fn jwt_key_rotation_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = setup(dir.path(), "", "1h");
    rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await;
        let before = c.fetch_jwt_svid(["db"], None).await.unwrap();
        server.cli_ok(&["authority", "prepare", "--kind", "jwt"]);
        server.cli_ok(&["authority", "activate", "--kind", "jwt"]);
        // The new key reaches the agent's bundle; a fresh token uses it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let after = loop {
            let t = c.fetch_jwt_svid(["db2"], None).await.unwrap();
            if t.key_id() != before.key_id() {
                break t;
            }
            assert!(Instant::now() < deadline, "no token from the new key");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        c.validate_jwt_token("db", before.token())
            .await
            .expect("a token minted before rotation must still validate");
        c.validate_jwt_token("db2", after.token()).await.unwrap();
    });
}

#[test]
fn taint_reissues_every_svid_and_revoke_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = setup(dir.path(), "", "1h");
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let first = wait_for_svid(&c).await;
        let old_issuer = issuer(&first);
        let v = authorities(&server);
        let old_id = ids_in(&v, "x509", "active").remove(0);
        // Revoking an authority that is not tainted is refused.
        let (code, _, err) =
            server.cli(&["authority", "revoke", "--kind", "x509", "--id", &old_id]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not tainted"), "{err}");
        // Tainting the active one is refused too.
        let (code, _, err) = server.cli(&["authority", "taint", "--kind", "x509", "--id", &old_id]);
        assert_eq!(code, 2, "{err}");

        server.cli_ok(&["authority", "prepare", "--kind", "x509"]);
        server.cli_ok(&["authority", "activate", "--kind", "x509"]);
        let mut stream = c.stream_x509_svids().await.unwrap();
        let _current = stream.next().await.unwrap().unwrap();
        let tainted_at = Instant::now();
        server.cli_ok(&["authority", "taint", "--kind", "x509", "--id", &old_id]);
        next_svid_where(
            &mut stream,
            Duration::from_secs(10),
            "no re-issued SVID within 10 s of the taint",
            |next| issuer(next) != old_issuer,
        )
        .await;
        eprintln!("re-issued {:?} after the taint", tainted_at.elapsed());
        // Once the agent acknowledged, revocation removes it from the bundle.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, _, err) =
                server.cli(&["authority", "revoke", "--kind", "x509", "--id", &old_id]);
            if code == 0 {
                break;
            }
            assert!(err.contains("not yet re-issued"), "{err}");
            assert!(Instant::now() < deadline, "revoke still refused: {err}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let v = authorities(&server);
        assert!(!v["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == old_id.as_str()));
    });
}

#[test]
fn restart_mid_rotation_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = setup(
        dir.path(),
        "ca_ttl = \"90s\"\ndefault_x509_svid_ttl = \"15s\"\n",
        "15s",
    );
    // Wait until the next CA is prepared (45 s before expiry).
    let deadline = Instant::now() + Duration::from_secs(90);
    let prepared = loop {
        let v = authorities(&server);
        let p = ids_in(&v, "x509", "prepared");
        if let Some(id) = p.first() {
            break id.clone();
        }
        assert!(Instant::now() < deadline, "nothing was prepared");
        std::thread::sleep(Duration::from_millis(500));
    };
    let server = server.relaunch();
    let v = authorities(&server);
    assert_eq!(
        ids_in(&v, "x509", "prepared"),
        vec![prepared.clone()],
        "the prepared CA did not survive the restart"
    );
    // The rotation resumes: the prepared CA becomes active on schedule.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = authorities(&server);
        if ids_in(&v, "x509", "active") == vec![prepared.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the prepared CA never became active after the restart"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(agent);
}

#[test]
fn gated_activation_waits_for_a_lagging_agent_then_the_deadline_activates() {
    let dir = tempfile::tempdir().unwrap();
    // CA lifetime 60 s: due to activate 10 s before expiry; wait at most 4 s.
    let (mut server, _agent, _) = setup(
        dir.path(),
        "ca_ttl = \"60s\"\ndefault_x509_svid_ttl = \"10s\"\nca_activation_deadline = \"4s\"\n",
        "10s",
    );
    // A lagging agent: attested and syncing, but it never acknowledges a bundle.
    let (token, lagging_id) = server.join_token();
    let roots = herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap();
    let runtime = rt();
    let _lagging_stream = runtime.block_on(async {
        let td = herald::spiffe::TrustDomain::new("example.org").unwrap();
        NodeAgent::attest(server.node_addr, &td, roots, &token)
            .await
            .sync()
            .await
    });
    let waiting = server
        .proc
        .wait_for_line("waiting for agents", Duration::from_secs(90));
    assert!(
        waiting.contains(&lagging_id),
        "the wait names the lagging agent: {waiting}"
    );
    let forced = server
        .proc
        .wait_for_line("activation deadline passed", Duration::from_secs(30));
    assert!(forced.contains(&lagging_id), "{forced}");
    assert!(!forced.contains("agent/join_token/dev"), "{forced}");
}

//! End to end with real processes: `herald server run`, `herald agent run`,
//! entries made with the admin CLI, and the `spiffe` crate (0.19) as the
//! workload, speaking the standard Workload API on the agent's socket.

mod harness;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harness::bin::{now, run, run_ok};
use harness::cluster::{run_role, Agent, Server};
use harness::config::ServerToml;
use harness::workload::{client, next_svid_where, raw_client, rt, wait_for_svid};
use spiffe::WorkloadApiError;

fn setup(dir: &std::path::Path) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), "");
    let (agent, agent_id) = server.start_agent(&dir.join("agent"));
    (server, agent, agent_id)
}

#[test]
fn workload_gets_x509_bundles_and_jwt_from_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    rt().block_on(async {
        let c = client(&agent.socket).await;
        // Before any entry: this process has no identity.
        match c.fetch_x509_svid().await {
            Err(WorkloadApiError::NoIdentityIssued) => {}
            Err(e) if e.to_string().contains("no identity issued") => {}
            other => panic!("expected PermissionDenied/no identity issued, got {other:?}"),
        }
        server.create_entry("spiffe://example.org/e2e/web", &agent_id, &[]);
        let svid = wait_for_svid(&c).await;
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/e2e/web");

        let bundles = c.fetch_x509_bundles().await.unwrap();
        let td = spiffe::TrustDomain::new("example.org").unwrap();
        assert!(bundles.get(&td).is_some(), "own X.509 bundle missing");
        let jwt_bundles = c.fetch_jwt_bundles().await.unwrap();
        assert!(jwt_bundles.get(&td).is_some(), "own JWT bundle missing");

        let jwt = c.fetch_jwt_svid(["db"], None).await.unwrap();
        assert_eq!(jwt.spiffe_id().to_string(), "spiffe://example.org/e2e/web");
        let validated = c.validate_jwt_token("db", jwt.token()).await.unwrap();
        assert_eq!(
            validated.spiffe_id().to_string(),
            "spiffe://example.org/e2e/web"
        );

        // A tampered token is refused.
        let token = jwt.token().to_string();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = {
            use base64::Engine as _;
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut claims: serde_json::Value =
                serde_json::from_slice(&e.decode(parts[1]).unwrap()).unwrap();
            claims["sub"] = "spiffe://example.org/e2e/admin".into();
            e.encode(serde_json::to_vec(&claims).unwrap())
        };
        parts[1] = &forged_claims;
        assert!(
            c.validate_jwt_token("db", &parts.join(".")).await.is_err(),
            "a forged token validated"
        );
    });
    drop(server);
}

#[test]
fn missing_security_header_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, agent, _) = setup(dir.path());
    rt().block_on(async {
        let mut raw = raw_client(&agent.socket).await;
        let err = raw
            .fetch_jwtsvid(herald::proto::workload::JwtsvidRequest {
                audience: vec!["a".into()],
                spiffe_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    });
}

#[test]
fn open_stream_receives_renewed_svid_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    server.create_entry(
        "spiffe://example.org/e2e/short",
        &agent_id,
        &["--x509-svid-ttl", "10s"],
    );
    rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await;
        let mut stream = c.stream_x509_svids().await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let first_serial = serial(&first);
        let first_expiry = leaf_not_after(first.leaf().as_ref());
        next_svid_where(
            &mut stream,
            Duration::from_secs(30),
            "no renewed SVID within 30s",
            |next| serial(next) != first_serial,
        )
        .await;
        assert!(
            now() < first_expiry,
            "renewed only after the old SVID expired"
        );
    });
}

fn serial(svid: &spiffe::X509Svid) -> String {
    herald::ca::x509::cert_facts(svid.leaf().as_ref())
        .unwrap()
        .serial
}

fn leaf_not_after(der: &[u8]) -> i64 {
    herald::ca::x509::cert_facts(der).unwrap().not_after
}

#[test]
fn restarts_keep_state_and_tokens_are_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = Server::start(&server_dir, "");
    let (token, agent_id) = server.join_token();
    let config = server.agent_config(&dir.path().join("agent"), Some(&token));
    let mut agent = Agent::start(&config);
    let entry_id = server.create_entry("spiffe://example.org/e2e/keep", &agent_id, &[]);
    let bundle_before = server.cli_ok(&["bundle", "show"]);
    rt().block_on(async {
        wait_for_svid(&client(&agent.socket).await).await;
    });

    // A reused join token is refused: a second agent with a fresh data dir.
    let other = server.agent_config(&dir.path().join("agent2"), Some(&token));
    let out = run_role("agent", &other);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already used"), "{err}");

    // Server restart: entries, agents and the CA survive.
    // SIGTERM stops the server cleanly (exit 0) even with an agent's Sync
    // stream open, and the agent likewise.
    let mut server = server;
    let status = server
        .proc
        .stop()
        .expect("the server did not stop within 10 s of SIGTERM");
    assert!(status.success(), "server exit status {status}");
    let status = agent
        .proc
        .stop()
        .expect("the agent did not stop within 10 s of SIGTERM");
    assert!(status.success(), "agent exit status {status}");
    let server = server.relaunch();
    let shown = server.cli_ok(&["entry", "show", "--entry-id", &entry_id]);
    assert!(shown.contains("spiffe://example.org/e2e/keep"), "{shown}");
    assert_eq!(
        server.cli_ok(&["bundle", "show"]),
        bundle_before,
        "the CA changed across a restart"
    );
    let agents = server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&agent_id), "{agents}");

    // Agent restart: no join token in the config, the saved SVID is reused.
    let config = server.agent_config(&dir.path().join("agent"), None);
    let agent = Agent::start(&config);
    assert!(agent
        .proc
        .log_text()
        .contains("reusing the saved agent SVID"));
    rt().block_on(async {
        let svid = wait_for_svid(&client(&agent.socket).await).await;
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/e2e/keep"
        );
    });

    // Ban: the agent's stream is cut, and it may not attest again.
    server.cli_ok(&["agent", "ban", "--spiffe-id", &agent_id]);
    let mut agent = agent;
    agent
        .proc
        .wait_for_line("refused this agent", Duration::from_secs(20));
    let token2 = server.join_token_for(&agent_id);
    let again = server.agent_config(&dir.path().join("agent3"), Some(&token2));
    let out = run_role("agent", &again);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("banned"));
}

#[test]
fn agent_serves_cached_svids_while_the_server_is_down_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::dirs::free_port();
    let mut server = Server::start_with(
        &ServerToml::new(&dir.path().join("server")).bind_address(&format!("127.0.0.1:{port}")),
    );
    let (mut agent, agent_id) = server.start_agent(&dir.path().join("agent"));
    server.create_entry("spiffe://example.org/e2e/steady", &agent_id, &[]);
    rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await;
        server.proc.stop();
        // The server is gone; the cached SVID is still served.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let svid = c
            .fetch_x509_svid()
            .await
            .expect("cached SVID while the server is down");
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/e2e/steady"
        );
    });
    agent
        .proc
        .wait_for_line("lost the server", Duration::from_secs(10));
    // The server comes back on the same address; the agent reconnects by itself
    // and a new entry reaches the workload.
    let server = server.relaunch();
    agent
        .proc
        .wait_for_line("connected to the server", Duration::from_secs(40));
    server.create_entry("spiffe://example.org/e2e/after", &agent_id, &[]);
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = c.fetch_all_x509_svids().await.unwrap_or_default();
            if all
                .iter()
                .any(|s| s.spiffe_id().to_string() == "spiffe://example.org/e2e/after")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new entry never reached the workload after reconnecting"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn an_evicted_agent_is_refused_but_may_attest_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    let mut agent = agent;
    server.cli_ok(&["agent", "evict", "--spiffe-id", &agent_id]);
    agent
        .proc
        .wait_for_line("refused this agent", Duration::from_secs(20));
    let shown = server.cli(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(
        shown.0, 2,
        "an evicted agent is gone from the list: {}",
        shown.2
    );
    // Unlike a banned one, it may attest again with a new token for its ID.
    let token = server.join_token_for(&agent_id);
    drop(agent);
    let again = server.agent_config(&dir.path().join("agent-again"), Some(&token));
    let agent = Agent::start(&again);
    assert!(agent.proc.log_text().contains("attested with a join token"));
    let listed = server.cli_ok(&["agent", "list"]);
    assert!(listed.contains(&agent_id), "{listed}");
}

#[test]
fn healthcheck_reports_a_live_server_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = setup(dir.path());
    let out = run_ok(&[
        "healthcheck",
        "--admin-socket",
        server.admin_socket.to_str().unwrap(),
    ]);
    assert!(out.contains("server healthy"));
    let out = run_ok(&[
        "healthcheck",
        "--workload-socket",
        agent.socket.to_str().unwrap(),
    ]);
    assert!(out.contains("agent healthy"));
    let gone = dir.path().join("nothing.sock");
    let o = run(&["healthcheck", "--workload-socket", gone.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

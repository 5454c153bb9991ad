//! End to end with real processes: `herald server run`, `herald agent run`,
//! entries made with the admin CLI, and the `spiffe` crate (0.19) as the
//! workload, speaking the standard Workload API on the agent's socket.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{agent_config, my_uid, start_agent, start_server, Agent, Server};
use futures::StreamExt as _;
use spiffe::{WorkloadApiClient, WorkloadApiError};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(agent: &Agent) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(format!("unix:{}", agent.socket.display()))
        .await
        .expect("connect to the Workload API")
}

/// Retries `fetch_x509_svid` until the entry has propagated (bounded).
async fn wait_for_svid(c: &WorkloadApiClient) -> spiffe::X509Svid {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.fetch_x509_svid().await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no SVID within 20s: {e}"),
        }
    }
}

fn setup(dir: &std::path::Path) -> (Server, Agent, String) {
    let server = start_server(&dir.join("server"), "");
    let (token, agent_id) = server.join_token();
    let config = agent_config(&server, &dir.join("agent"), Some(&token));
    let agent = start_agent(&config);
    (server, agent, agent_id)
}

fn create_entry(server: &Server, id: &str, parent: &str, extra: &[&str]) -> String {
    let uid = format!("unix:uid:{}", my_uid());
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        id,
        "--parent-id",
        parent,
        "--selector",
        &uid,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = server.cli_ok(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["results"][0]["entry"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn workload_gets_x509_bundles_and_jwt_from_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, agent_id) = setup(dir.path());
    rt().block_on(async {
        let c = client(&agent).await;
        // Before any entry: this process has no identity.
        match c.fetch_x509_svid().await {
            Err(WorkloadApiError::NoIdentityIssued) => {}
            Err(e) if e.to_string().contains("no identity issued") => {}
            other => panic!("expected PermissionDenied/no identity issued, got {other:?}"),
        }
        create_entry(&server, "spiffe://example.org/e2e/web", &agent_id, &[]);
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
        let path = agent.socket.clone();
        let channel = tonic::transport::Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let p = path.clone();
                async move {
                    tokio::net::UnixStream::connect(p)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
            .unwrap();
        let mut raw =
            herald::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(
                channel,
            );
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
    create_entry(
        &server,
        "spiffe://example.org/e2e/short",
        &agent_id,
        &["--x509-svid-ttl", "10s"],
    );
    rt().block_on(async {
        let c = client(&agent).await;
        wait_for_svid(&c).await;
        let mut stream = c.stream_x509_svids().await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let first_serial = herald::ca::x509::cert_facts(first.leaf().as_ref())
            .unwrap()
            .serial;
        let first_expiry = leaf_not_after(first.leaf().as_ref());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                stream.next(),
            )
            .await
            .expect("no renewed SVID within 30s")
            .unwrap()
            .unwrap();
            if herald::ca::x509::cert_facts(next.leaf().as_ref())
                .unwrap()
                .serial
                != first_serial
            {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                assert!(
                    now < first_expiry,
                    "renewed only after the old SVID expired"
                );
                break;
            }
        }
    });
}

fn leaf_not_after(der: &[u8]) -> i64 {
    herald::ca::x509::cert_facts(der).unwrap().not_after
}

#[test]
fn restarts_keep_state_and_tokens_are_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = start_server(&server_dir, "");
    let (token, agent_id) = server.join_token();
    let config = agent_config(&server, &dir.path().join("agent"), Some(&token));
    let mut agent = start_agent(&config);
    let entry_id = create_entry(&server, "spiffe://example.org/e2e/keep", &agent_id, &[]);
    let bundle_before = server.cli_ok(&["bundle", "show"]);
    rt().block_on(async {
        wait_for_svid(&client(&agent).await).await;
    });

    // A reused join token is refused: a second agent with a fresh data dir.
    let other = agent_config(&server, &dir.path().join("agent2"), Some(&token));
    let out = common::herald()
        .args(["agent", "run", "--config", other.to_str().unwrap()])
        .output()
        .unwrap();
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
    let server = start_server(&server_dir, "");
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
    let config = agent_config(&server, &dir.path().join("agent"), None);
    let agent = start_agent(&config);
    assert!(agent
        .proc
        .log_text()
        .contains("reusing the saved agent SVID"));
    rt().block_on(async {
        let svid = wait_for_svid(&client(&agent).await).await;
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
    let (token2, _) = {
        let out = server.cli_ok(&[
            "token",
            "generate",
            "--spiffe-id",
            &agent_id,
            "--output",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["token"].as_str().unwrap().to_string(), ())
    };
    let again = agent_config(&server, &dir.path().join("agent3"), Some(&token2));
    let out = common::herald()
        .args(["agent", "run", "--config", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("banned"));
}

#[test]
fn agent_serves_cached_svids_while_the_server_is_down_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::cluster::free_port();
    let extra = format!("bind_address = \"127.0.0.1:{port}\"\n");
    let server_dir = dir.path().join("server");
    let mut server = start_server(&server_dir, &extra);
    let (token, agent_id) = server.join_token();
    let config = agent_config(&server, &dir.path().join("agent"), Some(&token));
    let mut agent = start_agent(&config);
    create_entry(&server, "spiffe://example.org/e2e/steady", &agent_id, &[]);
    rt().block_on(async {
        let c = client(&agent).await;
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
    let server = start_server(&server_dir, &extra);
    agent
        .proc
        .wait_for_line("connected to the server", Duration::from_secs(40));
    create_entry(&server, "spiffe://example.org/e2e/after", &agent_id, &[]);
    rt().block_on(async {
        let c = client(&agent).await;
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
    let out = server.cli_ok(&[
        "token",
        "generate",
        "--spiffe-id",
        &agent_id,
        "--output",
        "json",
    ]);
    let token = serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(agent);
    let again = agent_config(&server, &dir.path().join("agent-again"), Some(&token));
    let agent = start_agent(&again);
    assert!(agent.proc.log_text().contains("attested with a join token"));
    let listed = server.cli_ok(&["agent", "list"]);
    assert!(listed.contains(&agent_id), "{listed}");
}

#[test]
fn healthcheck_reports_a_live_server_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, agent, _) = setup(dir.path());
    let out = common::run_ok(&[
        "healthcheck",
        "--admin-socket",
        server.admin_socket.to_str().unwrap(),
    ]);
    assert!(out.contains("server healthy"));
    let out = common::run_ok(&[
        "healthcheck",
        "--workload-socket",
        agent.socket.to_str().unwrap(),
    ]);
    assert!(out.contains("agent healthy"));
    let gone = dir.path().join("nothing.sock");
    let o = common::run(&["healthcheck", "--workload-socket", gone.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

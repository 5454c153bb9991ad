//! An agent restarted while its server is down (issue 18, item 4): it
//! serves the workload SVIDs it saved before the restart at once, and a
//! call it cannot answer fails with Unavailable instead of waiting out the
//! client's deadline. Real processes: `herald server run` (killed with
//! SIGKILL), `herald agent run`, and the `spiffe` crate as the workload.
//!
//! No wall-clock assertion: every call carries a 30 s deadline, and the
//! status message names the path that answered, which tells an answer
//! from the cache apart from one given up on after waiting.

mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::bin::now;
use harness::cluster::{Agent, Server};
use harness::config::ServerToml;
use harness::workload::{client, raw_client, rt, wait_for_svid, with_header};
use herald::proto::workload::{JwtsvidRequest, X509svidRequest};
use herald::spiffe::{SpiffeId, TrustDomain};
use rustls_pki_types::{CertificateDer, UnixTime};
use tonic::Code;

/// The deadline of every Workload API call here: far beyond what an
/// answer from the cache takes, so reaching it would mean a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server on a fixed loopback port (to come back on after a restart)
/// and an attested agent, both under `dir`; and the agent's ID.
fn start(dir: &Path) -> (Server, Agent, String) {
    let port = harness::dirs::free_port();
    let server = Server::start_with(
        &ServerToml::new(&dir.join("server")).bind_address(&format!("127.0.0.1:{port}")),
    );
    let (agent, agent_id) = server.start_agent(&dir.join("agent"));
    (server, agent, agent_id)
}

/// `call` under [`DEADLINE`], sent with it as the gRPC deadline too.
async fn within_deadline<T>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(DEADLINE, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("client deadline")))
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = with_header(msg);
    req.set_timeout(DEADLINE);
    req
}

/// FetchJWTSVID for audience `db` on a raw client: its status.
async fn jwt_status(socket: &Path) -> tonic::Status {
    let mut c = raw_client(socket).await;
    let req = request(JwtsvidRequest {
        audience: vec!["db".into()],
        spiffe_id: String::new(),
    });
    match within_deadline(c.fetch_jwtsvid(req)).await {
        Ok(resp) => panic!("a JWT-SVID with the server down: {resp:?}"),
        Err(status) => status,
    }
}

/// The agent's saved SVIDs, read as the agent reads them.
fn saved_ids(file: &Path, agent_id: &str) -> Vec<String> {
    let td = TrustDomain::new("example.org").unwrap();
    let agent = SpiffeId::parse(agent_id).unwrap();
    let restored = herald::agent::persist::load(file, &td, &agent, now())
        .expect("a readable file")
        .expect("a saved file");
    let mut ids: Vec<String> = restored
        .identities
        .iter()
        .map(|r| r.identity.spiffe_id.as_str().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_restarted_agent_serves_saved_svids_with_the_server_down_then_resyncs() {
    let dir = harness::dirs::temp_dir("h-offline-");
    let (server, mut agent, agent_id) = start(dir.path());
    let agent_dir = dir.path().join("agent");
    let file = agent_dir.join("data").join("workload_svids");
    let kept = server.create_entry("spiffe://example.org/offline/kept", &agent_id, &[]);
    let before = rt().block_on(async { wait_for_svid(&client(&agent.socket).await).await });

    let status = agent.proc.stop().expect("the agent stops on SIGTERM");
    assert!(status.success(), "agent exit status {status}");
    let mode = std::fs::metadata(&file)
        .expect("the agent saved its workload SVIDs")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the file holds private keys");
    assert_eq!(
        saved_ids(&file, &agent_id),
        ["spiffe://example.org/offline/kept"]
    );

    // While the agent is down its entry is replaced; then the server dies
    // without a chance to say goodbye.
    server.cli_ok(&["entry", "delete", "--entry-id", &kept]);
    server.create_entry("spiffe://example.org/offline/new", &agent_id, &[]);
    let config = server.agent_config(&agent_dir, None);
    let mut server = server;
    server.proc.kill();

    let mut agent = Agent::start(&config);
    agent
        .proc
        .first_line("restored the saved workload SVIDs", Duration::from_secs(5));
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let svid = tokio::time::timeout(DEADLINE, c.fetch_x509_svid())
            .await
            .expect("FetchX509SVID hung with the server down")
            .expect("the saved SVID, served with the server down");
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/offline/kept"
        );
        assert_eq!(
            svid.leaf().as_ref(),
            before.leaf().as_ref(),
            "the very SVID saved before the restart"
        );
        let facts = herald::ca::x509::cert_facts(svid.leaf().as_ref()).unwrap();
        assert!(facts.not_after > now(), "an expired SVID was served");

        let bundles = tokio::time::timeout(DEADLINE, c.fetch_x509_bundles())
            .await
            .expect("FetchX509Bundles hung with the server down")
            .expect("the saved bundle, served with the server down");
        let td = spiffe::TrustDomain::new("example.org").unwrap();
        let bundle = bundles.get(&td).expect("the own X.509 bundle");
        let roots: Vec<Vec<u8>> = bundle
            .authorities()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        let chain = svid.cert_chain();
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let verified = herald::tls::verify_svid(
            &CertificateDer::from(chain[0].as_ref()),
            &intermediates,
            &roots,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
        )
        .expect("the served SVID chains to the served bundle");
        assert_eq!(verified.as_str(), "spiffe://example.org/offline/kept");
        let jwt_bundles = tokio::time::timeout(DEADLINE, c.fetch_jwt_bundles())
            .await
            .expect("FetchJWTBundles hung with the server down")
            .expect("the saved JWT bundle");
        assert!(jwt_bundles.get(&td).is_some(), "own JWT bundle missing");

        // JWT-SVIDs are minted by the server: none can be had now, and the
        // answer comes from the minting path (the cache was ready), not
        // from giving up on a sync.
        let status = jwt_status(&agent.socket).await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("not connected to its server"),
            "{status:?}"
        );
    });

    // The server comes back on the same address: the agent reconnects, the
    // entry deleted meanwhile disappears, the new one arrives, and the file
    // follows.
    let _server = server.relaunch();
    agent
        .proc
        .wait_for_line("connected to the server", Duration::from_secs(60));
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = c.fetch_all_x509_svids().await.unwrap_or_default();
            let ids: Vec<String> = all.iter().map(|s| s.spiffe_id().to_string()).collect();
            if ids == ["spiffe://example.org/offline/new"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after reconnecting the agent serves {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while saved_ids(&file, &agent_id) != ["spiffe://example.org/offline/new"] {
        assert!(
            Instant::now() < deadline,
            "the saved file never followed the sync"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_nothing_usable_saved_and_the_server_down_calls_fail_at_once() {
    let dir = harness::dirs::temp_dir("h-offline-");
    let (server, mut agent, agent_id) = start(dir.path());
    let agent_dir = dir.path().join("agent");
    server.create_entry("spiffe://example.org/offline/lost", &agent_id, &[]);
    rt().block_on(async { wait_for_svid(&client(&agent.socket).await).await });
    agent.proc.stop().expect("the agent stops on SIGTERM");
    let config = server.agent_config(&agent_dir, None);
    let mut server = server;
    server.proc.kill();
    // A damaged file is ignored, never a reason not to start.
    let file = agent_dir.join("data").join("workload_svids");
    let mut bytes = std::fs::read(&file).expect("the saved file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let mut agent = Agent::start(&config);
    agent.proc.first_line(
        "the saved workload SVIDs are unusable; ignored",
        Duration::from_secs(5),
    );
    rt().block_on(async {
        let mut c = raw_client(&agent.socket).await;
        let status = match within_deadline(c.fetch_x509svid(request(X509svidRequest {}))).await {
            Ok(_) => panic!("an SVID stream with nothing to serve"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("cannot reach its server"),
            "answered Unavailable only after waiting for a sync: {status:?}"
        );
        let status = jwt_status(&agent.socket).await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("cannot reach its server"),
            "{status:?}"
        );
    });
}

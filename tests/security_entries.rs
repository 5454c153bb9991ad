//! Entry expiry against a real server and agent (issue 10, attack 4): an
//! entry past its expiry kept getting SVIDs, renewal after renewal. Now
//! nothing is signed for it from its expiry second on, its identity leaves
//! the Workload API, and the pruner removes it from the store.

mod harness;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harness::bin::now;
use harness::cluster::Server;
use harness::workload::{client, rt, wait_for_svid};

const EXPIRING: &str = "spiffe://example.org/security/expiring";
/// Short, so the agent renews about every 2 s.
const TTL: i64 = 4;

fn not_after(svid: &spiffe::X509Svid) -> i64 {
    herald::ca::x509::cert_facts(svid.leaf().as_ref())
        .unwrap()
        .not_after
}

/// Renewals of a short-lived SVID go on until the entry expires; none
/// comes after, and the workload loses the identity. An SVID signed at
/// second `t` ends at `t + TTL`, so one ending at `expires_at + TTL` or
/// later was signed once the entry had expired.
#[test]
fn an_expired_entry_is_never_signed_again() {
    let server = Server::start_temp();
    let dir = tempfile::tempdir().unwrap();
    let (agent, agent_id) = server.start_agent(dir.path());
    let expires_at = now() + 15;
    server.create_entry(
        EXPIRING,
        &agent_id,
        &[
            "--x509-svid-ttl",
            &format!("{TTL}s"),
            "--expires-at",
            &expires_at.to_string(),
        ],
    );
    rt().block_on(async {
        let c = client(&agent.socket).await;
        let first = wait_for_svid(&c).await;
        assert_eq!(first.spiffe_id().to_string(), EXPIRING);
        let mut stream = c.stream_x509_svids().await.unwrap();
        // Generous: the identity must be gone well within this.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut renewals = 0;
        let withdrawn = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Err(_) => break false,
                Ok(None) | Ok(Some(Err(_))) => break true,
                Ok(Some(Ok(svid))) => {
                    let end = not_after(&svid);
                    assert!(
                        end < expires_at + TTL,
                        "an SVID for {EXPIRING} was signed after its entry expired at \
                         {expires_at}: it ends at {end}, after {renewals} SVIDs before it"
                    );
                    renewals += 1;
                }
            }
        };
        assert!(
            renewals >= 2,
            "a {TTL}s SVID should have been renewed before the entry expired"
        );
        assert!(
            withdrawn,
            "{EXPIRING} was still served long after its entry expired at {expires_at}"
        );
        // Once withdrawn it does not come back.
        let again = c.fetch_x509_svid().await;
        assert!(again.is_err(), "{:?}", again.map(|s| not_after(&s)));
    });
}

/// The pruner deletes the expired entry (with `prune_interval` at 1 s so
/// the test need not wait a minute); an entry without expiry stays.
#[test]
fn expired_entries_are_pruned_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "prune_interval = \"1s\"\n");
    let parent = "spiffe://example.org/herald/agent/none";
    let expiring = server.create_entry(
        EXPIRING,
        parent,
        &["--expires-at", &(now() + 3).to_string()],
    );
    let lasting = server.create_entry("spiffe://example.org/security/lasting", parent, &[]);
    assert!(!expiring.is_empty() && !lasting.is_empty());
    let listed = |server: &Server| -> Vec<String> {
        let v = server.cli_json(&["entry", "list"]);
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(listed(&server).contains(&expiring));
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed(&server).contains(&expiring) {
        assert!(
            Instant::now() < deadline,
            "entry {expiring} still listed 60s after it expired"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(listed(&server), [lasting]);
}

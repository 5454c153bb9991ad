//! Hot JWT-SVIDs are re-minted before they are due (SPIRE #4829), with a
//! real `herald server run` whose JWT-SVIDs live 10 s and a real
//! `herald agent run`: a workload asks for a token once; with nobody
//! asking, the server's JWT signing counter moves (the agent re-minted the
//! token at half its life); the workload's next request gets that new
//! token without the counter moving (answered from the agent's cache).

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::cluster::Server;
use harness::config::ServerToml;
use harness::dirs::temp_dir;
use harness::ops::{loopback, ops_table, scrape, value};
use harness::workload::{client, rt, wait_for_svid};

/// The JWT-SVID lifetime of the server here.
const JWT_TTL_SECS: u64 = 10;

/// JWT-SVIDs the server signed so far.
fn jwts_signed(ops: SocketAddr) -> f64 {
    let samples = scrape(ops);
    let labels = [("kind", "jwt"), ("result", "ok")];
    value(&samples, "herald_server_svids_signed_total", &labels).unwrap_or(0.0)
}

#[test]
fn a_hot_jwt_is_re_minted_in_the_background_and_served_from_the_cache() {
    let dir = temp_dir("jwt-refresh");
    let ops = loopback();
    let server = Server::start_with(&ServerToml::new(&dir.path().join("server")).extra(&format!(
        "default_jwt_svid_ttl = \"{JWT_TTL_SECS}s\"\n{}",
        ops_table(ops)
    )));
    let (agent, agent_id) = server.start_agent(&dir.path().join("agent"));
    server.create_entry("spiffe://example.org/jwt/hot", &agent_id, &[]);

    rt().block_on(async {
        let c = client(&agent.socket).await;
        wait_for_svid(&c).await;
        assert_eq!(
            jwts_signed(ops),
            0.0,
            "no JWT-SVID before the first request"
        );

        // The first request waits for the server: the cold path.
        let first = c.fetch_jwt_svid(["hot"], None).await.unwrap();
        assert_eq!(jwts_signed(ops), 1.0);

        // Nobody asks; at half its life the agent re-mints it.
        let deadline = Instant::now() + Duration::from_secs(3 * JWT_TTL_SECS);
        while jwts_signed(ops) < 2.0 {
            assert!(
                Instant::now() < deadline,
                "the agent never re-minted the hot JWT-SVID"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The next request is answered with the new token, from the cache.
        let signed = jwts_signed(ops);
        let second = c.fetch_jwt_svid(["hot"], None).await.unwrap();
        assert_ne!(second.token(), first.token(), "the re-minted token");
        assert_eq!(
            jwts_signed(ops),
            signed,
            "answered from the agent's cache, without a mint"
        );
        assert_eq!(
            second.spiffe_id().to_string(),
            "spiffe://example.org/jwt/hot"
        );
    });
}

//! Attacks on agent records through the node API of a real server (issue
//! 10, attacks 3 and 8): a ban lost to renewals in flight, and a copied
//! agent SVID that keeps working beside the real agent.

mod harness;

use std::sync::Arc;

use harness::cluster::Server;
use harness::node::NodeAgent;
use harness::workload::rt;
use herald::ca::{KeyPair, KeyType};
use herald::node::{make_csr, AgentCredential};
use herald::proto::node;
use herald::spiffe::TrustDomain;

fn attest(server: &Server) -> NodeAgent {
    let (token, _) = server.join_token();
    let roots = herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap();
    let td = TrustDomain::new(&server.td).unwrap();
    rt().block_on(NodeAgent::attest(server.node_addr, &td, roots, &token))
}

/// One RenewAgent call with `cred`; the new credential, or the status.
async fn renew(
    agent: &NodeAgent,
    cred: &AgentCredential,
) -> Result<AgentCredential, tonic::Status> {
    let mut client = agent
        .connector
        .authenticated(cred)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let resp = client
        .renew_agent(node::RenewAgentRequest {
            csr: make_csr(&key).unwrap(),
        })
        .await?
        .into_inner();
    let not_after = herald::ca::x509::cert_facts(&resp.svid_chain[0])
        .unwrap()
        .not_after;
    Ok(AgentCredential {
        spiffe_id: cred.spiffe_id.clone(),
        chain: resp.svid_chain,
        key: Arc::new(key),
        not_after,
    })
}

#[test]
fn a_ban_is_not_lost_to_renewals_in_flight() {
    let server = Server::start_temp();
    let agent = attest(&server);
    let id = agent.id.to_string();
    // 48 renewals in flight, each from its own copy of the credential (as
    // a compromised agent could send them), while the operator bans it.
    let runtime = rt();
    let renewals = runtime.block_on(async {
        let agent = Arc::new(agent);
        let mut calls = Vec::new();
        for _ in 0..48 {
            let agent = agent.clone();
            calls.push(tokio::spawn(async move {
                let cred = agent.cred.clone();
                renew(&agent, &cred).await
            }));
        }
        let ban = tokio::task::spawn_blocking({
            let (socket, id) = (server.admin_socket.clone(), id.clone());
            move || harness::bin::run_on_socket(&socket, &["agent", "ban", "--spiffe-id", &id])
        });
        let out = ban.await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ok = Vec::new();
        for c in calls {
            if let Ok(cred) = c.await.unwrap() {
                ok.push(cred);
            }
        }
        (agent, ok)
    });
    let (agent, renewed) = renewals;
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &id]);
    assert_eq!(shown["banned"], serde_json::json!(true), "{shown}");
    // Whatever renewed before the ban is refused now, and so is the original.
    runtime.block_on(async {
        for cred in renewed.iter().chain([&agent.cred]) {
            let status = renew(&agent, cred).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        }
    });
}

#[test]
fn only_the_current_agent_svid_authenticates() {
    let server = Server::start_temp();
    let agent = attest(&server);
    let copy = agent.cred.clone();
    let runtime = rt();
    runtime.block_on(async {
        // The real agent renews; the copy of its old SVID is now refused,
        // for renewal and for every other call that authenticates.
        let current = renew(&agent, &agent.cred).await.expect("first renewal");
        let status = renew(&agent, &copy).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("not the agent's current"),
            "{status:?}"
        );
        let mut client = agent.connector.authenticated(&copy).await.unwrap();
        let sync = client.sync(node::SyncRequest::default()).await;
        assert_eq!(sync.unwrap_err().code(), tonic::Code::PermissionDenied);
        // The current SVID goes on working.
        renew(&agent, &current)
            .await
            .expect("renewal with the current SVID");
    });
    // After eviction and a new attestation under the same ID, the SVIDs of
    // the old record are dead.
    let id = agent.id.to_string();
    server.cli_ok(&["agent", "evict", "--spiffe-id", &id]);
    let token = server.join_token_for(&id);
    let roots = herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap();
    let td = TrustDomain::new(&server.td).unwrap();
    let again = runtime.block_on(NodeAgent::attest(server.node_addr, &td, roots, &token));
    assert_eq!(again.id, agent.id);
    runtime.block_on(async {
        let status = renew(&agent, &copy).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        renew(&again, &again.cred)
            .await
            .expect("the new SVID works");
    });
}

#[test]
fn a_join_token_cannot_claim_a_reserved_or_live_identity() {
    let server = Server::start_temp();
    for (id, why) in [
        (
            "spiffe://example.org/herald/server",
            "not under /herald/agent/",
        ),
        ("spiffe://example.org/web", "not under /herald/agent/"),
        (
            "spiffe://example.org/herald/agentx",
            "not under /herald/agent/",
        ),
    ] {
        let (code, _, err) = server.cli(&["token", "generate", "--spiffe-id", id]);
        assert_eq!(code, 2, "{id}: {err}");
        assert!(err.contains("agent_id") && err.contains(why), "{id}: {err}");
    }
    // A second token for a live agent's ID does not let a second node in.
    let fixed = "spiffe://example.org/herald/agent/node-7";
    let first = server.join_token_for(fixed);
    let second = server.join_token_for(fixed);
    let roots = herald::ca::keys::pem_blocks(&server.bundle_pem(), "CERTIFICATE").unwrap();
    let td = TrustDomain::new(&server.td).unwrap();
    let runtime = rt();
    let node7 = runtime.block_on(NodeAgent::attest(server.node_addr, &td, roots, &first));
    assert_eq!(node7.id.to_string(), fixed);
    let status = runtime.block_on(async {
        let mut client = node7.connector.anonymous().await.unwrap();
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        client
            .attest(node::AttestRequest {
                join_token: second,
                x509pop: None,
                k8s_psat: None,
                csr: make_csr(&key).unwrap(),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

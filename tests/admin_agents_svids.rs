//! The Agents, Bundles and Svids services over a real gRPC connection on a
//! Unix socket: join tokens, evict and ban, the bundle, minting X509- and
//! JWT-SVIDs, and bad input to each RPC refused with the field named.

mod harness;

use harness::admin::{assert_status, csr, AdminApi};
use herald::clock::now_unix;
use herald::proto::admin;
use herald::registration::Selector;
use herald::server::state::ServerEvent;
use herald::spiffe::{Bundle, SpiffeId, TrustDomain};
use herald::store::AttestedAgent;
use tonic::Code;

fn agent(path: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: SpiffeId::parse(&format!("spiffe://example.org/herald/agent/{path}")).unwrap(),
        attestation_type: "join_token".into(),
        serial: "0abc".into(),
        expires_at: now_unix() + 3600,
        banned: false,
        selectors: vec![Selector::new("join_token", path).unwrap()],
        created_at: now_unix(),
        updated_at: now_unix(),
    }
}

#[tokio::test]
async fn join_tokens_are_created_with_their_expiry() {
    let h = AdminApi::start().await;
    let mut c = h.agents();
    let now = now_unix();
    let t = c
        .create_join_token(admin::CreateJoinTokenRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.value.len(), 32);
    assert!(t.value.bytes().all(|b| b.is_ascii_hexdigit()));
    // ttl 0 is the default, 10 minutes.
    assert!(
        (now + 600..=now_unix() + 600).contains(&t.expires_at),
        "{t:?}"
    );
    assert_eq!(
        t.agent_id,
        format!("spiffe://example.org/herald/agent/join_token/{}", t.value)
    );
    let stored = h
        .state
        .store
        .consume_join_token(&t.value, now_unix())
        .unwrap();
    assert_eq!(stored.expires_at, t.expires_at);
    assert_eq!(stored.agent_id, None);

    let t = c
        .create_join_token(admin::CreateJoinTokenRequest {
            ttl: 60,
            token: "my-token".into(),
            agent_id: "spiffe://example.org/herald/agent/node/a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.value, "my-token");
    assert!(t.expires_at <= now_unix() + 60 && t.expires_at >= now + 60);
    assert_eq!(t.agent_id, "spiffe://example.org/herald/agent/node/a");
    let stored = h
        .state
        .store
        .consume_join_token("my-token", now_unix())
        .unwrap();
    assert_eq!(
        stored.agent_id.unwrap().as_str(),
        "spiffe://example.org/herald/agent/node/a"
    );

    // Two generated tokens differ.
    let a = c
        .create_join_token(admin::CreateJoinTokenRequest::default())
        .await
        .unwrap()
        .into_inner();
    let b = c
        .create_join_token(admin::CreateJoinTokenRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.value, b.value);
}

#[tokio::test]
async fn bad_join_token_requests_name_the_field() {
    let h = AdminApi::start().await;
    let mut c = h.agents();
    let req = |ttl, token: &str, agent_id: &str| admin::CreateJoinTokenRequest {
        ttl,
        token: token.into(),
        agent_id: agent_id.into(),
    };
    assert_status(
        c.create_join_token(req(-1, "", "")).await,
        Code::InvalidArgument,
        "ttl:",
    );
    assert_status(
        c.create_join_token(req(0, "", "spiffe://Example.org/a"))
            .await,
        Code::InvalidArgument,
        "agent_id: \"spiffe://Example.org/a\" is not a valid SPIFFE ID",
    );
    assert_status(
        c.create_join_token(req(0, "", "spiffe://other.org/a"))
            .await,
        Code::InvalidArgument,
        "agent_id: spiffe://other.org/a is not in trust domain example.org",
    );
    assert_status(
        c.create_join_token(req(0, "a/b", "")).await,
        Code::InvalidArgument,
        "token:",
    );
    c.create_join_token(req(0, "dup", "")).await.unwrap();
    assert_status(
        c.create_join_token(req(0, "dup", "")).await,
        Code::AlreadyExists,
        "token:",
    );
}

#[tokio::test]
async fn agents_are_listed_then_evicted_and_banned() {
    let h = AdminApi::start().await;
    let mut events = h.state.subscribe();
    for name in ["a", "b", "c"] {
        h.state.store.attest_agent(&agent(name)).unwrap();
    }
    let mut c = h.agents();

    // Paged by one: each agent exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_agents(admin::ListAgentsRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.agents.len() <= 1);
        seen.extend(page.agents.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["a", "b", "c"]
            .map(|n| format!("spiffe://example.org/herald/agent/{n}"))
            .to_vec()
    );

    let a_id = "spiffe://example.org/herald/agent/a".to_string();
    let got = c
        .get_agent(admin::AgentIdRequest { id: a_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.attestation_type, "join_token");
    assert_eq!(got.x509svid_serial_number, "0abc");
    assert!(!got.banned);
    assert_eq!(got.selectors[0].r#type, "join_token");

    // Evict: the record goes, the agent's streams are told to close.
    c.delete_agent(admin::AgentIdRequest { id: a_id.clone() })
        .await
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        ServerEvent::AgentRevoked(SpiffeId::parse(&a_id).unwrap())
    );
    assert_status(
        c.get_agent(admin::AgentIdRequest { id: a_id.clone() })
            .await,
        Code::NotFound,
        &format!("agent {a_id} not found"),
    );
    assert_status(
        c.delete_agent(admin::AgentIdRequest { id: a_id.clone() })
            .await,
        Code::NotFound,
        "not found",
    );

    // Ban: the record stays, marked banned.
    let b_id = "spiffe://example.org/herald/agent/b".to_string();
    c.ban_agent(admin::AgentIdRequest { id: b_id.clone() })
        .await
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        ServerEvent::AgentRevoked(SpiffeId::parse(&b_id).unwrap())
    );
    let got = c
        .get_agent(admin::AgentIdRequest { id: b_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(got.banned);
    assert!(
        h.state
            .store
            .get_agent(&SpiffeId::parse(&b_id).unwrap())
            .unwrap()
            .unwrap()
            .banned
    );
    assert_status(
        c.ban_agent(admin::AgentIdRequest { id: a_id.clone() })
            .await,
        Code::NotFound,
        "not found",
    );
}

#[tokio::test]
async fn bad_agent_requests_name_the_field() {
    let h = AdminApi::start().await;
    let mut c = h.agents();
    for page_size in [-1, 10_001] {
        assert_status(
            c.list_agents(admin::ListAgentsRequest {
                page_size,
                page_token: String::new(),
            })
            .await,
            Code::InvalidArgument,
            "page_size:",
        );
    }
    for (id, needle) in [
        ("", "id: must not be empty"),
        (
            "spiffe://Example.org/a",
            "id: \"spiffe://Example.org/a\" is not a valid SPIFFE ID",
        ),
        (
            "spiffe://other.org/a",
            "id: spiffe://other.org/a is not in trust domain",
        ),
    ] {
        let req = || admin::AgentIdRequest { id: id.into() };
        assert_status(c.get_agent(req()).await, Code::InvalidArgument, needle);
        assert_status(c.delete_agent(req()).await, Code::InvalidArgument, needle);
        assert_status(c.ban_agent(req()).await, Code::InvalidArgument, needle);
    }
}

#[tokio::test]
async fn the_bundle_is_this_trust_domains() {
    let h = AdminApi::start().await;
    let b = h
        .bundles()
        .get_bundle(admin::GetBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.trust_domain, "example.org");
    assert_eq!(b.sequence_number, 1);
    let parsed = Bundle::from_spiffe_json(
        TrustDomain::new("example.org").unwrap(),
        b.spiffe_json.as_bytes(),
    )
    .unwrap();
    assert_eq!(parsed.x509_authorities.len(), 1);
    assert_eq!(parsed.jwt_authorities.len(), 1);
}

#[tokio::test]
async fn x509_svids_are_minted_over_a_csr() {
    let h = AdminApi::start().await;
    let mut c = h.svids();
    let key = rcgen::KeyPair::generate().unwrap();
    let res = c
        .mint_x509svid(admin::MintX509svidRequest {
            csr: csr(&key, &["spiffe://example.org/web"], &["web.example.org"]),
            ttl: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let svid = res.svid.unwrap();
    assert_eq!(svid.id, "spiffe://example.org/web");
    let now = now_unix();
    // ttl 0 is the server default, one hour.
    assert!((now + 3590..=now + 3600).contains(&svid.expires_at));
    let facts = herald::ca::x509::cert_facts(&svid.cert_chain[0]).unwrap();
    assert_eq!(facts.uri_sans, vec!["spiffe://example.org/web".to_string()]);
    assert!(!facts.is_ca);
    assert_eq!(
        facts.public_key_spki,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    assert_eq!(res.bundle, h.state.authorities().bundle().x509_authorities);
    // The issuance is recorded.
    let rec = h.state.store.get_issuance(&facts.serial).unwrap().unwrap();
    assert_eq!(rec.spiffe_id.as_str(), "spiffe://example.org/web");

    let res = c
        .mint_x509svid(admin::MintX509svidRequest {
            csr: csr(&key, &["spiffe://example.org/short"], &[]),
            ttl: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(res.svid.unwrap().expires_at <= now_unix() + 60);
}

#[tokio::test]
async fn bad_csrs_are_refused_naming_the_csr() {
    let h = AdminApi::start().await;
    let mut c = h.svids();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut tampered = csr(&key, &["spiffe://example.org/web"], &[]);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            csr(
                &key,
                &["spiffe://example.org/a", "spiffe://example.org/b"],
                &[],
            ),
            "csr: must carry exactly one URI SAN",
        ),
        (
            csr(&key, &[], &["a.org"]),
            "csr: must carry exactly one URI SAN",
        ),
        (tampered, "csr: the CSR's signature does not verify"),
        (Vec::new(), "csr: the CSR is empty"),
        (b"garbage".to_vec(), "csr: the CSR is not a valid DER"),
        (
            csr(&key, &["spiffe://other.org/web"], &[]),
            "not in trust domain example.org",
        ),
        (csr(&key, &["spiffe://example.org"], &[]), "has no path"),
        (
            csr(&key, &["spiffe://Example.org/web"], &[]),
            "is not a valid SPIFFE ID",
        ),
        (
            csr(&key, &["spiffe://example.org/herald/agent/x"], &[]),
            "reserved path",
        ),
        (
            csr(&key, &["spiffe://example.org/web"], &["*.a.org", "b.a.org"]),
            "csr: DNS SANs: wildcard",
        ),
    ];
    for (der, needle) in cases {
        let result = c
            .mint_x509svid(admin::MintX509svidRequest { csr: der, ttl: 0 })
            .await;
        assert_status(result, Code::InvalidArgument, needle);
    }
    assert_status(
        c.mint_x509svid(admin::MintX509svidRequest {
            csr: csr(&key, &["spiffe://example.org/web"], &[]),
            ttl: -1,
        })
        .await,
        Code::InvalidArgument,
        "ttl:",
    );
}

#[tokio::test]
async fn jwt_svids_are_minted_and_verify() {
    let h = AdminApi::start().await;
    let mut c = h.svids();
    let res = c
        .mint_jwtsvid(admin::MintJwtsvidRequest {
            id: "spiffe://example.org/web".into(),
            audience: vec!["db".into()],
            ttl: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let svid = res.svid.unwrap();
    assert_eq!(svid.id, "spiffe://example.org/web");
    assert_eq!(svid.expires_at - svid.issued_at, 300);
    let authorities = h.state.authorities();
    let bundle = authorities.bundle();
    let claims =
        herald::ca::verify_jwt_svid(&svid.token, |_| Some(bundle), "db", now_unix()).unwrap();
    assert_eq!(claims.sub.as_str(), "spiffe://example.org/web");
    assert_eq!(claims.exp, svid.expires_at);

    let req = |id: &str, audience: Vec<&str>, ttl| admin::MintJwtsvidRequest {
        id: id.into(),
        audience: audience.into_iter().map(String::from).collect(),
        ttl,
    };
    for (r, needle) in [
        (
            req("spiffe://example.org/web", vec![], 0),
            "audience: must name at least one",
        ),
        (
            req("spiffe://example.org/web", vec!["a", ""], 0),
            "audience[1]: must not be empty",
        ),
        (
            req("spiffe://Example.org/web", vec!["a"], 0),
            "id: \"spiffe://Example.org/web\"",
        ),
        (
            req("spiffe://other.org/web", vec!["a"], 0),
            "id: spiffe://other.org/web is not in trust domain",
        ),
        (
            req("spiffe://example.org", vec!["a"], 0),
            "id: spiffe://example.org has no path",
        ),
        (req("", vec!["a"], 0), "id: must not be empty"),
        (req("spiffe://example.org/web", vec!["a"], -3), "ttl: -3"),
    ] {
        assert_status(c.mint_jwtsvid(r).await, Code::InvalidArgument, needle);
    }
}

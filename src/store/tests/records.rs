//! Agents, join tokens, bundles, federation relationships, the CA journal
//! and the issuance log.

use rcgen::PublicKeyData as _;

use super::{id, sel, td, Store};
use crate::spiffe::{Bundle, JwtAuthority};
use crate::store::{
    AttestedAgent, AuthorityKind, AuthorityRecord, AuthorityState, BundleEndpointProfile,
    FederationRelationship, IssuanceRecord, JoinToken, PageRequest, StoreError,
};

pub(super) fn agent(path: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: id(path),
        attestation_type: "join_token".into(),
        serial: "0a1b".into(),
        expires_at: 2_000,
        banned: false,
        selectors: vec![sel("join_token:abc")],
        created_at: 1_000,
        updated_at: 1_000,
    }
}

pub(super) fn agents_crud_and_paging(store: Store) {
    for i in 0..25 {
        store
            .attest_agent(&agent(&format!("/agent/{i:02}")))
            .unwrap();
    }
    let banned = store
        .update_agent(&id("/agent/03"), &mut |a| {
            Ok(AttestedAgent {
                banned: true,
                ..a.clone()
            })
        })
        .unwrap();
    assert!(banned.banned);
    assert_eq!(
        store.get_agent(&id("/agent/03")).unwrap(),
        Some(banned.clone())
    );
    assert_eq!(store.get_agent(&id("/agent/99")).unwrap(), None);

    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_agents(&PageRequest { size: 10, token }).unwrap();
        all.extend(page.items);
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(all.len(), 25);
    assert!(all.windows(2).all(|w| w[0].spiffe_id < w[1].spiffe_id));

    assert_eq!(store.delete_agent(&id("/agent/03")).unwrap(), banned);
    assert_not_found(store.delete_agent(&id("/agent/03")), "agent");
}

pub(super) fn token(value: &str, expires_at: i64) -> JoinToken {
    JoinToken {
        token: value.into(),
        expires_at,
        agent_id: Some(id("/agent/fixed")),
    }
}

pub(super) fn join_token_is_single_use(store: Store) {
    store
        .create_join_token(token("secret-token-1", 100))
        .unwrap();
    assert!(matches!(
        store.create_join_token(token("secret-token-1", 200)),
        Err(StoreError::AlreadyExists {
            kind: "join token",
            ..
        })
    ));
    assert_eq!(
        store.consume_join_token("secret-token-1", 50).unwrap(),
        token("secret-token-1", 100)
    );
    let err = store.consume_join_token("secret-token-1", 50).unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotFound {
            kind: "join token",
            ..
        }
    ));
    assert!(
        !err.to_string().contains("secret-token-1"),
        "no secret in {err}"
    );
}

pub(super) fn expired_join_token_is_refused_and_removed(store: Store) {
    store.create_join_token(token("expiring", 100)).unwrap();
    assert!(matches!(
        store.consume_join_token("expiring", 100),
        Err(StoreError::TokenExpired {
            expires_at: 100,
            ..
        })
    ));
    assert!(matches!(
        store.consume_join_token("expiring", 0),
        Err(StoreError::NotFound { .. })
    ));

    for (t, exp) in [("t1", 10), ("t2", 20), ("t3", 30)] {
        store.create_join_token(token(t, exp)).unwrap();
    }
    assert_eq!(store.prune_join_tokens(20).unwrap(), 2);
    assert!(store.consume_join_token("t3", 25).is_ok());
}

/// A bundle with one X.509 and two JWT authorities (one with an expiry).
pub(super) fn sample_bundle(name: &str) -> Bundle {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&ca_key)
        .unwrap();
    let jwt_a = rcgen::KeyPair::generate().unwrap();
    let jwt_b = rcgen::KeyPair::generate().unwrap();
    let mut bundle = Bundle::new(td(name));
    bundle.x509_authorities = vec![ca.der().to_vec()];
    bundle.jwt_authorities = vec![
        JwtAuthority {
            key_id: "kid-a".into(),
            public_key: jwt_a.subject_public_key_info(),
            expires_at: Some(1_800_000_000),
        },
        JwtAuthority {
            key_id: "kid-b".into(),
            public_key: jwt_b.subject_public_key_info(),
            expires_at: None,
        },
    ];
    bundle.sequence = 7;
    bundle.refresh_hint = Some(300);
    bundle
}

pub(super) fn bundles_crud(store: Store) {
    let own = sample_bundle("example.org");
    let peer = sample_bundle("peer.example");
    store.set_bundle(&peer).unwrap();
    store.set_bundle(&own).unwrap();
    assert_eq!(
        store.get_bundle(&td("example.org")).unwrap(),
        Some(own.clone())
    );
    assert_eq!(store.get_bundle(&td("nowhere.example")).unwrap(), None);
    assert_eq!(
        store.list_bundles().unwrap(),
        vec![own.clone(), peer.clone()]
    );

    let mut next = own.clone();
    next.sequence = 8;
    next.jwt_authorities.truncate(1);
    store.set_bundle(&next).unwrap();
    assert_eq!(store.get_bundle(&td("example.org")).unwrap(), Some(next));

    assert_eq!(store.delete_bundle(&td("peer.example")).unwrap(), peer);
    assert_not_found(store.delete_bundle(&td("peer.example")), "bundle");
}

pub(super) fn federation_relationships_crud(store: Store) {
    let web = FederationRelationship {
        trust_domain: td("a.example"),
        bundle_endpoint_url: "https://a.example/bundle".into(),
        profile: BundleEndpointProfile::HttpsWeb,
    };
    let spiffe = FederationRelationship {
        trust_domain: td("b.example"),
        bundle_endpoint_url: "https://b.example:8443".into(),
        profile: BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: crate::spiffe::SpiffeId::parse("spiffe://b.example/server")
                .unwrap(),
        },
    };
    store.put_federation_relationship(&spiffe).unwrap();
    store.put_federation_relationship(&web).unwrap();
    assert_eq!(
        store.get_federation_relationship(&td("b.example")).unwrap(),
        Some(spiffe.clone())
    );
    assert_eq!(
        store.list_federation_relationships().unwrap(),
        vec![web.clone(), spiffe.clone()]
    );
    assert_eq!(
        store
            .delete_federation_relationship(&td("a.example"))
            .unwrap(),
        web
    );
    assert!(matches!(
        store.delete_federation_relationship(&td("a.example")),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.get_federation_relationship(&td("a.example")).unwrap(),
        None
    );
}

fn authority(id: &str, created_at: i64) -> AuthorityRecord {
    AuthorityRecord {
        id: id.into(),
        kind: AuthorityKind::X509,
        state: AuthorityState::Prepared,
        tainted: false,
        key_id: format!("x509-ca-{id}"),
        cert_der: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        upstream_chain: vec![],
        public_key: None,
        jwt_key_id: None,
        not_before: created_at,
        not_after: created_at + 86_400,
        created_at,
        bundle_sequence: 0,
        server_id: String::new(),
    }
}

pub(super) fn authority_journal(store: Store) {
    store.put_authority(&authority("c", 20)).unwrap();
    store.put_authority(&authority("b", 10)).unwrap();
    store.put_authority(&authority("a", 20)).unwrap();
    let mut jwt = authority("j", 5);
    jwt.kind = AuthorityKind::Jwt;
    jwt.cert_der = None;
    jwt.public_key = Some(vec![1, 2, 3]);
    jwt.jwt_key_id = Some("kid".into());
    store.put_authority(&jwt).unwrap();

    let mut active = authority("b", 10);
    active.state = AuthorityState::Active;
    store.put_authority(&active).unwrap();

    let ids: Vec<String> = store
        .list_authorities()
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["j", "b", "a", "c"]);
    assert_eq!(store.list_authorities().unwrap()[1], active);
    assert_eq!(store.delete_authority("j").unwrap(), jwt);
    assert!(matches!(
        store.delete_authority("j"),
        Err(StoreError::NotFound { .. })
    ));
}

fn issuance(serial: &str, not_after: i64) -> IssuanceRecord {
    IssuanceRecord {
        serial: serial.into(),
        spiffe_id: id("/web"),
        agent_id: Some(id("/agent")),
        entry_id: Some("entry-1".into()),
        not_after,
        issued_at: not_after - 3600,
    }
}

pub(super) fn issuance_log(store: Store) {
    store
        .append_issuances(&[issuance("0a", 100), issuance("0b", 200), issuance("0c", -5)])
        .unwrap();
    store.append_issuances(&[issuance("0d", 300)]).unwrap();
    assert!(matches!(
        store.append_issuances(&[issuance("0E", 1)]),
        Err(StoreError::Invalid {
            field: "serial",
            ..
        })
    ));
    assert_eq!(store.count_issuances().unwrap(), 4);
    assert_eq!(store.get_issuance("0A").unwrap(), Some(issuance("0a", 100)));
    assert_eq!(store.get_issuance("ff").unwrap(), None);

    // Re-appending a serial with a later expiry moves it in the expiry index.
    store.append_issuances(&[issuance("0a", 1_000)]).unwrap();
    assert_eq!(store.prune_issuances(200).unwrap(), 1); // only 0c (< 200)
    assert_eq!(store.prune_issuances(301).unwrap(), 2); // 0b, 0d
    assert_eq!(store.count_issuances().unwrap(), 1);
    assert_eq!(
        store.get_issuance("0a").unwrap(),
        Some(issuance("0a", 1_000))
    );
    assert_eq!(store.prune_issuances(301).unwrap(), 0);
}

/// `result` is NotFound for a record of `kind`.
#[track_caller]
pub(super) fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, kind: &str) {
    match result {
        Err(StoreError::NotFound { kind: k, .. }) if k == kind => {}
        other => panic!("expected {kind} NotFound, got {other:?}"),
    }
}

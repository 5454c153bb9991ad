//! x509pop attestation through the node API over a real store: who may
//! (re-)attest under which ID.

use std::sync::Arc;

use tonic::{Code, Request, Status};

use super::tests::{csr, id, server, Server};
use crate::clock::now_unix;
use crate::proto::node::{self, node_server::Node as _};
use crate::spiffe::TrustDomain;
use crate::store::AttestedAgent;
use crate::x509pop::test_pki::TestPki as Pki;
use crate::x509pop::{ChallengeKey, PathTemplate, X509PopVerifier};

const CN_ID: &str = "spiffe://example.org/herald/agent/vm/db-1";

/// A server trusting a fresh machine PKI, naming agents `/vm/<cn>`.
fn x509pop_server() -> (Server, Pki) {
    let mut s = server();
    let pki = Pki::new("machine", "db-1", "db-1.example.net").unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let verifier = X509PopVerifier::new(
        vec![pki.root.der()],
        PathTemplate::parse("/vm/{{subject_cn}}", &td).unwrap(),
        td,
        ChallengeKey::generate().unwrap(),
    );
    s.api = s.api.clone().with_x509pop(Some(Arc::new(verifier)));
    (s, pki)
}

async fn attest(s: &Server, pki: &Pki) -> Result<node::AttestResponse, Status> {
    let challenge = s
        .api
        .challenge(Request::new(node::ChallengeRequest {}))
        .await?
        .into_inner()
        .challenge;
    let csr = csr();
    let proof = pki.machine.proof(&[&pki.inter], challenge, &csr).unwrap();
    let request = node::AttestRequest {
        join_token: String::new(),
        csr,
        x509pop: Some(proof),
        k8s_psat: None,
    };
    s.api
        .attest(Request::new(request))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn an_x509pop_agent_reattests_under_its_id_until_banned() {
    let (s, pki) = x509pop_server();
    let first = attest(&s, &pki).await.unwrap();
    assert_eq!(first.spiffe_id, CN_ID);
    let record = s.state.store.get_agent(&id(CN_ID)).unwrap().unwrap();
    assert_eq!(record.attestation_type, "x509pop");
    assert!(record
        .selectors
        .iter()
        .any(|s| s.to_string() == "x509pop:subject:cn:db-1"));
    attest(&s, &pki).await.unwrap();
    let again = s.state.store.get_agent(&id(CN_ID)).unwrap().unwrap();
    assert_ne!(
        again.serial, record.serial,
        "the new SVID is the current one"
    );
    assert_eq!(again.created_at, record.created_at);
    s.state
        .store
        .update_agent(&id(CN_ID), &mut |a| {
            Ok(AttestedAgent {
                banned: true,
                ..a.clone()
            })
        })
        .unwrap();
    let banned = attest(&s, &pki).await.unwrap_err();
    assert_eq!(banned.code(), Code::PermissionDenied);
    assert!(banned.message().contains("is banned"), "{banned:?}");
}

#[tokio::test]
async fn a_join_token_agent_is_never_taken_over() {
    let (s, pki) = x509pop_server();
    let now = now_unix();
    s.state
        .store
        .attest_agent(&AttestedAgent {
            spiffe_id: id(CN_ID),
            attestation_type: "join_token".into(),
            serial: "01".into(),
            expires_at: now + 600,
            banned: false,
            selectors: vec![],
            created_at: now,
            updated_at: now,
        })
        .unwrap();
    let err = attest(&s, &pki).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("attested by join_token"), "{err:?}");
    let kept = s.state.store.get_agent(&id(CN_ID)).unwrap().unwrap();
    assert_eq!(kept.serial, "01");
}

#[tokio::test]
async fn x509pop_is_refused_when_not_configured_or_mixed_with_a_token() {
    let (configured, pki) = x509pop_server();
    let plain = server();
    let err = attest(&plain, &pki).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("[node_attestors.x509pop]"),
        "{err:?}"
    );
    let request = node::AttestRequest {
        join_token: "tok".into(),
        csr: csr(),
        x509pop: Some(node::X509PopProof::default()),
        k8s_psat: None,
    };
    let err = configured
        .api
        .attest(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

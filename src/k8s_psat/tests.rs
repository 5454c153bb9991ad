//! The decoders against the recorded shapes (`tests/fixtures/k8s/`) and
//! against bad input: every refusal names what was wrong.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::jwks::{KeySet, Rules};
use super::test_tokens::{TestIssuer, TokenSpec};
use super::*;

const CLAIMS: &str = include_str!("../../tests/fixtures/k8s/projected-token-claims.json");
const REVIEW: &str = include_str!("../../tests/fixtures/k8s/tokenreview-response.json");
const REVIEW_NO: &str = include_str!("../../tests/fixtures/k8s/tokenreview-unauthenticated.json");
const REVIEW_REQUEST: &str = include_str!("../../tests/fixtures/k8s/tokenreview-request.json");
const POD: &str = include_str!("../../tests/fixtures/k8s/pod.json");
const NODE: &str = include_str!("../../tests/fixtures/k8s/node.json");
const JWKS: &str = include_str!("../../tests/fixtures/k8s/jwks.json");

const NOW: i64 = 1_796_120_000;
const NODE_UID: &str = "646e7c5e-32d6-4d42-9dbd-e504e6cbe6b1";

fn b64(v: &str) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token with these header and claims texts and a dummy signature.
fn unsigned(header: &str, claims: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
}

fn fixture_identity() -> PodIdentity {
    PodIdentity {
        namespace: "herald".into(),
        service_account: "herald-agent".into(),
        pod_name: Some("herald-agent-x7k2p".into()),
        pod_uid: Some("5e0bd49b-f040-43b0-99b7-22765a53f7f3".into()),
        node_name: Some("worker-1".into()),
        node_uid: Some(NODE_UID.into()),
    }
}

fn rules() -> Rules<'static> {
    Rules {
        audience: DEFAULT_AUDIENCE,
        issuer: None,
        leeway: 30,
    }
}

#[test]
fn the_documented_token_shape_parses() {
    let token = unsigned(r#"{"alg":"RS256","kid":"k1"}"#, CLAIMS);
    let parsed = parse_token(&token).unwrap();
    assert_eq!(parsed.kid.as_deref(), Some("k1"));
    assert_eq!(parsed.claims.identity, fixture_identity());
    assert_eq!(parsed.claims.audiences, vec!["herald-server"]);
    assert_eq!(parsed.claims.expires_at, 1_796_125_640);
    assert_eq!(
        parsed.claims.issuer.as_deref(),
        Some("https://kubernetes.default.svc.cluster.local")
    );
    // Before 1.32 (no node), and a string audience.
    let mut old: Value = serde_json::from_str(CLAIMS).unwrap();
    old["kubernetes.io"].as_object_mut().unwrap().remove("node");
    old["aud"] = json!("herald-server");
    let token = unsigned(r#"{"alg":"ES256","kid":"k"}"#, &old.to_string());
    let parsed = parse_token(&token).unwrap();
    assert_eq!(parsed.claims.identity.node_uid, None);
    assert_eq!(parsed.claims.audiences, vec!["herald-server"]);
}

#[test]
fn bad_tokens_are_refused_with_the_reason() {
    let ok_header = r#"{"alg":"RS256","kid":"k1"}"#;
    let mut no_exp: Value = serde_json::from_str(CLAIMS).unwrap();
    no_exp.as_object_mut().unwrap().remove("exp");
    let legacy = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "herald",
        "sub": "system:serviceaccount:herald:herald-agent",
        "exp": NOW + 10,
    });
    let mut no_ns: Value = serde_json::from_str(CLAIMS).unwrap();
    no_ns["kubernetes.io"]["namespace"] = json!("");
    let mut control: Value = serde_json::from_str(CLAIMS).unwrap();
    control["kubernetes.io"]["node"]["uid"] = json!("a\nb");
    let mut float_exp: Value = serde_json::from_str(CLAIMS).unwrap();
    float_exp["exp"] = json!(1.5e9);
    let dup = CLAIMS.replacen("\"exp\"", "\"exp\": 1, \"exp\"", 1);
    let cases: Vec<(String, &str)> = vec![
        ("a".repeat(20_000), "limit is 16384"),
        ("a.b".into(), "found 2"),
        (
            format!("{}.{}.!!", b64(ok_header), b64(CLAIMS)),
            "signature is not base64url",
        ),
        (unsigned("[1]", CLAIMS), "header is not a valid JSON object"),
        (
            unsigned(r#"{"alg":"none"}"#, CLAIMS),
            "\"none\" is not accepted",
        ),
        (
            unsigned(r#"{"alg":"HS256"}"#, CLAIMS),
            "\"HS256\" is not accepted",
        ),
        (
            unsigned(r#"{"alg":"RS256","crit":["b64"]}"#, CLAIMS),
            "crit",
        ),
        (
            format!("{}.{}.", b64(ok_header), b64(CLAIMS)),
            "empty signature",
        ),
        (unsigned(ok_header, &no_exp.to_string()), "no `exp` claim"),
        (
            unsigned(ok_header, &legacy.to_string()),
            "no `kubernetes.io` claim",
        ),
        (
            unsigned(ok_header, &no_ns.to_string()),
            "kubernetes.io.namespace",
        ),
        (
            unsigned(ok_header, &control.to_string()),
            "kubernetes.io.node",
        ),
        (
            unsigned(ok_header, &float_exp.to_string()),
            "claims is not a valid JSON",
        ),
        (unsigned(ok_header, &dup), "duplicate"),
    ];
    for (token, want) in cases {
        let err = crate::errors::chain(&parse_token(&token).unwrap_err());
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn offline_verification_checks_key_signature_time_audience_and_issuer() {
    let issuer = TestIssuer::es256("key-1").unwrap();
    let keys = KeySet::parse(issuer.jwks_json().unwrap().as_bytes()).unwrap();
    let spec = TokenSpec::agent("worker-1", NODE_UID, NOW - 60);
    let token = issuer.token(&spec).unwrap();
    let claims = keys.verify(&token, &rules(), NOW).unwrap();
    assert_eq!(claims.identity.node_uid.as_deref(), Some(NODE_UID));

    let other = TestIssuer::es256("key-1").unwrap();
    let forged = other.token(&spec).unwrap();
    let err = keys.verify(&forged, &rules(), NOW).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
    let unknown = TestIssuer::es256("key-2").unwrap().token(&spec).unwrap();
    let err = keys.verify(&unknown, &rules(), NOW).unwrap_err();
    assert!(err.to_string().contains("\"key-2\" is not in"), "{err}");

    let expired = issuer
        .token(&TokenSpec {
            expires_at: NOW,
            ..spec.clone()
        })
        .unwrap();
    let err = keys.verify(&expired, &rules(), NOW).unwrap_err();
    assert!(err.to_string().contains("expired at"), "{err}");
    let future = issuer
        .token(&TokenSpec {
            issued_at: NOW + 300,
            expires_at: NOW + 3600,
            ..spec.clone()
        })
        .unwrap();
    let err = keys.verify(&future, &rules(), NOW).unwrap_err();
    assert!(err.to_string().contains("`nbf`"), "{err}");
    let wrong_aud = issuer
        .token(&TokenSpec {
            audience: "https://kubernetes.default.svc".into(),
            ..spec.clone()
        })
        .unwrap();
    let err = keys.verify(&wrong_aud, &rules(), NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not include \"herald-server\""),
        "{err}"
    );
    let strict = Rules {
        issuer: Some("https://oidc.example.net"),
        ..rules()
    };
    let err = keys.verify(&token, &strict, NOW).unwrap_err();
    assert!(err.to_string().contains("issuer"), "{err}");
}

#[test]
fn rs256_keys_verify_from_the_jwks_form() {
    // An RSA key as Kubernetes publishes it; the token verifies through
    // the same path once its signature is from that key. The key itself
    // is made by openssl in the integration test; here only the JWKS
    // reading of RSA members is checked.
    let jwks = json!({"keys": [
        {"use": "enc", "kty": "RSA", "kid": "enc", "n": "AQAB", "e": "AQAB"},
        {"use": "sig", "kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"use": "sig", "kty": "RSA", "kid": "rsa", "alg": "RS256", "n": b64("a modulus of some length"), "e": "AQAB"},
    ]});
    let keys = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.has_kid("rsa"));
}

#[test]
fn key_sets_are_read_or_refused() {
    let keys = KeySet::parse(JWKS.as_bytes()).unwrap();
    assert!(keys.has_kid("Qm9vdHN0cmFwU2FtcGxlS2V5SWQtbm90LWEtcmVhbC1rZXk"));
    for (doc, want) in [
        ("[]", "no `keys` array"),
        ("{\"keys\":[]}", "no usable signing key"),
        (
            "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
            "must be 32 bytes",
        ),
        ("not json", "not a JWKS document"),
    ] {
        let err = KeySet::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    let many = json!({"keys": vec![json!({}); 65]});
    let err = KeySet::parse(many.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("limit is 64"), "{err}");
}

#[test]
fn the_documented_token_review_reads_as_the_pod_identity() {
    assert_eq!(
        review::interpret(REVIEW.as_bytes(), DEFAULT_AUDIENCE).unwrap(),
        fixture_identity()
    );
    let sent: Value = serde_json::from_slice(&review::request_body("T", "herald-server")).unwrap();
    let mut want: Value = serde_json::from_str(REVIEW_REQUEST).unwrap();
    want["spec"]["token"] = json!("T");
    assert_eq!(sent, want);
}

#[test]
fn bad_reviews_are_refused_with_the_reason() {
    let mut wrong_aud: Value = serde_json::from_str(REVIEW).unwrap();
    wrong_aud["status"]["audiences"] = json!(["https://kubernetes.default.svc"]);
    let mut no_aud: Value = serde_json::from_str(REVIEW).unwrap();
    no_aud["status"]
        .as_object_mut()
        .unwrap()
        .remove("audiences");
    let mut user: Value = serde_json::from_str(REVIEW).unwrap();
    user["status"]["user"]["username"] = json!("kubernetes-admin");
    let mut status: Value = serde_json::from_str(REVIEW).unwrap();
    status["kind"] = json!("Status");
    let cases = [
        (REVIEW_NO.to_string(), "service account token has expired"),
        (wrong_aud.to_string(), "did not confirm the audience"),
        (no_aud.to_string(), "did not confirm the audience"),
        (
            user.to_string(),
            "\"kubernetes-admin\", not a service account",
        ),
        (status.to_string(), "kind \"Status\""),
        ("{}".into(), "no status"),
        ("[]".into(), "not a TokenReview"),
    ];
    for (body, want) in cases {
        let err = review::interpret(body.as_bytes(), DEFAULT_AUDIENCE)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn pods_and_nodes_are_read() {
    let pod = objects::parse_pod(POD.as_bytes()).unwrap();
    assert_eq!(pod.uid, "5e0bd49b-f040-43b0-99b7-22765a53f7f3");
    assert_eq!(pod.node_name.as_deref(), Some("worker-1"));
    assert_eq!(pod.labels["app.kubernetes.io/name"], "herald-agent");
    let node = objects::parse_node(NODE.as_bytes()).unwrap();
    assert_eq!(node.uid, NODE_UID);
    assert_eq!(node.labels["topology.kubernetes.io/zone"], "eu-west-1a");
    let err = objects::parse_node(POD.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("kind \"Pod\""), "{err}");
    let err = objects::parse_pod(b"{\"metadata\":{\"name\":\"p\"}}").unwrap_err();
    assert!(err.to_string().contains("metadata.uid"), "{err}");
}

#[test]
fn agent_id_and_selectors_follow_spire() {
    let td = crate::spiffe::TrustDomain::new("example.org").unwrap();
    let id = selectors::agent_id(&td, "prod", NODE_UID).unwrap();
    assert_eq!(
        id.to_string(),
        format!("spiffe://example.org/herald/agent/k8s_psat/prod/{NODE_UID}")
    );
    assert!(selectors::agent_id(&td, "prod", "a/../b").is_err());
    let node = objects::parse_node(NODE.as_bytes()).unwrap();
    let allowed = vec!["topology.kubernetes.io/zone".to_string()];
    let node_labels = selectors::allowed_labels(&node.labels, &allowed);
    let got: Vec<String> =
        selectors::selectors("prod", &fixture_identity(), &node_labels, &BTreeMap::new())
            .iter()
            .map(ToString::to_string)
            .collect();
    let want = [
        "k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a".to_string(),
        "k8s_psat:agent_node_name:worker-1".into(),
        format!("k8s_psat:agent_node_uid:{NODE_UID}"),
        "k8s_psat:agent_ns:herald".into(),
        "k8s_psat:agent_pod_name:herald-agent-x7k2p".into(),
        "k8s_psat:agent_pod_uid:5e0bd49b-f040-43b0-99b7-22765a53f7f3".into(),
        "k8s_psat:agent_sa:herald-agent".into(),
        "k8s_psat:cluster:prod".into(),
    ];
    assert_eq!(got, want);
}

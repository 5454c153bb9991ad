//! k8s_psat node attestation with real processes: `herald server run`
//! with `[node_attestors.k8s_psat]`, `herald agent run` with
//! `[node_attestor.k8s_psat]` reading its token file, and a Kubernetes API
//! server played by this test (`harness::kube_api`: TokenReview, pods,
//! nodes and the JWKS in the shapes of `tests/fixtures/k8s/`). Tokens have
//! the exact shape Kubernetes issues and are signed by keys made here
//! (ES256 by ring, RS256 by an openssl-made RSA key); offline verification
//! goes through the same JWKS code production uses.
//!
//! - TokenReview: the agent gets `…/k8s_psat/prod/<node uid>` and the
//!   selectors (with the allowed node and pod labels from the API), a
//!   workload entry under it gets an SVID, the node re-attests with a fresh
//!   token; a cluster before 1.32 (no node in the token) is named through
//!   the pod's `spec.nodeName`.
//! - JWKS (URL, RS256, issuer checked): the same ID shape, no labels.
//! - A node alias by `k8s_psat:cluster:prod` covers the agent; a running
//!   agent re-attests when its SVID is due, with the token the kubelet
//!   last rotated.
//! - Refusals, each naming its reason: wrong audience, expired token,
//!   unknown cluster, service account not allowed, TokenReview not
//!   authenticated, a replaced pod, no node UID; and a banned node. An
//!   unreachable API server is "unavailable", not a refusal.

mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::bin::now;
use harness::cluster::{spawn_role, Agent, Server};
use harness::kube_api::KubeApi;
use harness::workload::{client, rt, wait_for_svid};
use herald::k8s_psat::test_tokens::{TestIssuer, TokenSpec};

const WAIT: Duration = Duration::from_secs(30);
const NODE_1: &str = "646e7c5e-32d6-4d42-9dbd-e504e6cbe6b1";
const NODE_2: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";

/// `[node_attestors.k8s_psat.clusters.prod]` verified by `api`, with the
/// zone and the pod name labels allowed.
fn prod(api: &KubeApi) -> String {
    format!(
        "[node_attestors.k8s_psat.clusters.prod]\n\
         service_account_allow_list = [\"herald:herald-agent\"]\n\
         allowed_node_label_keys = [\"topology.kubernetes.io/zone\"]\n\
         allowed_pod_label_keys = [\"app.kubernetes.io/name\"]\n{}",
        api.cluster_keys()
    )
}

/// An agent of `server` in `dir` attesting for `cluster` with `token`.
fn agent_config(server: &Server, dir: &Path, cluster: &str, token: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let token_path = dir.join("herald-agent");
    std::fs::write(&token_path, token).unwrap();
    let table = format!(
        "[node_attestor.k8s_psat]\ncluster = \"{cluster}\"\ntoken_path = \"{}\"\n",
        token_path.display()
    );
    server.agent_toml(dir, None).extra(&table).write()
}

fn selectors(shown: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = shown["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["type"].as_str().unwrap(),
                s["value"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// The node and the agent pod of `spec` in `api`, with labels.
fn add_pod_and_node(api: &KubeApi, spec: &TokenSpec, node: &str, node_uid: &str) {
    api.add_node(
        node,
        node_uid,
        &[
            ("topology.kubernetes.io/zone", "eu-west-1a"),
            ("kubernetes.io/hostname", node),
        ],
    );
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    api.add_pod(
        &spec.namespace,
        &pod,
        &pod_uid,
        node,
        &[
            ("app.kubernetes.io/name", "herald-agent"),
            ("pod-template-generation", "1"),
        ],
    );
}

/// Cluster `prod` reviewed by a test API server, the agent pod of node
/// worker-1 with an admitted token, and a server attesting it. Fields drop
/// in order: the server process before the files and the runtime.
struct Prod {
    server: Server,
    api: KubeApi,
    issuer: TestIssuer,
    spec: TokenSpec,
    token: String,
    agent_dir: PathBuf,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Prod {
    /// `top_level` keys go into server.toml before the tables.
    fn start(top_level: &str) -> Prod {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let api = KubeApi::start(&rt, &dir.path().join("kube"));
        let issuer = TestIssuer::es256("cluster-key-1").unwrap();
        let spec = TokenSpec::agent("worker-1", NODE_1, now());
        add_pod_and_node(&api, &spec, "worker-1", NODE_1);
        let token = issuer.token(&spec).unwrap();
        api.admit(&token, &spec);
        let extra = format!("{top_level}{}", prod(&api));
        let server = Server::start(&dir.path().join("server"), &extra);
        Prod {
            server,
            agent_dir: dir.path().join("agent"),
            api,
            issuer,
            spec,
            token,
            rt,
            dir,
        }
    }

    /// The worker-1 agent's configuration, its token file written.
    fn agent_config(&self) -> PathBuf {
        agent_config(&self.server, &self.agent_dir, "prod", &self.token)
    }
}

#[test]
fn token_review_attests_the_node_and_its_workloads() {
    // Bound in this order so that they drop in the reverse: the server
    // process first, the temp dir last.
    let Prod {
        dir,
        rt,
        agent_dir,
        token,
        spec,
        issuer,
        api,
        server,
    } = Prod::start("");
    let config = agent_config(&server, &agent_dir, "prod", &token);
    let mut agent = Agent::start(&config);

    let agent_id = format!("spiffe://example.org/herald/agent/k8s_psat/prod/{NODE_1}");
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_eq!(shown["attestation_type"], "k8s_psat", "{shown}");
    assert_eq!(shown["can_reattest"], true, "{shown}");
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    let mut want = vec![
        "k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-west-1a".to_string(),
        "k8s_psat:agent_node_name:worker-1".into(),
        format!("k8s_psat:agent_node_uid:{NODE_1}"),
        "k8s_psat:agent_ns:herald".into(),
        "k8s_psat:agent_pod_label:app.kubernetes.io/name:herald-agent".into(),
        format!("k8s_psat:agent_pod_name:{pod}"),
        format!("k8s_psat:agent_pod_uid:{pod_uid}"),
        "k8s_psat:agent_sa:herald-agent".into(),
        "k8s_psat:cluster:prod".into(),
    ];
    want.sort();
    assert_eq!(selectors(&shown), want);
    // The review, then the pod and the node for their labels; all with the
    // server's own token (the API server answers 401 without it).
    let requests = api.requests();
    for r in [
        "POST /apis/authentication.k8s.io/v1/tokenreviews".to_string(),
        format!("GET /api/v1/namespaces/herald/pods/{pod}"),
        "GET /api/v1/nodes/worker-1".into(),
    ] {
        assert!(requests.contains(&r), "{r} not in {requests:?}");
    }

    server.create_entry("spiffe://example.org/k8s/web", &agent_id, &[]);
    rt.block_on(async {
        let svid = wait_for_svid(&client(&agent.socket).await).await;
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/k8s/web");
    });

    // The data dir wiped and a rotated token projected: the node attests
    // again under the same ID.
    let serial_before = shown["x509svid_serial_number"].clone();
    agent.proc.stop();
    std::fs::remove_dir_all(agent_dir.join("data")).unwrap();
    let rotated = TokenSpec {
        issued_at: spec.issued_at + 1,
        expires_at: spec.expires_at + 1,
        ..spec.clone()
    };
    let fresh = issuer.token(&rotated).unwrap();
    api.admit(&fresh, &rotated);
    std::fs::write(agent_dir.join("herald-agent"), &fresh).unwrap();
    let mut agent = Agent::start(&config);
    assert!(agent.proc.log_text().contains("attested with k8s_psat"));
    let again = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_ne!(again["x509svid_serial_number"], serial_before, "{again}");

    // A cluster before 1.32: neither the token nor the review names the
    // node; the server finds it through the pod's spec.nodeName.
    let old = TokenSpec {
        pod: Some((
            "herald-agent-old".into(),
            "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d".into(),
        )),
        node: None,
        ..TokenSpec::agent("worker-2", NODE_2, now())
    };
    add_pod_and_node(&api, &old, "worker-2", NODE_2);
    let old_token = issuer.token(&old).unwrap();
    api.admit(&old_token, &old);
    let _second = Agent::start(&agent_config(
        &server,
        &dir.path().join("agent-2"),
        "prod",
        &old_token,
    ));
    let second_id = format!("spiffe://example.org/herald/agent/k8s_psat/prod/{NODE_2}");
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &second_id]);
    assert!(
        selectors(&shown).contains(&"k8s_psat:agent_node_name:worker-2".to_string()),
        "{shown}"
    );
    assert_eq!(
        server.cli_json(&["agent", "list"])["agents"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Banned: a fresh token no longer admits the node.
    server.cli_ok(&["agent", "ban", "--spiffe-id", &agent_id]);
    agent.proc.stop();
    std::fs::remove_dir_all(agent_dir.join("data")).unwrap();
    let mut banned = spawn_role("agent", &config);
    let line = banned.wait_for_line("is banned", WAIT);
    assert!(line.contains(&agent_id), "{line}");

    // Tokens are credentials: never in the server's or the agent's log.
    let logs = format!("{}{}", server.proc.log_text(), agent.proc.log_text());
    for t in [&token, &fresh, &old_token] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a token signature is in the logs"
        );
    }
}

#[test]
fn offline_jwks_verification_with_an_rs256_cluster_key() {
    let dir = tempfile::tempdir().unwrap();
    let der = harness::openssl::rsa_key(dir.path(), "sa");
    let issuer = TestIssuer::rs256("sa-key", &der).unwrap();
    let rt = rt();
    let api = KubeApi::start(&rt, &dir.path().join("kube"));
    api.serve_jwks(issuer.jwks_json().unwrap());
    let edge = format!(
        "[node_attestors.k8s_psat.clusters.edge]\n\
         service_account_allow_list = [\"herald:herald-agent\"]\n\
         jwks_url = \"{}/openid/v1/jwks\"\njwks_ca_path = \"{}\"\n\
         issuer = \"https://kubernetes.default.svc.cluster.local\"\n",
        api.url(),
        api.ca.ca_path.display()
    );
    let server = Server::start(&dir.path().join("server"), &edge);
    let spec = TokenSpec::agent("edge-7", NODE_1, now());
    let token = issuer.token(&spec).unwrap();
    let _agent = Agent::start(&agent_config(
        &server,
        &dir.path().join("agent"),
        "edge",
        &token,
    ));

    let agent_id = format!("spiffe://example.org/herald/agent/k8s_psat/edge/{NODE_1}");
    let shown = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    let mut want = vec![
        "k8s_psat:agent_node_name:edge-7".to_string(),
        format!("k8s_psat:agent_node_uid:{NODE_1}"),
        "k8s_psat:agent_ns:herald".into(),
        format!("k8s_psat:agent_pod_name:{pod}"),
        format!("k8s_psat:agent_pod_uid:{pod_uid}"),
        "k8s_psat:agent_sa:herald-agent".into(),
        "k8s_psat:cluster:edge".into(),
    ];
    want.sort();
    assert_eq!(selectors(&shown), want);
    // Only the keys were fetched: no review, no pod, no node.
    assert_eq!(api.requests(), vec!["GET /openid/v1/jwks".to_string()]);
}

/// Starts an agent that must be refused; returns the log line naming why.
fn refused(server: &Server, dir: &Path, cluster: &str, token: &str, reason: &str) -> String {
    let line = failed(server, dir, cluster, token, reason);
    assert!(line.contains("permission denied"), "{line}");
    line
}

/// Starts an agent whose attestation must fail; the log line naming why.
fn failed(server: &Server, dir: &Path, cluster: &str, token: &str, reason: &str) -> String {
    let mut agent = spawn_role("agent", &agent_config(server, dir, cluster, token));
    agent.wait_for_line(reason, WAIT)
}

#[test]
fn refused_attestations_name_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let api = KubeApi::start(&rt, &dir.path().join("kube"));
    let issuer = TestIssuer::es256("cluster-key-1").unwrap();
    let jwks = dir.path().join("edge-jwks.json");
    std::fs::write(&jwks, issuer.jwks_json().unwrap()).unwrap();
    // `down`: an API server that is not there (a closed loopback port).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("https://localhost:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let tables = format!(
        "{}[node_attestors.k8s_psat.clusters.edge]\n\
         service_account_allow_list = [\"herald:herald-agent\"]\njwks_path = \"{}\"\n\
         [node_attestors.k8s_psat.clusters.down]\n\
         service_account_allow_list = [\"herald:herald-agent\"]\n{}",
        prod(&api),
        jwks.display(),
        api.cluster_keys().replace(&api.url(), &down_url)
    );
    let server = Server::start(&dir.path().join("server"), &tables);
    let good = TokenSpec::agent("worker-1", NODE_1, now());
    add_pod_and_node(&api, &good, "worker-1", NODE_1);
    let admitted = |spec: &TokenSpec| {
        let t = issuer.token(spec).unwrap();
        api.admit(&t, spec);
        t
    };
    let case = |name: &str| dir.path().join(name);

    let wrong_audience = admitted(&TokenSpec {
        audience: "https://kubernetes.default.svc.cluster.local".into(),
        ..good.clone()
    });
    refused(
        &server,
        &case("aud"),
        "prod",
        &wrong_audience,
        "does not include \"herald-server\"",
    );

    let expired = admitted(&TokenSpec {
        issued_at: now() - 7200,
        expires_at: now() - 60,
        ..good.clone()
    });
    refused(
        &server,
        &case("exp"),
        "prod",
        &expired,
        "the token expired at",
    );

    let token = admitted(&good);
    refused(
        &server,
        &case("cluster"),
        "staging",
        &token,
        "cluster \"staging\" is not configured",
    );

    let default_sa = admitted(&TokenSpec {
        namespace: "default".into(),
        service_account: "default".into(),
        ..good.clone()
    });
    let line = refused(
        &server,
        &case("sa"),
        "prod",
        &default_sa,
        "service account default:default is not in service_account_allow_list",
    );
    assert!(line.contains("\"prod\""), "{line}");

    // Well formed and unexpired, but the API server does not know it (its
    // pod was deleted, say).
    let unknown = issuer
        .token(&TokenSpec {
            issued_at: good.issued_at - 1,
            ..good.clone()
        })
        .unwrap();
    refused(
        &server,
        &case("review"),
        "prod",
        &unknown,
        "TokenReview API did not authenticate the token: [invalid bearer token",
    );

    // The pod was deleted and created again under the same name: the API
    // (asked for the pod's labels) names another pod than the token.
    let replaced = admitted(&TokenSpec {
        pod: Some((
            good.pod.clone().unwrap().0,
            "00000000-0000-4000-8000-000000000000".into(),
        )),
        ..good.clone()
    });
    refused(
        &server,
        &case("pod"),
        "prod",
        &replaced,
        "the pod's UID in the API",
    );

    let no_node = issuer
        .token(&TokenSpec {
            node: None,
            ..good.clone()
        })
        .unwrap();
    refused(
        &server,
        &case("node"),
        "edge",
        &no_node,
        "names no node UID",
    );

    // Not a refusal: the cluster could not be asked. The agent is told the
    // server is unavailable, and which request failed.
    let line = failed(
        &server,
        &case("down"),
        "down",
        &token,
        "asking the Kubernetes API failed",
    );
    assert!(line.contains("server unavailable"), "{line}");
    let url = format!("cannot connect to {down_url}/apis/authentication.k8s.io/v1/tokenreviews");
    assert!(line.contains(&url), "{line}");

    assert_eq!(
        server.cli_json(&["agent", "list"])["agents"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

/// A running agent re-attests when its SVID is due (SPIRE's re-attestable
/// node attestors), presenting the token as the kubelet last rotated it:
/// the cluster is asked again, the agent keeps its ID.
#[test]
fn a_running_agent_reattests_with_its_rotated_token() {
    let case = Prod::start("agent_svid_ttl = \"30s\"\n");
    let mut agent = Agent::start(&case.agent_config());
    let Prod {
        server,
        api,
        issuer,
        spec,
        token,
        agent_dir,
        rt,
        ..
    } = &case;
    let agent_id = format!("spiffe://example.org/herald/agent/k8s_psat/prod/{NODE_1}");
    let first = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    // A node alias names every agent of the cluster; a workload entry
    // under it reaches this one.
    harness::x509pop::create_alias(
        server,
        "spiffe://example.org/k8s/prod",
        &["k8s_psat:cluster:prod"],
    );
    server.create_entry(
        "spiffe://example.org/k8s/web",
        "spiffe://example.org/k8s/prod",
        &[],
    );
    rt.block_on(async {
        let svid = wait_for_svid(&client(&agent.socket).await).await;
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/k8s/web");
    });

    // The kubelet rotates the token; only the new one is admitted now, so
    // a re-attestation proves the agent read it.
    let rotated = TokenSpec {
        issued_at: spec.issued_at + 1,
        ..spec.clone()
    };
    let fresh = issuer.token(&rotated).unwrap();
    api.admit(&fresh, &rotated);
    api.revoke(token);
    std::fs::write(agent_dir.join("herald-agent"), &fresh).unwrap();
    let reviews = || {
        api.requests()
            .iter()
            .filter(|r| r.contains("tokenreviews"))
            .count()
    };
    let before = reviews();

    // Half of the 30 s SVID: the agent attests again with the new token.
    agent.proc.wait_for_line(
        "re-attested with k8s_psat (the agent SVID is due)",
        Duration::from_secs(45),
    );
    assert!(reviews() > before, "the cluster was not asked again");
    let again = server.cli_json(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_ne!(
        again["x509svid_serial_number"], first["x509svid_serial_number"],
        "{again}"
    );
}

use std::path::Path;

use super::*;
use crate::config::node_attestors::NodeAttestation;
use crate::config::{AgentConfig, ConfigFile as _, ServerConfig};

const SERVER: &str = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";
const AGENT: &str = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";
const TABLE: &str = "[node_attestors.k8s_psat.clusters.prod]\nservice_account_allow_list = [\"herald:herald-agent\"]\n";

fn server(extra: &str) -> Result<Option<PsatServerSettings>, String> {
    ServerConfig::parse(Path::new("server.toml"), &format!("{SERVER}{extra}"))
        .map(|c| c.k8s_psat)
        .map_err(|e| e.to_string())
}

fn cluster(keys: &str) -> Result<PsatCluster, String> {
    server(&format!("{TABLE}{keys}\n")).map(|s| s.unwrap().clusters["prod"].clone())
}

#[test]
fn token_review_with_in_cluster_defaults() {
    assert_eq!(server("").unwrap(), None);
    let c = cluster("kube_api_url = \"https://kubernetes.default.svc\"\nallowed_node_label_keys = [\"topology.kubernetes.io/zone\"]").unwrap();
    assert_eq!(c.audience, "herald-server");
    assert_eq!(c.service_account_allow_list, vec!["herald:herald-agent"]);
    assert_eq!(
        c.allowed_node_label_keys,
        vec!["topology.kubernetes.io/zone"]
    );
    let Verification::TokenReview(api) = c.verification else {
        panic!("{:?}", c.verification)
    };
    assert_eq!(api.url.as_str(), "https://kubernetes.default.svc/");
    assert_eq!(api.ca_path, Path::new(DEFAULT_KUBE_API_CA_PATH));
    assert_eq!(api.token_path, Path::new(DEFAULT_KUBE_API_TOKEN_PATH));
}

#[test]
fn offline_verification_by_file_or_url() {
    let c = cluster("jwks_path = \"/etc/herald/prod.jwks\"\nissuer = \"https://k8s.example\"\naudience = \"spire-server\"").unwrap();
    assert_eq!(
        c.verification,
        Verification::Jwks(JwksSource::File("/etc/herald/prod.jwks".into()))
    );
    assert_eq!(c.issuer.as_deref(), Some("https://k8s.example"));
    assert_eq!(c.audience, "spire-server");
    let c =
        cluster("jwks_url = \"https://oidc.example/openid/v1/jwks\"\njwks_ca_path = \"/ca.pem\"")
            .unwrap();
    assert!(matches!(
        c.verification,
        Verification::Jwks(JwksSource::Url {
            ca_path: Some(_),
            ..
        })
    ));
}

#[test]
fn bad_tables_are_refused_naming_the_cluster_and_key() {
    let api = "kube_api_url = \"https://k\"";
    for (keys, want) in [
        ("", "set kube_api_url"),
        (&format!("{api}\njwks_path = \"/j\"") as &str, "exactly one"),
        ("kube_api_url = \"http://k\"", "https://"),
        (
            "jwks_path = \"/j\"\nallowed_pod_label_keys = [\"app\"]",
            "need kube_api_url",
        ),
        (
            "jwks_path = \"/j\"\nkube_api_token_path = \"/t\"",
            "need kube_api_url",
        ),
        (
            "jwks_path = \"/j\"\njwks_ca_path = \"/c\"",
            "only with jwks_url",
        ),
        (&format!("{api}\naudience = \"\""), "audience"),
        (&format!("{api}\nnope = 1"), "unknown field"),
    ] {
        let err = cluster(keys).unwrap_err();
        assert!(err.contains(want), "{keys}: {want:?} not in {err}");
        assert!(want == "unknown field" || err.contains("\"prod\""), "{err}");
    }
    let bad_sa = "[node_attestors.k8s_psat.clusters.prod]\nservice_account_allow_list = [\"herald-agent\"]\nkube_api_url = \"https://k\"\n";
    assert!(server(bad_sa)
        .unwrap_err()
        .contains("\"herald-agent\" is not \"namespace:name\""));
    let bad_name = "[node_attestors.k8s_psat.clusters.\"a/b\"]\nservice_account_allow_list = [\"a:b\"]\nkube_api_url = \"https://k\"\n";
    assert!(server(bad_name).unwrap_err().contains("path segment"));
    assert!(server("[node_attestors.k8s_psat.clusters]\n")
        .unwrap_err()
        .contains("at least one cluster"));
}

#[test]
fn the_agent_table() {
    let agent = |extra: &str| {
        AgentConfig::parse(Path::new("agent.toml"), &format!("{AGENT}{extra}"))
            .map(|c| c.attestation)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        agent("[node_attestor.k8s_psat]\ncluster = \"prod\"\n").unwrap(),
        NodeAttestation::K8sPsat(PsatSource {
            cluster: "prod".into(),
            token_path: DEFAULT_TOKEN_PATH.into(),
        })
    );
    let err =
        agent("join_token = \"t\"\n[node_attestor.k8s_psat]\ncluster = \"prod\"\n").unwrap_err();
    assert!(err.contains("exactly one attestation method"), "{err}");
    let err = agent("[node_attestor.k8s_psat]\ncluster = \"\"\n").unwrap_err();
    assert!(err.contains("node_attestor.k8s_psat.cluster"), "{err}");
    let err = agent("[node_attestor.k8s_psat]\n").unwrap_err();
    assert!(err.contains("cluster"), "{err}");
}

//! The deployment files are checked by the tools their platforms use:
//!
//! - every manifest under `deploy/kubernetes/` validates strictly (unknown
//!   fields are errors) against Kubernetes' own OpenAPI schemas, as
//!   `kubernetes-validate` (PyPI) bundles them, for the oldest and newest
//!   versions we target; the tool is required (`.ci/run` installs it);
//! - the `server.toml` and `agent.toml` embedded in the ConfigMaps, and
//!   the HA files of `deploy/ha/`, pass Herald's own configuration checks;
//! - the systemd units in `deploy/` and `deploy/ha/` pass `systemd-analyze verify` (with the
//!   binary path pointed at the one cargo built), where systemd is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use herald::config::{AgentConfig, ConfigFile as _, ServerConfig};

/// The Kubernetes versions validated against: the oldest we support and
/// the newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.31.0", "1.37.0"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every `.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let files = yaml_files(&deploy().join("kubernetes"));
    assert!(files.len() >= 10, "manifests found: {files:?}");
    for version in KUBERNETES_VERSIONS {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap_or_else(|e| {
                panic!("kubernetes-validate is required (pip install kubernetes-validate): {e}")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
        // Every file was looked at, each of its documents with a schema.
        for f in &files {
            let needle = format!("{} passed for resource", f.display());
            assert!(
                text.contains(&needle),
                "{} not validated against {version}:\n{text}",
                f.display()
            );
        }
    }
}

/// The TOML text under `<key>: |` in a ConfigMap manifest.
fn embedded(manifest: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut lines = text.lines();
    let header = format!("{key}: |");
    let start = lines
        .by_ref()
        .find(|l| l.trim() == header)
        .unwrap_or_else(|| panic!("{}: no {header}", manifest.display()));
    let indent = start.len() - start.trim_start().len() + 2;
    let mut out = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

#[test]
fn the_config_maps_hold_valid_herald_configurations() {
    let k8s = deploy().join("kubernetes");
    let agent = k8s.join("21-agent-config.yaml");
    let config = AgentConfig::parse(&agent, &embedded(&agent, "agent.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let attestor = config.k8s.expect("the k8s attestor is on");
    assert_eq!(attestor.max_poll_attempts, 60);
    let server = k8s.join("11-server-config.yaml");
    ServerConfig::parse(&server, &embedded(&server, "server.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    store_url_env();
    let ha = k8s.join("ha/11-server-config.yaml");
    let config =
        ServerConfig::parse(&ha, &embedded(&ha, "server.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(config.store, herald::config::StoreConfig::Postgres(_)),
        "the HA variant uses the PostgreSQL store: {:?}",
        config.store
    );
}

/// The agents attest by k8s_psat: the token the DaemonSet projects is the
/// one agent.toml reads, with the audience and the cluster name the
/// server expects, and the server may review it.
#[test]
fn k8s_psat_is_configured_end_to_end() {
    use herald::config::node_attestors::NodeAttestation;
    let k8s = deploy().join("kubernetes");
    let agent = k8s.join("21-agent-config.yaml");
    let config = AgentConfig::parse(&agent, &embedded(&agent, "agent.toml")).unwrap();
    let NodeAttestation::K8sPsat(source) = config.attestation else {
        panic!("the agents attest by k8s_psat: {:?}", config.attestation)
    };
    let server = k8s.join("11-server-config.yaml");
    let config = ServerConfig::parse(&server, &embedded(&server, "server.toml")).unwrap();
    let clusters = config
        .k8s_psat
        .expect("the server attests k8s_psat agents")
        .clusters;
    let cluster = &clusters[&source.cluster];
    assert_eq!(cluster.audience, "herald-server");
    assert!(cluster
        .service_account_allow_list
        .contains(&"herald:herald-agent".to_string()));
    let daemonset = std::fs::read_to_string(k8s.join("22-agent-daemonset.yaml")).unwrap();
    let (dir, file) = source
        .token_path
        .to_str()
        .and_then(|p| p.rsplit_once('/'))
        .unwrap();
    for needle in [
        format!("mountPath: {dir}\n"),
        format!("path: {file}\n"),
        "audience: herald-server\n".to_string(),
        "serviceAccountName: herald-agent\n".into(),
    ] {
        assert!(
            daemonset.contains(&needle),
            "{needle:?} not in the DaemonSet"
        );
    }
    let rbac = std::fs::read_to_string(k8s.join("10-server-rbac.yaml")).unwrap();
    assert!(
        rbac.contains("resources: [\"tokenreviews\"]\n    verbs: [\"create\"]"),
        "{rbac}"
    );
}

/// The HA configurations read their store URL from the environment (the
/// herald-store Secret in the pod, EnvironmentFile= under systemd); the
/// server resolves it as it parses. Set once, before any test of this
/// file parses; no other test reads this variable.
fn store_url_env() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        std::env::set_var(
            "HERALD_STORE_URL",
            "postgres://herald@herald-postgres.herald.svc/herald",
        )
    });
}

#[test]
fn the_ha_files_hold_valid_herald_configurations() {
    store_url_env();
    let ha = deploy().join("ha");
    let mut data_dirs = Vec::new();
    for n in 1..=3 {
        let path = ha.join(format!("server-{n}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config = ServerConfig::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(config.store, herald::config::StoreConfig::Postgres(_)),
            "{}: {:?}",
            path.display(),
            config.store
        );
        assert_eq!(config.trust_domain.name(), "example.org");
        assert!(
            config.x509pop.is_some(),
            "{}: agent.toml attests by x509pop, so the server needs [node_attestors.x509pop]",
            path.display()
        );
        data_dirs.push(config.data_dir);
    }
    data_dirs.dedup();
    assert_eq!(data_dirs.len(), 3, "each server keeps its own keys");
    let path = ha.join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let agent = AgentConfig::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let servers: Vec<String> = agent
        .server_addresses
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        servers,
        [
            "herald-1.example.org:8081",
            "herald-2.example.org:8081",
            "herald-3.example.org:8081"
        ]
    );
    let rebootstrap = agent.rebootstrap.expect("[rebootstrap] is on");
    assert_eq!(rebootstrap.delay, std::time::Duration::from_secs(300));
}

#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: systemd-analyze is not installed; the units are not verified here (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    let all = std::fs::read_dir(deploy())
        .unwrap()
        .chain(std::fs::read_dir(deploy().join("ha")).unwrap());
    for entry in all {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            // `verify` checks that ExecStart's binary exists: point it at ours.
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/usr/local/bin/herald", env!("CARGO_BIN_EXE_herald"));
            let copy = dir.path().join(path.file_name().unwrap());
            std::fs::write(&copy, text).unwrap();
            units.push(copy);
        }
    }
    assert!(units.len() >= 4, "{units:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warnings to systemd: any word about our units fails.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(".service")).collect();
    assert!(ours.is_empty(), "{stderr}");
}

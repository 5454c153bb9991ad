//! The `[workload_attestors.k8s]` table of `agent.toml`: the Kubernetes
//! workload attestor, on when the table is present. The keys and defaults
//! are those of SPIRE's k8s workload attestor (`WorkloadAttestor "k8s"`),
//! so a SPIRE operator's settings carry over; `proc_root` is Herald's own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;
use crate::duration::parse_duration_millis;

/// The kubelet's HTTPS port.
pub const DEFAULT_KUBELET_SECURE_PORT: u16 = 10250;
/// The service account token a pod is given by default.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA a pod is given by default (it also signs kubelet serving
/// certificates in clusters with `serverTLSBootstrap`).
pub const DEFAULT_KUBELET_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The environment variable holding the node's name (set from the Downward
/// API's `spec.nodeName` in the agent's DaemonSet).
pub const DEFAULT_NODE_NAME_ENV: &str = "MY_NODE_NAME";
/// Pod list fetches before giving up on a pod or container the kubelet
/// does not report yet.
pub const DEFAULT_MAX_POLL_ATTEMPTS: u32 = 60;
/// The wait between two fetches.
pub const DEFAULT_POLL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// `[workload_attestors]` as written: one table per optional attestor
/// (the unix attestor always runs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkloadAttestors {
    k8s: Option<RawK8s>,
}

/// `[workload_attestors.k8s]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawK8s {
    kubelet_secure_port: Option<u32>,
    kubelet_read_only_port: Option<u32>,
    token_path: Option<PathBuf>,
    kubelet_ca_path: Option<PathBuf>,
    #[serde(default)]
    skip_kubelet_verification: bool,
    node_name: Option<String>,
    node_name_env: Option<String>,
    max_poll_attempts: Option<u32>,
    poll_retry_interval: Option<String>,
    #[serde(default)]
    disable_container_selectors: bool,
    proc_root: Option<PathBuf>,
}

/// How the kubelet's certificate is checked on its secure port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletVerification {
    /// Against the CA certificates of this PEM file, for the node's name.
    CaFile(PathBuf),
    /// Not at all (`skip_kubelet_verification = true`): anyone who can
    /// answer on the node's address can feed the agent pod metadata.
    Skip,
}

/// Which kubelet port the pod list is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletPort {
    /// `https://<node name>:<port>/pods` with the bearer token in `token_path`.
    Secure {
        /// `kubelet_secure_port`.
        port: u16,
        /// `token_path`: read on every fetch, as projected tokens rotate.
        token_path: PathBuf,
        /// `kubelet_ca_path` or `skip_kubelet_verification`.
        verification: KubeletVerification,
    },
    /// `http://127.0.0.1:<port>/pods`, unauthenticated (`kubelet_read_only_port`).
    ReadOnly(u16),
}

/// Where the node's name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeNameSource {
    /// `node_name`.
    Fixed(String),
    /// The environment variable `node_name_env` (default `MY_NODE_NAME`),
    /// read when the agent starts.
    Env(String),
}

/// The validated `[workload_attestors.k8s]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sSettings {
    /// The kubelet port and its authentication.
    pub kubelet: KubeletPort,
    /// The node's name, the kubelet's host name on the secure port.
    pub node_name: NodeNameSource,
    /// `max_poll_attempts`.
    pub max_poll_attempts: u32,
    /// `poll_retry_interval`.
    pub poll_retry_interval: Duration,
    /// `disable_container_selectors`: a pod found without the caller's
    /// container status yet still gets its pod selectors (none of
    /// `container-*`).
    pub disable_container_selectors: bool,
    /// `proc_root`: where callers' `<pid>/cgroup` files are read (`/proc`;
    /// another path when the host's process table is mounted elsewhere).
    /// Only the cgroup file: the unix attestor and its pid-reuse guard
    /// always read the agent's own `/proc`.
    pub proc_root: PathBuf,
}

/// The attestor tables; `None` where an attestor is off.
pub(super) fn k8s_settings(
    c: &Checker<'_>,
    raw: RawWorkloadAttestors,
) -> Result<Option<K8sSettings>, ConfigError> {
    let Some(raw) = raw.k8s else {
        return Ok(None);
    };
    let port = |key: &'static str, v: u32| {
        u16::try_from(v)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| c.invalid(key, format!("must be a TCP port (1 to 65535), got {v}")))
    };
    let kubelet = match (raw.kubelet_read_only_port, raw.kubelet_secure_port) {
        (Some(ro), Some(_)) if ro != 0 => {
            return Err(c.invalid(
                "workload_attestors.k8s.kubelet_read_only_port",
                "cannot be set together with kubelet_secure_port; choose one",
            ))
        }
        (Some(ro), _) if ro != 0 => {
            if raw.token_path.is_some()
                || raw.kubelet_ca_path.is_some()
                || raw.skip_kubelet_verification
            {
                return Err(c.invalid(
                    "workload_attestors.k8s.kubelet_read_only_port",
                    "the read-only port takes no token_path, kubelet_ca_path or skip_kubelet_verification",
                ));
            }
            KubeletPort::ReadOnly(port("workload_attestors.k8s.kubelet_read_only_port", ro)?)
        }
        (_, secure) => {
            let verification = match (raw.kubelet_ca_path, raw.skip_kubelet_verification) {
                (Some(_), true) => {
                    return Err(c.invalid(
                        "workload_attestors.k8s.skip_kubelet_verification",
                        "cannot be true when kubelet_ca_path is set; choose one",
                    ))
                }
                (_, true) => KubeletVerification::Skip,
                (ca, false) => KubeletVerification::CaFile(non_empty(
                    c,
                    "workload_attestors.k8s.kubelet_ca_path",
                    ca,
                    DEFAULT_KUBELET_CA_PATH,
                )?),
            };
            KubeletPort::Secure {
                port: match secure {
                    Some(p) => port("workload_attestors.k8s.kubelet_secure_port", p)?,
                    None => DEFAULT_KUBELET_SECURE_PORT,
                },
                token_path: non_empty(
                    c,
                    "workload_attestors.k8s.token_path",
                    raw.token_path,
                    DEFAULT_TOKEN_PATH,
                )?,
                verification,
            }
        }
    };
    let node_name = match (raw.node_name, raw.node_name_env) {
        (Some(n), _) if n.is_empty() => {
            return Err(c.invalid("workload_attestors.k8s.node_name", "must not be empty"))
        }
        (Some(n), _) => NodeNameSource::Fixed(n),
        (None, Some(e)) if e.is_empty() || e.contains('=') || e.contains('\0') => {
            return Err(c.invalid(
                "workload_attestors.k8s.node_name_env",
                "must be an environment variable name",
            ))
        }
        (None, env) => NodeNameSource::Env(env.unwrap_or_else(|| DEFAULT_NODE_NAME_ENV.into())),
    };
    let max_poll_attempts = match raw.max_poll_attempts {
        None => DEFAULT_MAX_POLL_ATTEMPTS,
        Some(n @ 1..=1000) => n,
        Some(n) => {
            return Err(c.invalid(
                "workload_attestors.k8s.max_poll_attempts",
                format!("must be between 1 and 1000, got {n}"),
            ))
        }
    };
    let poll_retry_interval = match raw.poll_retry_interval {
        None => DEFAULT_POLL_RETRY_INTERVAL,
        Some(text) => {
            let key = "workload_attestors.k8s.poll_retry_interval";
            let ms = parse_duration_millis(&text).map_err(|e| c.invalid(key, e))?;
            if !(10..=60_000).contains(&ms) {
                return Err(c.invalid(key, format!("must be 10ms to 60s, got {text:?}")));
            }
            Duration::from_millis(ms)
        }
    };
    Ok(Some(K8sSettings {
        kubelet,
        node_name,
        max_poll_attempts,
        poll_retry_interval,
        disable_container_selectors: raw.disable_container_selectors,
        proc_root: non_empty(
            c,
            "workload_attestors.k8s.proc_root",
            raw.proc_root,
            "/proc",
        )?,
    }))
}

/// `value` (not empty) or `default`.
fn non_empty(
    c: &Checker<'_>,
    key: &'static str,
    value: Option<PathBuf>,
    default: &str,
) -> Result<PathBuf, ConfigError> {
    match value {
        Some(p) => {
            c.non_empty_path(key, &p)?;
            Ok(p)
        }
        None => Ok(Path::new(default).to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{AgentConfig, ConfigFile as _};

    const BASE: &str = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";

    fn parse(table: &str) -> Result<Option<K8sSettings>, String> {
        AgentConfig::parse(Path::new("agent.toml"), &format!("{BASE}{table}"))
            .map(|c| c.k8s)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn off_without_the_table_and_spire_defaults_with_it() {
        assert_eq!(parse("").unwrap(), None);
        let d = parse("[workload_attestors.k8s]\n").unwrap().unwrap();
        assert_eq!(
            d.kubelet,
            KubeletPort::Secure {
                port: 10250,
                token_path: DEFAULT_TOKEN_PATH.into(),
                verification: KubeletVerification::CaFile(DEFAULT_KUBELET_CA_PATH.into()),
            }
        );
        assert_eq!(d.node_name, NodeNameSource::Env("MY_NODE_NAME".into()));
        assert_eq!(d.max_poll_attempts, 60);
        assert_eq!(d.poll_retry_interval, Duration::from_millis(500));
        assert!(!d.disable_container_selectors);
        assert_eq!(d.proc_root, Path::new("/proc"));
    }

    #[test]
    fn keys_are_read() {
        let s = parse(
            "[workload_attestors.k8s]\nkubelet_read_only_port = 10255\nnode_name = \"n1\"\n\
             max_poll_attempts = 3\npoll_retry_interval = \"50ms\"\nproc_root = \"/host/proc\"\n\
             disable_container_selectors = true\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.kubelet, KubeletPort::ReadOnly(10255));
        assert_eq!(s.node_name, NodeNameSource::Fixed("n1".into()));
        assert_eq!(s.max_poll_attempts, 3);
        assert_eq!(s.poll_retry_interval, Duration::from_millis(50));
        assert_eq!(s.proc_root, Path::new("/host/proc"));
        assert!(s.disable_container_selectors);
        let s = parse("[workload_attestors.k8s]\nskip_kubelet_verification = true\nkubelet_secure_port = 9\nkubelet_read_only_port = 0\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.kubelet,
            KubeletPort::Secure {
                port: 9,
                verification: KubeletVerification::Skip,
                ..
            }
        ));
    }

    /// deploy/agent.toml documents every key of the table; uncommented, it
    /// parses to the defaults (but the node name it shows).
    #[test]
    fn the_documented_table_parses() {
        let doc = include_str!("../../deploy/agent.toml");
        let after = doc.split("# [workload_attestors.k8s]").nth(1).unwrap();
        // The table's part ends where the next (commented) table begins.
        let table = after.split("\n# [").next().unwrap();
        let keys: String = table
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(keys.lines().count(), 11, "{keys}");
        let s = parse(&format!("[workload_attestors.k8s]\n{keys}"))
            .unwrap()
            .unwrap();
        let d = parse("[workload_attestors.k8s]\n").unwrap().unwrap();
        assert_eq!(s.node_name, NodeNameSource::Fixed("worker-1".into()));
        assert_eq!(
            K8sSettings {
                node_name: d.node_name.clone(),
                ..s
            },
            d
        );
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        for (table, key) in [
            ("kubelet_secure_port = 70000", "kubelet_secure_port"),
            (
                "kubelet_read_only_port = 10255\nkubelet_secure_port = 10250",
                "kubelet_read_only_port",
            ),
            (
                "kubelet_read_only_port = 10255\ntoken_path = \"/t\"",
                "kubelet_read_only_port",
            ),
            (
                "kubelet_ca_path = \"/ca\"\nskip_kubelet_verification = true",
                "skip_kubelet_verification",
            ),
            ("token_path = \"\"", "token_path"),
            ("node_name = \"\"", "node_name"),
            ("node_name_env = \"A=B\"", "node_name_env"),
            ("max_poll_attempts = 0", "max_poll_attempts"),
            ("poll_retry_interval = \"1ms\"", "poll_retry_interval"),
            ("poll_retry_interval = \"soon\"", "poll_retry_interval"),
            ("kubelet_port = 1", "unknown field"),
        ] {
            let err = parse(&format!("[workload_attestors.k8s]\n{table}\n")).unwrap_err();
            assert!(err.contains(key), "{table}: {err}");
        }
        let err = parse("[workload_attestors.docker]\n").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}

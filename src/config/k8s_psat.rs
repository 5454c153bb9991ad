//! The k8s_psat node attestor tables: `[node_attestors.k8s_psat]` in
//! server.toml (which clusters the server trusts, and how it has each
//! vouch for a token) and `[node_attestor.k8s_psat]` in agent.toml (the
//! cluster's name and the projected token). The keys follow SPIRE's
//! k8s_psat plugins where SPIRE has one (`clusters`,
//! `service_account_allow_list`, `audience`, `allowed_node_label_keys`,
//! `allowed_pod_label_keys`, the agent's `cluster` and `token_path`);
//! how the API server or the keys are reached is Herald's own.
//!
//! ```toml
//! [node_attestors.k8s_psat.clusters.prod]
//! service_account_allow_list = ["herald:herald-agent"]
//! kube_api_url = "https://kubernetes.default.svc"   # TokenReview, labels
//! # or, offline: jwks_path = "/etc/herald/prod-jwks.json" / jwks_url = "https://…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;
use crate::k8s_psat::{DEFAULT_AUDIENCE, DEFAULT_TOKEN_PATH};
use crate::node::k8s_psat::PsatSource;

/// The in-cluster CA every pod is given: the API server's.
pub const DEFAULT_KUBE_API_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The server pod's own service-account token, its credential for the API.
pub const DEFAULT_KUBE_API_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// `[node_attestors.k8s_psat]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerPsat {
    clusters: BTreeMap<String, RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    service_account_allow_list: Vec<String>,
    audience: Option<String>,
    kube_api_url: Option<String>,
    kube_api_ca_path: Option<PathBuf>,
    kube_api_token_path: Option<PathBuf>,
    jwks_path: Option<PathBuf>,
    jwks_url: Option<String>,
    jwks_ca_path: Option<PathBuf>,
    issuer: Option<String>,
    #[serde(default)]
    allowed_node_label_keys: Vec<String>,
    #[serde(default)]
    allowed_pod_label_keys: Vec<String>,
}

/// The API server of a cluster: TokenReview, pods and nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeApi {
    /// `kube_api_url`: `https://host[:port][/prefix]`.
    pub url: url::Url,
    /// `kube_api_ca_path`: PEM roots for the API server's certificate.
    pub ca_path: PathBuf,
    /// `kube_api_token_path`: the bearer token, read on every request.
    pub token_path: PathBuf,
}

/// Where a cluster's signing keys come from (offline verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `jwks_path`: a file, re-read when a token names an unknown key.
    File(PathBuf),
    /// `jwks_url`: fetched over HTTPS, again when a token names an unknown key.
    Url {
        /// The URL.
        url: url::Url,
        /// `jwks_ca_path`; the system roots when absent.
        ca_path: Option<PathBuf>,
    },
}

/// How a cluster vouches for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The TokenReview API (`kube_api_url`).
    TokenReview(KubeApi),
    /// The cluster's JWKS (`jwks_path` or `jwks_url`).
    Jwks(JwksSource),
}

/// One `[node_attestors.k8s_psat.clusters.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsatCluster {
    /// `service_account_allow_list`: `namespace:name` of the agents' service accounts.
    pub service_account_allow_list: Vec<String>,
    /// `audience` (default `herald-server`).
    pub audience: String,
    /// `issuer`: the tokens' `iss` must equal it, when set.
    pub issuer: Option<String>,
    /// TokenReview or JWKS.
    pub verification: Verification,
    /// `allowed_node_label_keys` (TokenReview only).
    pub allowed_node_label_keys: Vec<String>,
    /// `allowed_pod_label_keys` (TokenReview only).
    pub allowed_pod_label_keys: Vec<String>,
}

/// The server's k8s_psat attestor, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsatServerSettings {
    /// By cluster name (the agents' `cluster`, and the agent ID segment).
    pub clusters: BTreeMap<String, PsatCluster>,
}

const CLUSTERS: &str = "node_attestors.k8s_psat.clusters";

pub(super) fn server_k8s_psat(
    c: &Checker<'_>,
    raw: Option<RawServerPsat>,
) -> Result<Option<PsatServerSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.clusters.is_empty() {
        return Err(c.invalid(CLUSTERS, "name at least one cluster"));
    }
    let clusters = raw
        .clusters
        .into_iter()
        .map(|(name, cluster)| {
            let checked = cluster_settings(c, &name, cluster)?;
            Ok((name, checked))
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(Some(PsatServerSettings { clusters }))
}

fn cluster_settings(
    c: &Checker<'_>,
    name: &str,
    raw: RawCluster,
) -> Result<PsatCluster, ConfigError> {
    let bad = |reason: String| c.invalid(CLUSTERS, format!("cluster {name:?}: {reason}"));
    let segment = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
    if !segment {
        return Err(bad(
            "the name becomes an agent ID path segment: use letters, digits, '.', '-' and '_'"
                .into(),
        ));
    }
    if raw.service_account_allow_list.is_empty() {
        return Err(bad(
            "service_account_allow_list: name at least one \"namespace:name\"".into(),
        ));
    }
    for sa in &raw.service_account_allow_list {
        let ok = sa
            .split_once(':')
            .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'));
        if !ok {
            return Err(bad(format!(
                "service_account_allow_list: {sa:?} is not \"namespace:name\""
            )));
        }
    }
    let audience = raw.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.into());
    if audience.is_empty() {
        return Err(bad("audience: must not be empty".into()));
    }
    let https = |key: &str, value: &str| -> Result<url::Url, ConfigError> {
        let url = url::Url::parse(value)
            .map_err(|e| bad(format!("{key}: {value:?} is not a URL: {e}")))?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(bad(format!(
                "{key}: {value:?} must be an https:// URL with a host"
            )));
        }
        Ok(url)
    };
    let path = |key: &str, p: &Path| -> Result<(), ConfigError> {
        if p.as_os_str().is_empty() {
            return Err(bad(format!("{key}: must not be empty")));
        }
        Ok(())
    };
    let api_keys = raw.kube_api_ca_path.is_some() || raw.kube_api_token_path.is_some();
    let verification = match (raw.kube_api_url, raw.jwks_path, raw.jwks_url) {
        (Some(api), None, None) => {
            if raw.jwks_ca_path.is_some() {
                return Err(bad("jwks_ca_path: only with jwks_url".into()));
            }
            let ca_path = raw
                .kube_api_ca_path
                .unwrap_or_else(|| DEFAULT_KUBE_API_CA_PATH.into());
            let token_path = raw
                .kube_api_token_path
                .unwrap_or_else(|| DEFAULT_KUBE_API_TOKEN_PATH.into());
            path("kube_api_ca_path", &ca_path)?;
            path("kube_api_token_path", &token_path)?;
            Verification::TokenReview(KubeApi {
                url: https("kube_api_url", &api)?,
                ca_path,
                token_path,
            })
        }
        (None, Some(file), None) if !api_keys && raw.jwks_ca_path.is_none() => {
            path("jwks_path", &file)?;
            Verification::Jwks(JwksSource::File(file))
        }
        (None, None, Some(u)) if !api_keys => {
            if let Some(p) = &raw.jwks_ca_path {
                path("jwks_ca_path", p)?;
            }
            Verification::Jwks(JwksSource::Url {
                url: https("jwks_url", &u)?,
                ca_path: raw.jwks_ca_path,
            })
        }
        (None, None, None) => {
            return Err(bad(
                "set kube_api_url (the TokenReview API), or jwks_path or jwks_url (offline verification)".into(),
            ))
        }
        (None, Some(_), None) if raw.jwks_ca_path.is_some() => {
            return Err(bad("jwks_ca_path: only with jwks_url".into()))
        }
        (None, _, _) if api_keys => {
            return Err(bad(
                "kube_api_ca_path and kube_api_token_path need kube_api_url".into(),
            ))
        }
        _ => {
            return Err(bad(
                "set exactly one of kube_api_url, jwks_path and jwks_url".into(),
            ))
        }
    };
    let labels = !raw.allowed_node_label_keys.is_empty() || !raw.allowed_pod_label_keys.is_empty();
    if labels && !matches!(verification, Verification::TokenReview(_)) {
        return Err(bad(
            "allowed_node_label_keys and allowed_pod_label_keys need kube_api_url (labels are read from the API; tokens carry none)".into(),
        ));
    }
    if let Some(iss) = &raw.issuer {
        if iss.is_empty() {
            return Err(bad("issuer: must not be empty".into()));
        }
    }
    Ok(PsatCluster {
        service_account_allow_list: raw.service_account_allow_list,
        audience,
        issuer: raw.issuer,
        verification,
        allowed_node_label_keys: raw.allowed_node_label_keys,
        allowed_pod_label_keys: raw.allowed_pod_label_keys,
    })
}

/// `[node_attestor.k8s_psat]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgentPsat {
    cluster: String,
    token_path: Option<PathBuf>,
}

pub(super) fn agent_k8s_psat(
    c: &Checker<'_>,
    raw: RawAgentPsat,
) -> Result<PsatSource, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(c.invalid("node_attestor.k8s_psat.cluster", "must not be empty"));
    }
    let token_path = raw.token_path.unwrap_or_else(|| DEFAULT_TOKEN_PATH.into());
    c.non_empty_path("node_attestor.k8s_psat.token_path", &token_path)?;
    Ok(PsatSource {
        cluster: raw.cluster,
        token_path,
    })
}

#[cfg(test)]
#[path = "k8s_psat_tests.rs"]
mod tests;

//! `agent.toml`: one node's agent, how it first trusts its server, and where
//! it serves the Workload API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::k8s::{k8s_settings, K8sSettings, RawWorkloadAttestors};
use super::node_attestors::{agent_attestation, NodeAttestation, RawAgentAttestor};
use super::ops::{ops_config, OpsConfig, RawOps};
use super::sds::{sds_settings, RawSds, SdsSettings};
use super::servers::{
    rebootstrap_settings, server_targets, RawRebootstrap, RawServerAddress, RebootstrapSettings,
};
use super::{default_log_level, parse_toml, ConfigError, ConfigFile, LogFormat, Logging};
use crate::agent::attestor::DEFAULT_SHA256_MAX_FILE_SIZE;
use crate::agent::h2_authority::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_UID, DEFAULT_MAX_HEADER_LIST_SIZE,
};
use crate::agent::workload_api::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_MAX_CONCURRENT_STREAMS};
use crate::node::ServerTarget;
use crate::spiffe::TrustDomain;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    trust_domain: String,
    server_address: RawServerAddress,
    data_dir: PathBuf,
    socket_path: Option<PathBuf>,
    trust_bundle_path: Option<PathBuf>,
    #[serde(default)]
    insecure_bootstrap: bool,
    join_token: Option<String>,
    #[serde(default)]
    node_attestor: RawAgentAttestor,
    #[serde(default = "default_jwt_leeway")]
    jwt_svid_leeway: String,
    workload_api_max_header_list_size: Option<u64>,
    workload_api_max_connections_per_uid: Option<u64>,
    workload_api_max_concurrent_streams: Option<u64>,
    workload_api_keepalive_interval: Option<String>,
    workload_api_idle_timeout: Option<String>,
    unix_sha256_max_file_size: Option<u64>,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    sds: RawSds,
    #[serde(default)]
    workload_attestors: RawWorkloadAttestors,
    ops: Option<RawOps>,
    rebootstrap: Option<RawRebootstrap>,
}

/// The largest clock skew ValidateJWTSVID may be told to tolerate.
const MAX_JWT_LEEWAY_SECS: i64 = 600;

fn default_jwt_leeway() -> String {
    "30s".into()
}

/// The Workload API listener's limits, as configured (see
/// `crate::agent::workload_api::WorkloadApiLimits` for what each bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadApiSettings {
    /// `workload_api_max_header_list_size`: decoded bytes of one header block.
    pub max_header_list_size: usize,
    /// `workload_api_max_connections_per_uid`.
    pub max_connections_per_uid: usize,
    /// `workload_api_max_concurrent_streams`: per connection.
    pub max_concurrent_streams: u32,
    /// `workload_api_keepalive_interval`.
    pub keepalive_interval: Duration,
    /// `workload_api_idle_timeout`: a connection without a request in flight this long is closed.
    pub idle_timeout: Duration,
    /// `unix_sha256_max_file_size`: executables larger than this get no sha256 selector.
    pub sha256_max_file_size: u64,
}

impl Default for WorkloadApiSettings {
    fn default() -> Self {
        WorkloadApiSettings {
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            sha256_max_file_size: DEFAULT_SHA256_MAX_FILE_SIZE,
        }
    }
}

/// An integer key within `min..=max`, or `default` when absent.
fn bounded(
    c: &Checker<'_>,
    key: &'static str,
    value: Option<u64>,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(c.invalid(key, format!("must be between {min} and {max}, got {v}"))),
    }
}

/// A duration key of at least `min` seconds, or `default` when absent.
fn duration_or(
    c: &Checker<'_>,
    key: &'static str,
    value: Option<&str>,
    default: Duration,
    min: i64,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        // `duration` refuses anything below `min`, which is positive.
        Some(v) => Ok(Duration::from_secs(c.duration(key, v, min)?.unsigned_abs())),
    }
}

fn workload_api_settings(
    c: &Checker<'_>,
    raw: &RawAgent,
) -> Result<WorkloadApiSettings, ConfigError> {
    let d = WorkloadApiSettings::default();
    // The conversions below cannot fail: each bound fits the target type.
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(WorkloadApiSettings {
        // Below 4 KiB real clients' metadata no longer fits; above 1 MiB
        // the limit no longer protects anything.
        max_header_list_size: size(bounded(
            c,
            "workload_api_max_header_list_size",
            raw.workload_api_max_header_list_size,
            d.max_header_list_size as u64,
            (4096, 1 << 20),
        )?),
        max_connections_per_uid: size(bounded(
            c,
            "workload_api_max_connections_per_uid",
            raw.workload_api_max_connections_per_uid,
            d.max_connections_per_uid as u64,
            (1, 65_536),
        )?),
        max_concurrent_streams: u32::try_from(bounded(
            c,
            "workload_api_max_concurrent_streams",
            raw.workload_api_max_concurrent_streams,
            u64::from(d.max_concurrent_streams),
            (1, 10_000),
        )?)
        .unwrap_or(u32::MAX),
        keepalive_interval: duration_or(
            c,
            "workload_api_keepalive_interval",
            raw.workload_api_keepalive_interval.as_deref(),
            d.keepalive_interval,
            1,
        )?,
        idle_timeout: duration_or(
            c,
            "workload_api_idle_timeout",
            raw.workload_api_idle_timeout.as_deref(),
            d.idle_timeout,
            1,
        )?,
        // 0 turns sha256 selectors off.
        sha256_max_file_size: bounded(
            c,
            "unix_sha256_max_file_size",
            raw.unix_sha256_max_file_size,
            d.sha256_max_file_size,
            (0, u64::MAX),
        )?,
    })
}

/// How the agent first trusts its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A PEM file of the server's trust domain's root CAs.
    TrustBundle(PathBuf),
    /// Trust whatever server answers, for the first attestation only. For
    /// development; logged as a warning.
    Insecure,
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's trust domain.
    pub trust_domain: TrustDomain,
    /// `server_address`: the node API of every server of the trust
    /// domain, tried in this order (DNS names resolved at each attempt).
    pub server_addresses: Vec<ServerTarget>,
    /// Where the agent keeps its SVID, key and bundle.
    pub data_dir: PathBuf,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// How to trust the server before the first attestation.
    pub bootstrap: Bootstrap,
    /// How the agent attests when it has no usable SVID: `join_token`
    /// (single use), `[node_attestor.x509pop]` or `[node_attestor.k8s_psat]`.
    pub attestation: NodeAttestation,
    /// Clock skew ValidateJWTSVID tolerates on `nbf` and `iat`, seconds.
    pub jwt_svid_leeway: i64,
    /// The Workload API listener's limits.
    pub workload_api: WorkloadApiSettings,
    /// `log_level` and `log_format`.
    pub logging: Logging,
    /// The `[sds]` table: Envoy SDS resource names and validation contexts.
    pub sds: SdsSettings,
    /// The `[workload_attestors.k8s]` table: the Kubernetes workload
    /// attestor, `None` when off.
    pub k8s: Option<K8sSettings>,
    /// The operations listener (`[ops]`), off when absent.
    pub ops: Option<OpsConfig>,
    /// `[rebootstrap]`: where to get the roots again when the saved
    /// bundle validates no server any more; off when absent.
    pub rebootstrap: Option<RebootstrapSettings>,
}

impl ConfigFile for AgentConfig {
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let (raw, c) = parse_toml::<RawAgent>(path, text)?;
        let workload_api = workload_api_settings(&c, &raw)?;
        let bootstrap = match (raw.trust_bundle_path, raw.insecure_bootstrap) {
            (Some(_), true) => {
                return Err(c.invalid(
                    "insecure_bootstrap",
                    "cannot be true when trust_bundle_path is set; choose one",
                ))
            }
            (Some(p), false) => Bootstrap::TrustBundle(p),
            (None, true) => Bootstrap::Insecure,
            (None, false) => {
                return Err(c.invalid(
                    "trust_bundle_path",
                    "is required (or set insecure_bootstrap = true for development)",
                ))
            }
        };
        let jwt_svid_leeway = c.duration("jwt_svid_leeway", &raw.jwt_svid_leeway, 0)?;
        if jwt_svid_leeway > MAX_JWT_LEEWAY_SECS {
            return Err(c.invalid(
                "jwt_svid_leeway",
                format!("must be at most {MAX_JWT_LEEWAY_SECS}s: a larger skew would let tokens from the future through"),
            ));
        }
        let attestation = agent_attestation(&c, raw.join_token, raw.node_attestor)?;
        let data_dir = raw.data_dir;
        let socket_path = raw
            .socket_path
            .unwrap_or_else(|| crate::runtime_dir::default_workload_socket(&data_dir));
        Ok(AgentConfig {
            trust_domain: c.trust_domain("trust_domain", &raw.trust_domain)?,
            server_addresses: server_targets(&c, &raw.server_address)?,
            data_dir,
            socket_path,
            bootstrap,
            attestation,
            jwt_svid_leeway,
            workload_api,
            logging: c.logging(raw.log_level, raw.log_format)?,
            sds: sds_settings(&c, raw.sds)?,
            k8s: k8s_settings(&c, raw.workload_attestors)?,
            ops: ops_config(&c, raw.ops)?,
            rebootstrap: rebootstrap_settings(&c, raw.rebootstrap)?,
        })
    }
}

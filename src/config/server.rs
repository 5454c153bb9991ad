//! `server.toml`: the CA of one trust domain, its upstream authority and
//! its listeners. The `[federation]` table is validated by
//! [`super::federation`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::dashboard::{dashboard_config, DashboardConfig, RawDashboard};
use super::federation::FederationConfig;
use super::k8s_psat::{server_k8s_psat, PsatServerSettings};
use super::limits::ListenerLimits;
use super::node_attestors::{server_x509pop, RawServerAttestors, X509PopServerSettings};
use super::ops::{ops_config, OpsConfig, RawOps};
use super::store::StoreConfig;
use super::{default_log_level, parse_toml, ConfigError, ConfigFile, LogFormat, Logging};
use crate::ca::KeyType;
use crate::spiffe::TrustDomain;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    trust_domain: String,
    data_dir: PathBuf,
    #[serde(default = "default_bind")]
    bind_address: String,
    admin_socket: Option<PathBuf>,
    #[serde(default = "default_key_type")]
    ca_key_type: String,
    #[serde(default = "default_ca_ttl")]
    ca_ttl: String,
    #[serde(default = "default_x509_ttl")]
    default_x509_svid_ttl: String,
    #[serde(default = "default_jwt_ttl")]
    default_jwt_svid_ttl: String,
    #[serde(default = "default_x509_ttl")]
    agent_svid_ttl: String,
    #[serde(default = "default_activation_deadline")]
    ca_activation_deadline: String,
    #[serde(default = "default_upstream")]
    upstream_authority: String,
    upstream_cert_path: Option<PathBuf>,
    upstream_key_path: Option<PathBuf>,
    upstream_server_address: Option<String>,
    upstream_trust_bundle_path: Option<PathBuf>,
    upstream_join_token: Option<String>,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default)]
    log_format: LogFormat,
    /// The `[federation]` table, validated by `FederationConfig::from_toml`.
    federation: Option<toml::Value>,
    // --- issue 10: admin callers, downstream CAs, listener limits ---
    #[serde(default)]
    admin_allowed_uids: Vec<u32>,
    downstream_ca_max_ttl: Option<String>,
    #[serde(default)]
    downstream_ca_path_len: u8,
    /// The `[limits]` table, validated by `ListenerLimits::from_toml`.
    limits: Option<toml::Value>,
    #[serde(default = "default_prune_interval")]
    prune_interval: String,
    #[serde(default = "default_issuance_retention")]
    issuance_retention: String,
    jwt_issuer: Option<String>,
    ops: Option<RawOps>,
    /// The `[dashboard]` table.
    dashboard: Option<RawDashboard>,
    /// The `[audit]` table.
    audit: Option<RawAudit>,
    /// The `[store]` table, validated by `StoreConfig::from_toml`.
    store: Option<toml::Value>,
    /// The `[node_attestors]` table.
    #[serde(default)]
    node_attestors: RawServerAttestors,
}

/// `[audit]`: where the audit log goes (off without the table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: PathBuf,
}

fn default_prune_interval() -> String {
    "1m".into()
}
fn default_issuance_retention() -> String {
    "24h".into()
}

/// How the server removes what has expired from its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// Seconds between sweeps for expired entries, join tokens and
    /// issuance records (`prune_interval`, default 1m).
    pub interval: i64,
    /// Seconds an issuance record is kept after its certificate expired
    /// (`issuance_retention`, default 24h).
    pub issuance_retention: i64,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            interval: 60,
            issuance_retention: 86_400,
        }
    }
}

fn default_activation_deadline() -> String {
    "5m".into()
}
fn default_upstream() -> String {
    "self_signed".into()
}

/// Who signs the server's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamConfig {
    /// The CA is a self-signed root (the default).
    SelfSigned,
    /// The CA is an intermediate under a certificate and key read from files.
    Disk {
        /// PEM: the signing CA first, then its chain up to and including the root.
        cert_path: PathBuf,
        /// PEM PKCS#8 private key of the signing CA (0600).
        key_path: PathBuf,
    },
    /// The CA is an intermediate signed by another Herald server of the same
    /// trust domain (nested servers).
    Herald {
        /// The upstream server's node API.
        server_address: SocketAddr,
        /// PEM roots to trust the upstream with the first time.
        trust_bundle_path: PathBuf,
        /// Join token for the first attestation.
        join_token: Option<String>,
    },
}

fn default_bind() -> String {
    "127.0.0.1:8081".into()
}
fn default_key_type() -> String {
    "ec-p256".into()
}
fn default_ca_ttl() -> String {
    "24h".into()
}
fn default_x509_ttl() -> String {
    "1h".into()
}
fn default_jwt_ttl() -> String {
    "5m".into()
}

/// The deepest nesting `downstream_ca_path_len` may allow.
const MAX_DOWNSTREAM_PATH_LEN: u8 = 8;

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The trust domain this server is the CA of.
    pub trust_domain: TrustDomain,
    /// Where the store and keys live.
    pub data_dir: PathBuf,
    /// The node API's TCP address (port 0 picks a free port).
    pub bind_address: SocketAddr,
    /// The admin API's Unix socket (created 0600).
    pub admin_socket: PathBuf,
    /// Key type of CA and JWT keys.
    pub ca_key_type: KeyType,
    /// CA lifetime, seconds.
    pub ca_ttl: i64,
    /// Default X509-SVID lifetime, seconds.
    pub default_x509_svid_ttl: i64,
    /// Default JWT-SVID lifetime, seconds.
    pub default_jwt_svid_ttl: i64,
    /// Agent SVID lifetime, seconds.
    pub agent_svid_ttl: i64,
    /// How long past its due time activation of a prepared authority waits
    /// for lagging agents to acknowledge the bundle, seconds.
    pub ca_activation_deadline: i64,
    /// Who signs the CA.
    pub upstream: UpstreamConfig,
    /// `log_level` and `log_format`.
    pub logging: Logging,
    /// Bundle endpoint and federation relationships (`[federation]`).
    pub federation: FederationConfig,
    // --- issue 10: admin callers, downstream CAs, listener limits ---
    /// Uids besides root and the server's own that may use the admin socket.
    pub admin_allowed_uids: Vec<u32>,
    /// Longest lifetime of a downstream CA, seconds (default: `ca_ttl`).
    pub downstream_ca_max_ttl: i64,
    /// pathLenConstraint of downstream CAs: how many further CAs a
    /// downstream server may put below its own (0: none).
    pub downstream_ca_path_len: u8,
    /// Connection, stream and time limits of the listeners (`[limits]`).
    pub limits: ListenerLimits,
    /// Pruning of expired entries, join tokens and issuance records.
    pub prune: PruneConfig,
    /// The `iss` claim of every JWT-SVID (`jwt_issuer`, as SPIRE's): the
    /// issuer URL of the OIDC discovery document (`herald oidc --issuer`)
    /// that cloud relying parties check it against. None: no `iss`.
    pub jwt_issuer: Option<String>,
    /// The operations listener (`[ops]`), off when absent.
    pub ops: Option<OpsConfig>,
    /// Where the web dashboard is also served (`[dashboard]`), if anywhere.
    pub dashboard: Option<DashboardConfig>,
    /// The audit log's file (`[audit] path`), relative to the working
    /// directory like every path here; None: no audit log.
    pub audit_log: Option<PathBuf>,
    /// Where the server keeps its state (`[store]`; default: sled in
    /// `data_dir`).
    pub store: StoreConfig,
    /// The x509pop node attestor (`[node_attestors.x509pop]`), off when absent.
    pub x509pop: Option<X509PopServerSettings>,
    /// The k8s_psat node attestor (`[node_attestors.k8s_psat]`), off when absent.
    pub k8s_psat: Option<PsatServerSettings>,
}

impl ConfigFile for ServerConfig {
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let (raw, c) = parse_toml::<RawServer>(path, text)?;
        let ca_ttl = c.duration("ca_ttl", &raw.ca_ttl, 60)?;
        let x509 = c.duration("default_x509_svid_ttl", &raw.default_x509_svid_ttl, 1)?;
        if x509 > ca_ttl {
            return Err(c.invalid(
                "default_x509_svid_ttl",
                format!(
                    "{:?} is longer than ca_ttl {:?}",
                    raw.default_x509_svid_ttl, raw.ca_ttl
                ),
            ));
        }
        let ca_key_type = raw
            .ca_key_type
            .parse()
            .map_err(|e| c.invalid("ca_key_type", e))?;
        c.non_empty_path("data_dir", &raw.data_dir)?;
        let herald_keys = raw.upstream_server_address.is_some()
            || raw.upstream_trust_bundle_path.is_some()
            || raw.upstream_join_token.is_some();
        let only = |key: &'static str, kind: &str| {
            c.invalid(
                key,
                format!("is only used with upstream_authority = \"{kind}\""),
            )
        };
        let required = |key: &'static str, kind: &str| {
            c.invalid(
                key,
                format!("is required with upstream_authority = \"{kind}\""),
            )
        };
        let upstream = match raw.upstream_authority.as_str() {
            "herald" => {
                if raw.upstream_cert_path.is_some() || raw.upstream_key_path.is_some() {
                    return Err(only("upstream_cert_path", "disk"));
                }
                let addr = raw
                    .upstream_server_address
                    .ok_or_else(|| required("upstream_server_address", "herald"))?;
                UpstreamConfig::Herald {
                    server_address: c.address("upstream_server_address", &addr)?,
                    trust_bundle_path: raw
                        .upstream_trust_bundle_path
                        .ok_or_else(|| required("upstream_trust_bundle_path", "herald"))?,
                    join_token: raw.upstream_join_token,
                }
            }
            _ if herald_keys => return Err(only("upstream_server_address", "herald")),
            "self_signed" => match (raw.upstream_cert_path, raw.upstream_key_path) {
                (None, None) => UpstreamConfig::SelfSigned,
                _ => return Err(only("upstream_cert_path", "disk")),
            },
            "disk" => match (raw.upstream_cert_path, raw.upstream_key_path) {
                (Some(cert_path), Some(key_path)) => UpstreamConfig::Disk {
                    cert_path,
                    key_path,
                },
                (None, _) => return Err(required("upstream_cert_path", "disk")),
                (_, None) => return Err(required("upstream_key_path", "disk")),
            },
            other => {
                return Err(c.invalid(
                    "upstream_authority",
                    format!("{other:?} is not one of \"self_signed\", \"disk\", \"herald\""),
                ))
            }
        };
        let trust_domain = c.trust_domain("trust_domain", &raw.trust_domain)?;
        let federation = match &raw.federation {
            Some(table) => FederationConfig::from_toml(table, path, &trust_domain)?,
            None => Default::default(),
        };
        let downstream_ca_max_ttl = match &raw.downstream_ca_max_ttl {
            Some(v) => c.duration("downstream_ca_max_ttl", v, 60)?,
            None => ca_ttl,
        };
        if raw.downstream_ca_path_len > MAX_DOWNSTREAM_PATH_LEN {
            return Err(c.invalid(
                "downstream_ca_path_len",
                format!(
                    "must be at most {MAX_DOWNSTREAM_PATH_LEN}, got {}",
                    raw.downstream_ca_path_len
                ),
            ));
        }
        let limits = ListenerLimits::from_toml(raw.limits.as_ref(), path)?;
        let prune = PruneConfig {
            interval: c.duration("prune_interval", &raw.prune_interval, 1)?,
            issuance_retention: c.duration("issuance_retention", &raw.issuance_retention, 0)?,
        };
        let jwt_issuer = match raw.jwt_issuer {
            Some(v) => Some(c.url("jwt_issuer", &v)?),
            None => None,
        };
        let audit_log = match raw.audit {
            Some(audit) => {
                c.non_empty_path("audit.path", &audit.path)?;
                Some(audit.path)
            }
            None => None,
        };
        let store = StoreConfig::from_toml(raw.store.as_ref(), path)?;
        let mut node_attestors = raw.node_attestors;
        let k8s_psat = server_k8s_psat(&c, node_attestors.k8s_psat.take())?;
        let x509pop = server_x509pop(&c, node_attestors, &trust_domain)?;
        Ok(ServerConfig {
            x509pop,
            k8s_psat,
            ops: ops_config(&c, raw.ops)?,
            dashboard: dashboard_config(&c, raw.dashboard)?,
            audit_log,
            store,
            jwt_issuer,
            admin_allowed_uids: raw.admin_allowed_uids,
            downstream_ca_max_ttl,
            downstream_ca_path_len: raw.downstream_ca_path_len,
            limits,
            federation,
            prune,
            ca_activation_deadline: c.duration(
                "ca_activation_deadline",
                &raw.ca_activation_deadline,
                0,
            )?,
            upstream,
            trust_domain,
            bind_address: c.address("bind_address", &raw.bind_address)?,
            admin_socket: raw
                .admin_socket
                .unwrap_or_else(|| crate::runtime_dir::default_admin_socket(&raw.data_dir)),
            data_dir: raw.data_dir,
            ca_key_type,
            ca_ttl,
            default_x509_svid_ttl: x509,
            default_jwt_svid_ttl: c.duration(
                "default_jwt_svid_ttl",
                &raw.default_jwt_svid_ttl,
                1,
            )?,
            agent_svid_ttl: c.duration("agent_svid_ttl", &raw.agent_svid_ttl, 30)?,
            logging: c.logging(raw.log_level, raw.log_format)?,
        })
    }
}

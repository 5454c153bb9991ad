//! Server and agent configuration files (TOML), validated up front so that a
//! mistake is reported by key name before anything starts.
//!
//! Unknown keys are errors (a typo must not silently fall back to a
//! default). Durations are human strings ("1h", "5m", "30s").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ca::KeyType;
use crate::duration::parse_duration_secs;
use crate::spiffe::TrustDomain;

/// Why a configuration file was refused. Always names the file, and the key
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A key whose value is not acceptable.
    #[error("config file {path}: {key}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

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
fn default_log_level() -> String {
    "info".into()
}

/// The default admin socket of a server.
pub const DEFAULT_ADMIN_SOCKET: &str = "/tmp/herald-server/admin.sock";

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
    /// tracing filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Bundle endpoint and federation relationships (`[federation]`).
    pub federation: crate::server::federation::FederationConfig,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_toml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: &'static str, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key,
            reason: reason.to_string(),
        }
    }

    fn duration(&self, key: &'static str, value: &str, min: i64) -> Result<i64, ConfigError> {
        let secs = parse_duration_secs(value).map_err(|e| self.invalid(key, e))?;
        if secs < min {
            return Err(self.invalid(key, format!("must be at least {min}s, got {value:?}")));
        }
        Ok(secs)
    }

    fn address(&self, key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|e| self.invalid(key, format!("{value:?} is not an IP:port address: {e}")))
    }

    fn trust_domain(&self, value: &str) -> Result<TrustDomain, ConfigError> {
        TrustDomain::new(value).map_err(|e| self.invalid("trust_domain", e))
    }

    fn log_level(&self, value: &str) -> Result<String, ConfigError> {
        tracing_subscriber::EnvFilter::try_new(value).map_err(|e| self.invalid("log_level", e))?;
        Ok(value.to_string())
    }
}

impl ServerConfig {
    /// Reads and validates a server configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read(path)?)
    }

    /// Validates server configuration text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawServer = parse_toml(path, text)?;
        let c = Checker { path };
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
        if raw.data_dir.as_os_str().is_empty() {
            return Err(c.invalid("data_dir", "must not be empty"));
        }
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
        let trust_domain = c.trust_domain(&raw.trust_domain)?;
        let federation = match &raw.federation {
            Some(table) => {
                crate::server::federation::FederationConfig::from_toml(table, path, &trust_domain)?
            }
            None => Default::default(),
        };
        Ok(ServerConfig {
            federation,
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
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET)),
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
            log_level: c.log_level(&raw.log_level)?,
            log_format: raw.log_format,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    trust_domain: String,
    server_address: String,
    data_dir: PathBuf,
    #[serde(default = "default_workload_socket")]
    socket_path: PathBuf,
    trust_bundle_path: Option<PathBuf>,
    #[serde(default)]
    insecure_bootstrap: bool,
    join_token: Option<String>,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default)]
    log_format: LogFormat,
}

fn default_workload_socket() -> PathBuf {
    PathBuf::from(DEFAULT_WORKLOAD_SOCKET)
}

/// The default Workload API socket of an agent.
pub const DEFAULT_WORKLOAD_SOCKET: &str = "/tmp/herald-agent/public/api.sock";

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
    /// The server's node API address.
    pub server_address: SocketAddr,
    /// Where the agent keeps its SVID, key and bundle.
    pub data_dir: PathBuf,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// How to trust the server before the first attestation.
    pub bootstrap: Bootstrap,
    /// Single-use join token (needed only when the agent has no SVID yet).
    pub join_token: Option<String>,
    /// tracing filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
}

impl AgentConfig {
    /// Reads and validates an agent configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read(path)?)
    }

    /// Validates agent configuration text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawAgent = parse_toml(path, text)?;
        let c = Checker { path };
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
        if let Some(t) = &raw.join_token {
            if t.is_empty() {
                return Err(c.invalid("join_token", "must not be empty"));
            }
        }
        Ok(AgentConfig {
            trust_domain: c.trust_domain(&raw.trust_domain)?,
            server_address: c.address("server_address", &raw.server_address)?,
            data_dir: raw.data_dir,
            socket_path: raw.socket_path,
            bootstrap,
            join_token: raw.join_token,
            log_level: c.log_level(&raw.log_level)?,
            log_format: raw.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse(Path::new("server.toml"), text)
    }

    #[test]
    fn minimal_server_config_takes_defaults() {
        let c = server("trust_domain = \"example.org\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(c.ca_ttl, 86_400);
        assert_eq!(c.default_x509_svid_ttl, 3600);
        assert_eq!(c.default_jwt_svid_ttl, 300);
        assert_eq!(c.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
    }

    #[test]
    fn server_errors_name_the_key() {
        let cases = [
            ("trust_domain = \"Example.org\"\ndata_dir = \"/x\"", "trust_domain"),
            ("trust_domain = \"example.org\"\ndata_dir = \"/x\"\nca_ttl = \"1y\"", "ca_ttl"),
            ("trust_domain = \"example.org\"\ndata_dir = \"/x\"\nbind_address = \"nowhere\"", "bind_address"),
            ("trust_domain = \"example.org\"\ndata_dir = \"/x\"\nca_key_type = \"ed25519\"", "ca_key_type"),
            ("trust_domain = \"example.org\"\ndata_dir = \"/x\"\ndefault_x509_svid_ttl = \"48h\"", "default_x509_svid_ttl"),
            ("trust_domain = \"example.org\"\ndata_dir = \"/x\"\ncolour = \"blue\"", "colour"),
            ("trust_domain = \"example.org\"", "data_dir"),
            ("trust_domain = 5\ndata_dir = \"/x\"", "trust_domain"),
        ];
        for (text, key) in cases {
            let err = server(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
            assert!(err.contains("server.toml"), "{err}");
        }
    }

    #[test]
    fn shipped_example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        ServerConfig::load(&root.join("server.toml")).unwrap();
        AgentConfig::load(&root.join("agent.toml")).unwrap();
    }

    #[test]
    fn agent_bootstrap_is_explicit() {
        let base = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\n";
        let p = Path::new("agent.toml");
        let err = AgentConfig::parse(p, base).unwrap_err().to_string();
        assert!(err.contains("trust_bundle_path"), "{err}");
        let c = AgentConfig::parse(p, &format!("{base}insecure_bootstrap = true\n")).unwrap();
        assert_eq!(c.bootstrap, Bootstrap::Insecure);
        let both = format!("{base}insecure_bootstrap = true\ntrust_bundle_path = \"/b.pem\"\n");
        assert!(AgentConfig::parse(p, &both)
            .unwrap_err()
            .to_string()
            .contains("insecure_bootstrap"));
        let bad = format!("{base}insecure_bootstrap = true\nserver_address = \"x\"\n");
        assert!(AgentConfig::parse(p, &bad).is_err());
    }
}

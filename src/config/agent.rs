//! `agent.toml`: one node's agent, how it first trusts its server, and where
//! it serves the Workload API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{default_log_level, parse_toml, ConfigError, ConfigFile, LogFormat, Logging};
use crate::spiffe::TrustDomain;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    trust_domain: String,
    server_address: String,
    data_dir: PathBuf,
    socket_path: Option<PathBuf>,
    trust_bundle_path: Option<PathBuf>,
    #[serde(default)]
    insecure_bootstrap: bool,
    join_token: Option<String>,
    #[serde(default = "default_jwt_leeway")]
    jwt_svid_leeway: String,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default)]
    log_format: LogFormat,
}

/// The largest clock skew ValidateJWTSVID may be told to tolerate.
const MAX_JWT_LEEWAY_SECS: i64 = 600;

fn default_jwt_leeway() -> String {
    "30s".into()
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
    /// Clock skew ValidateJWTSVID tolerates on `nbf` and `iat`, seconds.
    pub jwt_svid_leeway: i64,
    /// `log_level` and `log_format`.
    pub logging: Logging,
}

impl ConfigFile for AgentConfig {
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let (raw, c) = parse_toml::<RawAgent>(path, text)?;
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
        if let Some(t) = &raw.join_token {
            if t.is_empty() {
                return Err(c.invalid("join_token", "must not be empty"));
            }
        }
        let data_dir = raw.data_dir;
        let socket_path = raw
            .socket_path
            .unwrap_or_else(|| crate::runtime_dir::default_workload_socket(&data_dir));
        Ok(AgentConfig {
            trust_domain: c.trust_domain("trust_domain", &raw.trust_domain)?,
            server_address: c.address("server_address", &raw.server_address)?,
            data_dir,
            socket_path,
            bootstrap,
            join_token: raw.join_token,
            jwt_svid_leeway,
            logging: c.logging(raw.log_level, raw.log_format)?,
        })
    }
}

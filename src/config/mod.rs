//! Configuration files (TOML), one module per role, validated up front so
//! that a mistake is reported by key name before anything starts.
//!
//! - [`server`] reads `server.toml` (the CA, its upstream, listeners).
//! - [`federation`] reads the `[federation]` table of `server.toml`, and
//!   [`store`] its `[store]` table (sled or PostgreSQL).
//! - [`agent`] reads `agent.toml`, the node agent's, [`servers`] its
//!   `server_address` list and `[rebootstrap]` table, [`sds`] its `[sds]`
//!   table (Envoy SDS names) and [`k8s`] its `[workload_attestors.k8s]`
//!   table (the Kubernetes workload attestor).
//! - [`ops`] reads the `[ops]` table both roles share (the operations
//!   listener's address).
//! - [`dashboard`] reads the `[dashboard]` table of `server.toml` (the
//!   web dashboard's Unix socket).
//! - [`helper`] reads `helper.toml`, what `herald helper` writes and reloads.
//! - `check` is the one checker every role's validation goes through, so
//!   every error names the file and the key the same way.
//!
//! Unknown keys are errors (a typo must not silently fall back to a
//! default). Durations are human strings ("1h", "5m", "30s").

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod agent;
mod check;
pub mod dashboard;
pub mod federation;
pub mod helper;
pub mod k8s;
pub mod k8s_psat;
pub mod limits;
pub mod node_attestors;
pub mod ops;
pub mod sds;
pub mod server;
pub mod servers;
pub mod store;

pub use agent::{AgentConfig, Bootstrap};
pub use ops::OpsConfig;
pub use sds::SdsSettings;
pub use server::{ServerConfig, UpstreamConfig};
pub use store::StoreConfig;

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

/// A configuration file of one role: validated from its text, or read from
/// its path first.
pub trait ConfigFile: Sized {
    /// Validates configuration text (`path` only names it in errors).
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError>;

    /// Reads and validates a configuration file.
    fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read(path)?)
    }
}

/// How a role logs: the same two keys (`log_level`, `log_format`) in every
/// role's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// The tracing filter (`info`, `debug`, or a directive).
    pub level: String,
    /// Lines for people or JSON for machines.
    pub format: LogFormat,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: default_log_level(),
            format: LogFormat::Text,
        }
    }
}

/// The log level every role defaults to.
fn default_log_level() -> String {
    "info".into()
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses TOML into a role's raw table, and gives the checker that names
/// this file in the errors of the validation that follows.
fn parse_toml<'p, T: for<'de> Deserialize<'de>>(
    path: &'p Path,
    text: &str,
) -> Result<(T, check::Checker<'p>), ConfigError> {
    let raw = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    Ok((raw, check::Checker { path }))
}

/// Deserializes the optional sub-table `[name]` of a role's file (absent:
/// every default); a syntax error names the table.
fn sub_table<T: for<'de> Deserialize<'de> + Default>(
    value: Option<&toml::Value>,
    path: &Path,
    name: &str,
) -> Result<T, ConfigError> {
    match value {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: format!("[{name}]: {}", e.to_string().trim().replace('\n', " ")),
            }),
        None => Ok(T::default()),
    }
}

#[cfg(test)]
mod tests;

//! Configuration files (TOML), one module per role, validated up front so
//! that a mistake is reported by key name before anything starts.
//!
//! - [`server`] reads `server.toml` (the CA, its upstream, listeners).
//! - [`federation`] reads the `[federation]` table of `server.toml`.
//! - [`agent`] reads `agent.toml`, the node agent's.
//! - `check` is the one checker every role's validation goes through, so
//!   every error names the file and the key the same way.
//!
//! Unknown keys are errors (a typo must not silently fall back to a
//! default). Durations are human strings ("1h", "5m", "30s").

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod agent;
mod check;
pub mod federation;
pub mod limits;
pub mod server;

pub use agent::{AgentConfig, Bootstrap, DEFAULT_WORKLOAD_SOCKET};
pub use server::{ServerConfig, UpstreamConfig, DEFAULT_ADMIN_SOCKET};

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

/// The log level every role defaults to.
fn default_log_level() -> String {
    "info".into()
}

pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn parse_toml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests;

//! The checker every role's validation goes through: it names the file and
//! the key of a bad value the same way everywhere.

use std::net::SocketAddr;
use std::path::Path;

use super::ConfigError;
use crate::duration::parse_duration_secs;
use crate::spiffe::TrustDomain;

/// Names the file (and, through its methods, the key) of a bad value.
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
}

impl Checker<'_> {
    pub(super) fn invalid(&self, key: &'static str, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key,
            reason: reason.to_string(),
        }
    }

    /// An error about the `index`th item of a list (`relationships[1]`).
    pub(super) fn item(
        &self,
        key: &'static str,
        list: &str,
        index: usize,
        reason: impl std::fmt::Display,
    ) -> ConfigError {
        self.invalid(key, format!("{list}[{index}]: {reason}"))
    }

    pub(super) fn duration(
        &self,
        key: &'static str,
        value: &str,
        min: i64,
    ) -> Result<i64, ConfigError> {
        let secs = parse_duration_secs(value).map_err(|e| self.invalid(key, e))?;
        if secs < min {
            return Err(self.invalid(key, format!("must be at least {min}s, got {value:?}")));
        }
        Ok(secs)
    }

    pub(super) fn address(
        &self,
        key: &'static str,
        value: &str,
    ) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|e| self.invalid(key, format!("{value:?} is not an IP:port address: {e}")))
    }

    pub(super) fn trust_domain(
        &self,
        key: &'static str,
        value: &str,
    ) -> Result<TrustDomain, ConfigError> {
        TrustDomain::new(value).map_err(|e| self.invalid(key, e))
    }

    pub(super) fn logging(
        &self,
        level: String,
        format: super::LogFormat,
    ) -> Result<super::Logging, ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| self.invalid("log_level", e))?;
        Ok(super::Logging { level, format })
    }

    /// A non-empty absolute URL, returned as written (an issuer is compared
    /// byte for byte by relying parties, so it is not normalised).
    pub(super) fn url(&self, key: &'static str, value: &str) -> Result<String, ConfigError> {
        url::Url::parse(value)
            .map_err(|e| self.invalid(key, format!("{value:?} is not an absolute URL: {e}")))?;
        Ok(value.to_string())
    }

    /// A path that must not be empty when given.
    pub(super) fn non_empty_path(&self, key: &'static str, p: &Path) -> Result<(), ConfigError> {
        if p.as_os_str().is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        Ok(())
    }
}

//! The `[ops]` table of `server.toml` and `agent.toml`: where the
//! operations HTTP listener (`/metrics`, `/live`, `/ready`) listens. The
//! listener is off when the table is absent.

use std::net::SocketAddr;

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;

/// `[ops]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    address: String,
}

/// The operations listener's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsConfig {
    /// `address`: IP:port (port 0 picks a free port). Not restricted to
    /// loopback: bind it where Prometheus can reach it. The server's web
    /// dashboard is served only on a loopback address.
    pub address: SocketAddr,
}

/// Validates `[ops]`, if present.
pub(super) fn ops_config(
    c: &Checker<'_>,
    raw: Option<RawOps>,
) -> Result<Option<OpsConfig>, ConfigError> {
    raw.map(|raw| {
        Ok(OpsConfig {
            address: c.address("ops.address", &raw.address)?,
        })
    })
    .transpose()
}

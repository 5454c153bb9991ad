//! The `[dashboard]` table of `server.toml`: where else than on a loopback
//! ops listener the web dashboard is served. `socket` is a Unix socket
//! (created 0600) on which the server's admin uids see the same pages,
//! JSON and events, for `ssh -L 8080:/path/dashboard.sock host`.

use std::path::PathBuf;

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;

/// `[dashboard]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDashboard {
    socket: PathBuf,
}

/// Where the dashboard is served besides the ops listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// `socket`: an absolute path, in an existing directory of the
    /// server's user that no one else may write to.
    pub socket: PathBuf,
}

/// Validates `[dashboard]`, if present.
pub(super) fn dashboard_config(
    c: &Checker<'_>,
    raw: Option<RawDashboard>,
) -> Result<Option<DashboardConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    c.non_empty_path("dashboard.socket", &raw.socket)?;
    if !raw.socket.is_absolute() {
        return Err(c.invalid(
            "dashboard.socket",
            format!("{:?} must be an absolute path", raw.socket),
        ));
    }
    if raw.socket.file_name().is_none() {
        return Err(c.invalid(
            "dashboard.socket",
            format!("{:?} does not name a socket file", raw.socket),
        ));
    }
    Ok(Some(DashboardConfig { socket: raw.socket }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigFile as _, ServerConfig};

    const BASE: &str = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";

    fn parse(extra: &str) -> Result<ServerConfig, crate::config::ConfigError> {
        ServerConfig::parse(Path::new("server.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn the_socket_is_off_unless_set_and_must_be_absolute() {
        assert_eq!(parse("").unwrap().dashboard, None);
        let on = parse("[dashboard]\nsocket = \"/run/herald/server/dashboard.sock\"\n").unwrap();
        assert_eq!(
            on.dashboard.unwrap().socket,
            Path::new("/run/herald/server/dashboard.sock")
        );
        for (bad, needle) in [
            (
                "socket = \"dashboard.sock\"",
                "dashboard.socket: \"dashboard.sock\" must be an absolute path",
            ),
            ("socket = \"\"", "dashboard.socket: must not be empty"),
            (
                "socket = \"/\"",
                "dashboard.socket: \"/\" does not name a socket file",
            ),
            ("socket = \"/x.sock\"\nport = 1", "port"),
            ("", "socket"),
        ] {
            let err = parse(&format!("[dashboard]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}

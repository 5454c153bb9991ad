//! The `[limits]` table of `server.toml`: how many connections and streams
//! each of the server's listeners accepts, when an idle or silent
//! connection is closed, and how much a federation peer's bundle may cost.
//! Every key is optional; the defaults suit a trust domain of a few
//! thousand agents, some of them behind one NAT address.
//!
//! Before a node API peer is authenticated it may only attest, so what an
//! anonymous connection may hold is far smaller than what an agent's may
//! (issue 10: unauthenticated peers buffered 1 GiB through unfinished
//! messages).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;

/// Keys a fetched foreign bundle may hold unless configured. Real bundles
/// hold a handful (SPIRE publishes 2 or 3 of each kind around a rotation);
/// a thousand leaves room for a trust domain with many upstream roots,
/// while a peer cannot make every agent hold and encode 100,000 (issue 18).
pub const DEFAULT_FEDERATION_MAX_BUNDLE_KEYS: usize = 1000;

/// How long one fetch of a foreign bundle may take, redirects included,
/// unless configured.
pub const DEFAULT_FEDERATION_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `federation_fetch_timeout` accepted.
const MAX_FEDERATION_FETCH_TIMEOUT_SECS: i64 = 300;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    node_max_connections_per_peer: Option<u32>,
    node_max_concurrent_streams: Option<u32>,
    node_anonymous_connections_per_peer: Option<u32>,
    node_anonymous_max_concurrent_streams: Option<u32>,
    node_anonymous_connection_lifetime: Option<String>,
    admin_max_connections_per_uid: Option<u32>,
    admin_max_concurrent_streams: Option<u32>,
    bundle_endpoint_max_connections_per_peer: Option<u32>,
    http2_keepalive_interval: Option<String>,
    http2_keepalive_timeout: Option<String>,
    idle_timeout: Option<String>,
    federation_max_bundle_keys: Option<u32>,
    federation_fetch_timeout: Option<String>,
}

/// Connection, stream and time limits of the server's listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Node API connections from one IP address, authenticated or not.
    pub node_max_connections_per_peer: usize,
    /// Concurrent streams on an agent's (mTLS) node API connection.
    pub node_max_concurrent_streams: u32,
    /// Node API connections without a client certificate from one IP.
    pub node_anonymous_connections_per_peer: usize,
    /// Concurrent streams on a connection without a client certificate.
    pub node_anonymous_max_concurrent_streams: u32,
    /// How long a connection without a client certificate may stay open
    /// (it only attests, which takes a round trip).
    pub node_anonymous_connection_lifetime: Duration,
    /// Admin socket connections of one caller uid.
    pub admin_max_connections_per_uid: usize,
    /// Concurrent streams on one admin connection.
    pub admin_max_concurrent_streams: u32,
    /// Bundle endpoint connections from one IP address.
    pub bundle_endpoint_max_connections_per_peer: usize,
    /// HTTP/2 PING interval on the node and admin APIs.
    pub http2_keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// A node or admin connection with no open stream for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// Elements of `keys` a fetched foreign bundle may hold (skipped ones
    /// included); a larger bundle is refused and the last good one kept.
    pub federation_max_bundle_keys: usize,
    /// One fetch of a foreign bundle, connection and redirects included.
    pub federation_fetch_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            node_max_connections_per_peer: 64,
            node_max_concurrent_streams: 100,
            node_anonymous_connections_per_peer: 8,
            node_anonymous_max_concurrent_streams: 4,
            node_anonymous_connection_lifetime: Duration::from_secs(30),
            admin_max_connections_per_uid: 16,
            admin_max_concurrent_streams: 64,
            bundle_endpoint_max_connections_per_peer: 16,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            federation_max_bundle_keys: DEFAULT_FEDERATION_MAX_BUNDLE_KEYS,
            federation_fetch_timeout: DEFAULT_FEDERATION_FETCH_TIMEOUT,
        }
    }
}

impl ListenerLimits {
    /// Validates the `[limits]` table (absent: every default).
    pub(super) fn from_toml(
        value: Option<&toml::Value>,
        path: &Path,
    ) -> Result<ListenerLimits, ConfigError> {
        let raw: RawLimits = super::sub_table(value, path, "limits")?;
        let c = Checker { path };
        let d = ListenerLimits::default();
        let count = |key: &'static str, v: Option<u32>, default: usize, max: u32| {
            positive(&c, key, v, max).map(|v| v.map_or(default, |v| v as usize))
        };
        let streams = |key: &'static str, v: Option<u32>, default: u32| {
            positive(&c, key, v, 10_000).map(|v| v.unwrap_or(default))
        };
        let secs = |key: &'static str, v: &Option<String>, default: Duration| match v {
            Some(v) => c
                .duration(key, v, 1)
                .map(|s| Duration::from_secs(s.unsigned_abs())),
            None => Ok(default),
        };
        Ok(ListenerLimits {
            node_max_connections_per_peer: count(
                "limits.node_max_connections_per_peer",
                raw.node_max_connections_per_peer,
                d.node_max_connections_per_peer,
                100_000,
            )?,
            node_max_concurrent_streams: streams(
                "limits.node_max_concurrent_streams",
                raw.node_max_concurrent_streams,
                d.node_max_concurrent_streams,
            )?,
            node_anonymous_connections_per_peer: count(
                "limits.node_anonymous_connections_per_peer",
                raw.node_anonymous_connections_per_peer,
                d.node_anonymous_connections_per_peer,
                10_000,
            )?,
            node_anonymous_max_concurrent_streams: streams(
                "limits.node_anonymous_max_concurrent_streams",
                raw.node_anonymous_max_concurrent_streams,
                d.node_anonymous_max_concurrent_streams,
            )?,
            node_anonymous_connection_lifetime: secs(
                "limits.node_anonymous_connection_lifetime",
                &raw.node_anonymous_connection_lifetime,
                d.node_anonymous_connection_lifetime,
            )?,
            admin_max_connections_per_uid: count(
                "limits.admin_max_connections_per_uid",
                raw.admin_max_connections_per_uid,
                d.admin_max_connections_per_uid,
                10_000,
            )?,
            admin_max_concurrent_streams: streams(
                "limits.admin_max_concurrent_streams",
                raw.admin_max_concurrent_streams,
                d.admin_max_concurrent_streams,
            )?,
            bundle_endpoint_max_connections_per_peer: count(
                "limits.bundle_endpoint_max_connections_per_peer",
                raw.bundle_endpoint_max_connections_per_peer,
                d.bundle_endpoint_max_connections_per_peer,
                10_000,
            )?,
            http2_keepalive_interval: secs(
                "limits.http2_keepalive_interval",
                &raw.http2_keepalive_interval,
                d.http2_keepalive_interval,
            )?,
            http2_keepalive_timeout: secs(
                "limits.http2_keepalive_timeout",
                &raw.http2_keepalive_timeout,
                d.http2_keepalive_timeout,
            )?,
            idle_timeout: secs("limits.idle_timeout", &raw.idle_timeout, d.idle_timeout)?,
            federation_max_bundle_keys: count(
                "limits.federation_max_bundle_keys",
                raw.federation_max_bundle_keys,
                d.federation_max_bundle_keys,
                1_000_000,
            )?,
            federation_fetch_timeout: match &raw.federation_fetch_timeout {
                Some(v) => {
                    let key = "limits.federation_fetch_timeout";
                    let s = c.duration(key, v, 1)?;
                    if s > MAX_FEDERATION_FETCH_TIMEOUT_SECS {
                        return Err(c.invalid(
                            key,
                            format!(
                                "must be at most {MAX_FEDERATION_FETCH_TIMEOUT_SECS}s, got {v:?}"
                            ),
                        ));
                    }
                    Duration::from_secs(s.unsigned_abs())
                }
                None => d.federation_fetch_timeout,
            },
        })
    }
}

/// A count that must lie in 1..=max when given.
fn positive(
    c: &Checker<'_>,
    key: &'static str,
    v: Option<u32>,
    max: u32,
) -> Result<Option<u32>, ConfigError> {
    match v {
        Some(n) if n == 0 || n > max => {
            Err(c.invalid(key, format!("must be between 1 and {max}, got {n}")))
        }
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ListenerLimits, ConfigError> {
        let value: toml::Value = toml::from_str(text).unwrap();
        ListenerLimits::from_toml(Some(&value), Path::new("server.toml"))
    }

    #[test]
    fn absent_keys_take_the_defaults() {
        assert_eq!(parse("").unwrap(), ListenerLimits::default());
        assert_eq!(
            ListenerLimits::from_toml(None, Path::new("x")).unwrap(),
            ListenerLimits::default()
        );
    }

    #[test]
    fn values_are_read() {
        let l = parse(
            "node_max_connections_per_peer = 3\nidle_timeout = \"1m\"\n\
             federation_max_bundle_keys = 20\nfederation_fetch_timeout = \"5s\"",
        )
        .unwrap();
        assert_eq!(l.node_max_connections_per_peer, 3);
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.federation_max_bundle_keys, 20);
        assert_eq!(l.federation_fetch_timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            (
                "node_max_concurrent_streams = 0",
                "limits.node_max_concurrent_streams",
            ),
            ("idle_timeout = \"soon\"", "limits.idle_timeout"),
            (
                "federation_max_bundle_keys = 0",
                "limits.federation_max_bundle_keys",
            ),
            (
                "federation_fetch_timeout = \"1h\"",
                "limits.federation_fetch_timeout: must be at most 300s",
            ),
            ("no_such_limit = 1", "no_such_limit"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}

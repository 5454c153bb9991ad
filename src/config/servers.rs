//! The agent's `server_address` (one address, or an array of them for
//! several servers of the trust domain) and its `[rebootstrap]` table
//! (where to get the trust domain's roots again when the saved bundle no
//! longer validates any server).

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;
use crate::node::ServerTarget;
use crate::spiffe::EndpointUrl;

/// `server_address` as written: a string or an array of strings.
#[derive(Debug)]
pub(super) struct RawServerAddress(Vec<String>);

impl<'de> Deserialize<'de> for RawServerAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = RawServerAddress;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a \"host:port\" string or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawServerAddress(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    all.push(v);
                }
                Ok(RawServerAddress(all))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// The addresses, validated.
pub(super) fn server_targets(
    c: &Checker<'_>,
    raw: &RawServerAddress,
) -> Result<Vec<ServerTarget>, ConfigError> {
    ServerTarget::parse_list(&raw.0).map_err(|(at, e)| match at {
        Some(i) if raw.0.len() > 1 => c.item("server_address", "server_address", i, e),
        _ => c.invalid("server_address", e),
    })
}

/// The `[rebootstrap]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRebootstrap {
    bundle_url: Option<String>,
    bundle_path: Option<PathBuf>,
    web_roots_path: Option<PathBuf>,
    delay: Option<String>,
}

/// Where the trust domain's roots are read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// A SPIFFE bundle endpoint (the server's federation bundle endpoint,
    /// or any HTTPS URL serving the trust domain's bundle), authenticated
    /// with Web PKI: the system's roots plus `web_roots_path`.
    Url {
        /// `bundle_url`.
        url: String,
        /// `web_roots_path`: more roots for its certificate (PEM).
        web_roots_path: Option<PathBuf>,
    },
    /// A file an operator or a configuration tool keeps current: PEM CA
    /// certificates, or a SPIFFE bundle (JSON). Read anew each time.
    File(PathBuf),
}

impl std::fmt::Display for BundleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleSource::Url { url, .. } => write!(f, "bundle_url {url}"),
            BundleSource::File(p) => write!(f, "bundle_path {}", p.display()),
        }
    }
}

/// The agent's `[rebootstrap]` settings: off when the table is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootstrapSettings {
    /// Where the roots come from.
    pub source: BundleSource,
    /// How long servers must keep failing validation against the saved
    /// bundle before the agent trusts the source instead.
    pub delay: Duration,
}

/// `[rebootstrap] delay` when absent: long enough that a server briefly
/// presenting a bad certificate does not make agents drop their trust.
pub const DEFAULT_REBOOTSTRAP_DELAY: Duration = Duration::from_secs(300);

/// Validates the `[rebootstrap]` table.
pub(super) fn rebootstrap_settings(
    c: &Checker<'_>,
    raw: Option<RawRebootstrap>,
) -> Result<Option<RebootstrapSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let source = match (raw.bundle_url, raw.bundle_path) {
        (Some(_), Some(_)) => {
            return Err(c.invalid(
                "rebootstrap.bundle_url",
                "cannot be combined with bundle_path; choose one",
            ))
        }
        (None, None) => {
            return Err(c.invalid(
                "rebootstrap",
                "set bundle_url (a bundle endpoint) or bundle_path (a file), or remove the table",
            ))
        }
        (Some(url), None) => {
            EndpointUrl::parse(&url).map_err(|e| c.invalid("rebootstrap.bundle_url", e))?;
            if let Some(p) = &raw.web_roots_path {
                c.non_empty_path("rebootstrap.web_roots_path", p)?;
            }
            BundleSource::Url {
                url,
                web_roots_path: raw.web_roots_path,
            }
        }
        (None, Some(path)) => {
            if raw.web_roots_path.is_some() {
                return Err(c.invalid("rebootstrap.web_roots_path", "applies to bundle_url only"));
            }
            c.non_empty_path("rebootstrap.bundle_path", &path)?;
            BundleSource::File(path)
        }
    };
    let delay = match raw.delay {
        None => DEFAULT_REBOOTSTRAP_DELAY,
        Some(d) => Duration::from_secs(c.duration("rebootstrap.delay", &d, 1)?.unsigned_abs()),
    };
    Ok(Some(RebootstrapSettings { source, delay }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{AgentConfig, ConfigFile as _};

    const BASE: &str =
        "trust_domain = \"example.org\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";

    fn parse(extra: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(Path::new("agent.toml"), &format!("{BASE}{extra}"))
            .map_err(|e| e.to_string())
    }

    fn addresses(extra: &str) -> Vec<String> {
        parse(extra)
            .unwrap()
            .server_addresses
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn server_address_is_a_string_or_an_array() {
        assert_eq!(
            addresses("server_address = \"127.0.0.1:8081\"\n"),
            ["127.0.0.1:8081"]
        );
        assert_eq!(
            addresses("server_address = \"herald.example.org:8081\"\n"),
            ["herald.example.org:8081"]
        );
        assert_eq!(
            addresses(
                "server_address = [\"10.0.0.1:8081\", \"[::1]:8081\", \"herald-2.example.org:443\"]\n"
            ),
            ["10.0.0.1:8081", "[::1]:8081", "herald-2.example.org:443"]
        );
    }

    #[test]
    fn bad_server_addresses_are_named() {
        let cases = [
            (
                "server_address = \"x\"\n",
                "server_address: \"x\" has no port",
            ),
            (
                "server_address = []\n",
                "server_address: must name at least one",
            ),
            (
                "server_address = [\"a:1\", \"b:0\"]\n",
                "server_address: server_address[1]: \"b:0\": the port",
            ),
            (
                "server_address = [\"a:1\", \"a:1\"]\n",
                "server_address[1]: a:1 is listed twice",
            ),
            (
                "server_address = [\"a:1\", \"::1:2\"]\n",
                "server_address[1]: \"::1:2\": put an IPv6 address in brackets",
            ),
            (
                "server_address = 8081\n",
                "a \"host:port\" string or an array",
            ),
            ("server_address = [8081]\n", "server_address"),
            ("", "server_address"),
        ];
        for (toml, needle) in cases {
            let err = parse(toml).unwrap_err();
            assert!(err.contains(needle), "{toml}: {err}");
            assert!(err.contains("agent.toml"), "{err}");
        }
    }

    #[test]
    fn rebootstrap_takes_one_source_and_a_delay() {
        let base = "server_address = \"127.0.0.1:1\"\n";
        assert_eq!(parse(base).unwrap().rebootstrap, None);
        let file = parse(&format!(
            "{base}[rebootstrap]\nbundle_path = \"/etc/herald/roots.pem\"\n"
        ))
        .unwrap()
        .rebootstrap
        .unwrap();
        assert_eq!(
            file.source,
            BundleSource::File("/etc/herald/roots.pem".into())
        );
        assert_eq!(file.delay, DEFAULT_REBOOTSTRAP_DELAY);
        let url = parse(&format!(
            "{base}[rebootstrap]\nbundle_url = \"https://herald.example.org:8443/\"\nweb_roots_path = \"/r.pem\"\ndelay = \"2s\"\n"
        ))
        .unwrap()
        .rebootstrap
        .unwrap();
        assert_eq!(
            url.source,
            BundleSource::Url {
                url: "https://herald.example.org:8443/".into(),
                web_roots_path: Some("/r.pem".into())
            }
        );
        assert_eq!(url.delay, Duration::from_secs(2));
        assert_eq!(
            url.source.to_string(),
            "bundle_url https://herald.example.org:8443/"
        );
    }

    #[test]
    fn bad_rebootstrap_tables_are_named() {
        let base = "server_address = \"127.0.0.1:1\"\n[rebootstrap]\n";
        let cases = [
            ("", "rebootstrap: set bundle_url"),
            (
                "bundle_url = \"https://a.org/\"\nbundle_path = \"/b\"\n",
                "rebootstrap.bundle_url: cannot be combined",
            ),
            (
                "bundle_url = \"http://a.org/\"\n",
                "rebootstrap.bundle_url: \"http://a.org/\" must use the https scheme",
            ),
            (
                "bundle_path = \"/b\"\nweb_roots_path = \"/r\"\n",
                "rebootstrap.web_roots_path: applies to bundle_url only",
            ),
            (
                "bundle_path = \"\"\n",
                "rebootstrap.bundle_path: must not be empty",
            ),
            (
                "bundle_path = \"/b\"\ndelay = \"0s\"\n",
                "rebootstrap.delay: must be at least 1s",
            ),
            (
                "bundle_path = \"/b\"\ndelay = \"soon\"\n",
                "rebootstrap.delay",
            ),
            ("bundle_path = \"/b\"\nwhen = 1\n", "unknown field `when`"),
        ];
        for (toml, needle) in cases {
            let err = parse(&format!("{base}{toml}")).unwrap_err();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }

    /// deploy/agent.toml documents the table; its keys, uncommented (one
    /// source at a time), parse to what it says.
    #[test]
    fn the_documented_table_parses() {
        let doc = include_str!("../../deploy/agent.toml");
        let table = doc.split("# [rebootstrap]").nth(1).unwrap();
        let keys: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let without = |skip: &[&str]| -> String {
            keys.iter()
                .filter(|k| !skip.iter().any(|s| k.starts_with(s)))
                .map(|k| format!("{k}\n"))
                .collect()
        };
        let base = "server_address = \"127.0.0.1:1\"\n[rebootstrap]\n";
        let url = parse(&format!("{base}{}", without(&["bundle_path"]))).unwrap();
        let url = url.rebootstrap.unwrap();
        assert!(matches!(
            url.source,
            BundleSource::Url {
                web_roots_path: Some(_),
                ..
            }
        ));
        assert_eq!(url.delay, DEFAULT_REBOOTSTRAP_DELAY);
        let file = parse(&format!(
            "{base}{}",
            without(&["bundle_url", "web_roots_path"])
        ))
        .unwrap();
        assert!(matches!(
            file.rebootstrap.unwrap().source,
            BundleSource::File(_)
        ));
    }
}

//! Where a node finds its servers: the addresses of `server_address`, each
//! an `IP:port` or a `host:port` whose DNS name is resolved at every
//! connection attempt (so a name with several records, or records that
//! change, reach every server behind it).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

/// The most addresses `server_address` may list.
pub const MAX_TARGETS: usize = 64;

/// One configured server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerTarget {
    /// An IP address and port, used as it is.
    Ip(SocketAddr),
    /// A DNS name and port; every record the name resolves to is a
    /// candidate, in the resolver's order.
    Dns {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Why an address of `server_address` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `:port` at the end.
    #[error("{0:?} has no port: write host:port or IP:port")]
    NoPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    BadPort(String),
    /// A URL instead of an address.
    #[error("{0:?} is a URL: write host:port")]
    Url(String),
    /// An IPv6 address without brackets.
    #[error("{0:?}: put an IPv6 address in brackets, as [::1]:8081")]
    BareIpv6(String),
    /// The host is not a DNS name.
    #[error("{value:?}: {host:?} is not a DNS name or IP address ({why})")]
    BadHost {
        /// The address as written.
        value: String,
        /// Its host part.
        host: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The list is empty.
    #[error("must name at least one server address")]
    Empty,
    /// Too many addresses.
    #[error("lists {0} addresses; at most {MAX_TARGETS} are allowed")]
    TooMany(usize),
    /// The same address twice.
    #[error("{0} is listed twice")]
    Duplicate(String),
}

impl ServerTarget {
    /// Parses `host:port`, `IPv4:port` or `[IPv6]:port`.
    pub fn parse(value: &str) -> Result<ServerTarget, TargetError> {
        if let Ok(addr) = value.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(TargetError::BadPort(value.into()));
            }
            return Ok(ServerTarget::Ip(addr));
        }
        if value.contains("://") {
            return Err(TargetError::Url(value.into()));
        }
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| TargetError::NoPort(value.into()))?;
        if host.contains(':') || host.starts_with('[') {
            return Err(TargetError::BareIpv6(value.into()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| TargetError::BadPort(value.into()))?;
        dns_name_check(host).map_err(|why| TargetError::BadHost {
            value: value.into(),
            host: host.into(),
            why,
        })?;
        Ok(ServerTarget::Dns {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Parses a whole list: non-empty, at most [`MAX_TARGETS`], no
    /// address twice. An error names the position of the bad one.
    pub fn parse_list(
        values: &[String],
    ) -> Result<Vec<ServerTarget>, (Option<usize>, TargetError)> {
        if values.is_empty() {
            return Err((None, TargetError::Empty));
        }
        if values.len() > MAX_TARGETS {
            return Err((None, TargetError::TooMany(values.len())));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let t = ServerTarget::parse(v).map_err(|e| (Some(i), e))?;
            if !seen.insert(t.clone()) {
                return Err((Some(i), TargetError::Duplicate(t.to_string())));
            }
            out.push(t);
        }
        Ok(out)
    }

    /// The socket addresses to try for this target now: itself, or what
    /// its name resolves to.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            ServerTarget::Ip(a) => Ok(vec![*a]),
            ServerTarget::Dns { host, port } => Ok(tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .collect()),
        }
    }
}

impl From<SocketAddr> for ServerTarget {
    fn from(a: SocketAddr) -> Self {
        ServerTarget::Ip(a)
    }
}

impl fmt::Display for ServerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerTarget::Ip(a) => write!(f, "{a}"),
            ServerTarget::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and
/// hyphens, 1 to 63 characters, not starting or ending with a hyphen; 253
/// characters at most (a trailing dot allowed).
fn dns_name_check(host: &str) -> Result<(), &'static str> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

/// The candidates of one connection round: every target resolved, in the
/// configured order, each address once. Names that do not resolve are
/// logged and skipped; they are returned beside the candidates.
pub async fn resolve_all(
    targets: &[ServerTarget],
) -> (Vec<SocketAddr>, Vec<(ServerTarget, std::io::Error)>) {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        match t.resolve().await {
            Ok(addrs) => {
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(server = %t, error = %e, "cannot resolve a server address");
                failed.push((t.clone(), e));
            }
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(host: &str, port: u16) -> ServerTarget {
        ServerTarget::Dns {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn ip_and_dns_forms_parse() {
        assert_eq!(
            ServerTarget::parse("10.0.0.1:8081").unwrap(),
            ServerTarget::Ip("10.0.0.1:8081".parse().unwrap())
        );
        assert_eq!(
            ServerTarget::parse("[::1]:8081").unwrap(),
            ServerTarget::Ip("[::1]:8081".parse().unwrap())
        );
        assert_eq!(
            ServerTarget::parse("Herald-Server.herald.svc:8081").unwrap(),
            dns("herald-server.herald.svc", 8081)
        );
        assert_eq!(
            ServerTarget::parse("localhost:1").unwrap(),
            dns("localhost", 1)
        );
        assert_eq!(
            ServerTarget::parse("herald.example.org.:443").unwrap(),
            dns("herald.example.org.", 443)
        );
        assert_eq!(dns("a.b", 2).to_string(), "a.b:2");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        type Check = fn(&TargetError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("herald", |e| matches!(e, TargetError::NoPort(_))),
            ("herald:", |e| matches!(e, TargetError::BadPort(_))),
            ("herald:0", |e| matches!(e, TargetError::BadPort(_))),
            ("10.0.0.1:0", |e| matches!(e, TargetError::BadPort(_))),
            ("herald:65536", |e| matches!(e, TargetError::BadPort(_))),
            ("herald:http", |e| matches!(e, TargetError::BadPort(_))),
            ("::1:8081", |e| matches!(e, TargetError::BareIpv6(_))),
            (":8081", |e| matches!(e, TargetError::BadHost { .. })),
            ("a_b:8081", |e| matches!(e, TargetError::BadHost { .. })),
            ("-a.org:8081", |e| matches!(e, TargetError::BadHost { .. })),
            ("a..org:8081", |e| matches!(e, TargetError::BadHost { .. })),
            ("https://a.org:8081", |e| matches!(e, TargetError::Url(_))),
        ];
        for (value, expected) in cases {
            let err = ServerTarget::parse(value).unwrap_err();
            assert!(expected(&err), "{value}: {err:?}");
            assert!(err.to_string().contains(value), "{value}: {err}");
        }
        let long = format!("{}.org:1", "a".repeat(64));
        assert!(matches!(
            ServerTarget::parse(&long),
            Err(TargetError::BadHost { .. })
        ));
    }

    #[test]
    fn lists_are_non_empty_bounded_and_without_repeats() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ServerTarget::parse_list(&list(&["10.0.0.1:1", "h:2"])).unwrap(),
            vec![ServerTarget::Ip("10.0.0.1:1".parse().unwrap()), dns("h", 2)]
        );
        assert_eq!(
            ServerTarget::parse_list(&[]).unwrap_err(),
            (None, TargetError::Empty)
        );
        let (at, err) = ServerTarget::parse_list(&list(&["h:1", "x", "h:2"])).unwrap_err();
        assert_eq!((at, err), (Some(1), TargetError::NoPort("x".into())));
        let (at, err) = ServerTarget::parse_list(&list(&["H:1", "h:1"])).unwrap_err();
        assert_eq!((at, err), (Some(1), TargetError::Duplicate("h:1".into())));
        let many: Vec<String> = (1..=65).map(|p| format!("h:{p}")).collect();
        assert_eq!(
            ServerTarget::parse_list(&many).unwrap_err(),
            (None, TargetError::TooMany(65))
        );
    }

    #[tokio::test]
    async fn names_resolve_to_every_record_once() {
        // Only `localhost` (from /etc/hosts): tests send no DNS query.
        let targets = vec![
            ServerTarget::parse("127.0.0.1:9").unwrap(),
            ServerTarget::parse("localhost:9").unwrap(),
        ];
        let (addrs, failed) = resolve_all(&targets).await;
        assert!(failed.is_empty());
        assert_eq!(addrs[0], "127.0.0.1:9".parse::<SocketAddr>().unwrap());
        // localhost's 127.0.0.1 is not repeated; its ::1, if any, follows.
        assert_eq!(addrs.iter().filter(|a| a.ip().is_ipv4()).count(), 1);
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }
}

//! Who may see the dashboard: people on the machine itself. It is served
//! only when the ops listener is bound to a loopback address, and every
//! request is checked again: its peer must be a loopback address, and its
//! `Host` header must name a loopback host, so that a web page elsewhere
//! cannot read it through a DNS name rebound to 127.0.0.1 in the browser
//! of someone on the machine. To look from another machine, forward the
//! port (`ssh -L 9464:127.0.0.1:9464 host`): nothing else opens it.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;

/// Why a request was refused (said in the 403 and the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The listener did not say who connected (never on the ops listener).
    #[error("the peer's address is unknown")]
    NoPeer,
    /// The peer is on another machine.
    #[error("the dashboard is served to loopback peers only, not {0}")]
    RemotePeer(IpAddr),
    /// The request names a host that is not this machine's loopback.
    #[error("the Host header must name a loopback address or localhost")]
    ForeignHost,
}

/// Whether a listener bound to `bound` may serve the dashboard.
pub(crate) fn listener_allows(bound: SocketAddr) -> bool {
    is_loopback(bound.ip())
}

/// Checks one request: from a loopback `peer`, for a loopback `host`.
pub(crate) fn check(peer: Option<SocketAddr>, host: Option<&HeaderValue>) -> Result<(), Refusal> {
    let peer = peer.ok_or(Refusal::NoPeer)?;
    if !is_loopback(peer.ip()) {
        return Err(Refusal::RemotePeer(peer.ip()));
    }
    let host = host
        .and_then(|h| h.to_str().ok())
        .ok_or(Refusal::ForeignHost)?;
    if loopback_host(host) {
        Ok(())
    } else {
        Err(Refusal::ForeignHost)
    }
}

/// 127.0.0.0/8 and ::1, also as an IPv4-mapped IPv6 address.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// `localhost`, `127.0.0.1`, `[::1]`, each with an optional port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || port(rest) => ip,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, rest)) if port(&format!(":{rest}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// `:` and digits.
fn port(rest: &str) -> bool {
    rest.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn host(s: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn a_non_loopback_peer_is_refused() {
        let h = host("127.0.0.1:9464");
        for remote in [
            "10.0.0.7:40000",
            "[2001:db8::1]:40000",
            "[::ffff:10.0.0.7]:1",
        ] {
            assert!(
                matches!(check(peer(remote), h.as_ref()), Err(Refusal::RemotePeer(_))),
                "{remote}"
            );
        }
        assert_eq!(check(None, h.as_ref()), Err(Refusal::NoPeer));
        for local in [
            "127.0.0.1:40000",
            "127.8.9.10:1",
            "[::1]:40000",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(check(peer(local), h.as_ref()), Ok(()), "{local}");
        }
    }

    #[test]
    fn only_loopback_host_names_pass() {
        let p = peer("127.0.0.1:40000");
        for good in [
            "127.0.0.1:9464",
            "127.0.0.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:9464",
            "[::1]",
        ] {
            assert_eq!(check(p, host(good).as_ref()), Ok(()), "{good}");
        }
        for bad in [
            "evil.example:9464",
            "evil.example",
            "10.0.0.1:9464",
            "localhost.evil.example",
            "127.0.0.1:x",
            "[::1]x",
            "[::1]:",
            "::1",
            "",
        ] {
            assert_eq!(
                check(p, host(bad).as_ref()),
                Err(Refusal::ForeignHost),
                "{bad}"
            );
        }
        assert_eq!(check(p, None), Err(Refusal::ForeignHost));
    }

    #[test]
    fn only_a_loopback_listener_serves_it() {
        assert!(listener_allows("127.0.0.1:0".parse().unwrap()));
        assert!(listener_allows("[::1]:9464".parse().unwrap()));
        assert!(!listener_allows("0.0.0.0:9464".parse().unwrap()));
        assert!(!listener_allows("[::]:9464".parse().unwrap()));
        assert!(!listener_allows("192.168.1.2:9464".parse().unwrap()));
    }
}

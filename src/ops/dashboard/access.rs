//! Who may see the dashboard: people on the machine itself. It is served
//! only when the ops listener is bound to a loopback address, and every
//! request is checked again: its peer must be a loopback address, and its
//! `Host` header must name a loopback host, so that a web page elsewhere
//! cannot read it through a DNS name rebound to 127.0.0.1 in the browser
//! of someone on the machine. To look from another machine, forward the
//! port (`ssh -L 9464:127.0.0.1:9464 host`).
//!
//! The one other way in is explicit: `[dashboard] socket` in
//! `server.toml`, a Unix socket on which every request's peer uid
//! (SO_PEERCRED) must be an admin uid, by the admin socket's rule
//! ([`Admins`]). No DNS name leads to a Unix socket, so the `Host` header
//! is not checked there.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderValue;

use crate::tls::https_server::Peer;

/// Which uids may see the dashboard on its Unix socket (the role decides:
/// the server's admin uids).
pub(crate) type Admins = Arc<dyn Fn(u32) -> bool + Send + Sync>;

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
    /// A Unix socket peer whose uid is not an admin's.
    #[error("uid {0} may not see the dashboard; allowed are root, the server's uid and admin_allowed_uids in server.toml")]
    NotAdmin(u32),
    /// A Unix socket peer where the dashboard has no admins to check
    /// against (never: the socket always has them).
    #[error("the dashboard is not served on Unix sockets here")]
    NoAdmins,
}

/// Checks one request from `peer`: a TCP peer by [`check`], a Unix socket
/// peer by its uid.
pub(crate) fn check_peer(
    peer: Option<Peer>,
    host: Option<&HeaderValue>,
    admins: Option<&Admins>,
) -> Result<(), Refusal> {
    match peer {
        None => Err(Refusal::NoPeer),
        Some(Peer::Tcp(addr)) => check(Some(addr), host),
        Some(Peer::Unix { uid }) => match admins {
            Some(admins) if admins(uid) => Ok(()),
            Some(_) => Err(Refusal::NotAdmin(uid)),
            None => Err(Refusal::NoAdmins),
        },
    }
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
    fn on_a_socket_only_admin_uids_pass_whatever_the_host() {
        let admins: Admins = Arc::new(|uid| uid == 0 || uid == 1000);
        let unix = |uid| Some(Peer::Unix { uid });
        let far = host("evil.example:8080");
        for uid in [0, 1000] {
            assert_eq!(check_peer(unix(uid), far.as_ref(), Some(&admins)), Ok(()));
            assert_eq!(check_peer(unix(uid), None, Some(&admins)), Ok(()));
        }
        assert_eq!(
            check_peer(unix(65534), host("localhost:8080").as_ref(), Some(&admins)),
            Err(Refusal::NotAdmin(65534))
        );
        // Without admins (the ops listener's dashboard) no socket peer passes.
        assert_eq!(check_peer(unix(0), None, None), Err(Refusal::NoAdmins));
        // TCP peers keep the loopback rules, admins or not.
        let tcp = Some(Peer::Tcp("127.0.0.1:1".parse().unwrap()));
        assert_eq!(
            check_peer(tcp, far.as_ref(), Some(&admins)),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(check_peer(tcp, host("localhost").as_ref(), None), Ok(()));
        assert_eq!(check_peer(None, None, Some(&admins)), Err(Refusal::NoPeer));
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

//! SVID lifetimes longer than the authority that signs them can live.
//!
//! An authority never signs past its own NotAfter (`ca/x509.rs` cuts an
//! X509-SVID's validity there), and an upstream-signed CA does not outlive
//! its upstream. An entry asking for more gets SVIDs shorter than it says,
//! all expiring at once with the authority: the outage the TTL was meant
//! to rule out.

use super::{human_secs, Finding, Inventory, Object, Severity};
use crate::proto::admin;

/// The SVID kinds, by their entry field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    X509,
    Jwt,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::X509 => "x509_svid_ttl",
            Kind::Jwt => "jwt_svid_ttl",
        }
    }

    fn authority(self) -> &'static str {
        match self {
            Kind::X509 => "x509",
            Kind::Jwt => "jwt",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Kind::X509 => "--x509-svid-ttl",
            Kind::Jwt => "--jwt-svid-ttl",
        }
    }
}

/// The shortest bound on an SVID's life, and what sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Limit {
    secs: i64,
    what: String,
}

/// Entries' TTLs, and the server's defaults, against every bound.
pub(super) fn check(inv: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    for kind in [Kind::X509, Kind::Jwt] {
        let limits = limits(inv, kind);
        let Some(shortest) = limits.iter().map(|l| l.secs).min() else {
            continue;
        };
        let a = &inv.authorities;
        let default = match kind {
            Kind::X509 => a.default_x509_svid_ttl,
            Kind::Jwt => a.default_jwt_svid_ttl,
        };
        if let Some(limit) = exceeded(&limits, default) {
            out.push(Finding {
                severity: Severity::Error,
                check: "svid_ttl",
                object: Object::Server {
                    trust_domain: inv.trust_domain.clone(),
                },
                message: format!(
                    "the default {} {} is longer than {}: every entry without its own TTL gets SVIDs cut short, all expiring with the authority",
                    kind.field(),
                    human_secs(default),
                    limit.what
                ),
                remedy: format!(
                    "lower default_{} in the server configuration to {} or less, or raise ca_ttl",
                    kind.field(),
                    human_secs(shortest)
                ),
            });
        }
        for e in &inv.entries {
            let ttl = i64::from(match kind {
                Kind::X509 => e.x509_svid_ttl,
                Kind::Jwt => e.jwt_svid_ttl,
            });
            if let Some(limit) = exceeded(&limits, ttl) {
                out.push(entry_finding(e, kind, ttl, limit, shortest));
            }
        }
    }
    out
}

/// The first bound `ttl` exceeds, in the order [`limits`] gives them.
fn exceeded(limits: &[Limit], ttl: i64) -> Option<&Limit> {
    limits.iter().find(|l| ttl > l.secs)
}

fn entry_finding(e: &admin::Entry, kind: Kind, ttl: i64, limit: &Limit, shortest: i64) -> Finding {
    Finding {
        severity: Severity::Error,
        check: "svid_ttl",
        object: Object::entry(e),
        message: format!(
            "its {} {} is longer than {}: its SVIDs are cut short and all expire with the authority",
            kind.field(),
            human_secs(ttl),
            limit.what
        ),
        remedy: format!(
            "lower the entry's {} to {} or less (herald entry update --entry-id {} {} ..., restating its other fields), or raise ca_ttl",
            kind.field(),
            human_secs(shortest),
            e.id,
            kind.flag()
        ),
    }
}

/// The bounds on an SVID of `kind`, the one most worth naming first:
/// ca_ttl (a TTL above it is cut short always), then (X.509) what the
/// upstream certificates have left, then what the active authority has
/// left (at most ca_ttl, shrinking until rotation replaces it).
fn limits(inv: &Inventory, kind: Kind) -> Vec<Limit> {
    let a = &inv.authorities;
    let mut limits = Vec::new();
    if a.ca_ttl > 0 {
        limits.push(Limit {
            secs: a.ca_ttl,
            what: format!("ca_ttl ({})", human_secs(a.ca_ttl)),
        });
    }
    if kind == Kind::X509 {
        for up in &a.upstream_certificates {
            let left = up.not_after - inv.now;
            limits.push(Limit {
                secs: left,
                what: format!(
                    "what upstream certificate {} has left ({})",
                    up.serial,
                    human_secs(left)
                ),
            });
        }
    }
    for auth in a
        .authorities
        .iter()
        .filter(|x| x.kind == kind.authority() && x.state == "active")
    {
        let left = auth.not_after - inv.now;
        limits.push(Limit {
            secs: left,
            what: format!(
                "what the active {} authority {} has left ({})",
                kind.authority(),
                auth.id,
                human_secs(left)
            ),
        });
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vet::testdata::{authority, entry, inventory, AGENT, DAY, HOUR, NOW};

    fn ttl_findings(inv: &Inventory) -> Vec<(Severity, Object, String)> {
        check(inv)
            .into_iter()
            .map(|f| (f.severity, f.object, f.message))
            .collect()
    }

    #[test]
    fn ttls_within_every_bound_are_fine() {
        let mut inv = inventory();
        let mut e = entry("a", "/web", AGENT, &["unix:uid:1"]);
        e.x509_svid_ttl = 30 * 86_400;
        e.jwt_svid_ttl = 3_600;
        inv.entries = vec![e];
        assert!(check(&inv).is_empty());
    }

    #[test]
    fn an_entry_ttl_above_ca_ttl_is_an_error_naming_ca_ttl() {
        let mut inv = inventory();
        inv.authorities.ca_ttl = 2 * HOUR;
        // Named first although the active authority has even less left.
        inv.authorities.authorities[0] = authority("x1", "x509", "active", NOW - HOUR, NOW + HOUR);
        let mut e = entry("a", "/web", AGENT, &["unix:uid:1"]);
        e.x509_svid_ttl = 3 * 3_600;
        inv.entries = vec![e];
        let f = ttl_findings(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, Severity::Error);
        assert!(matches!(&f[0].1, Object::Entry { id, .. } if id == "a"));
        assert!(f[0].2.contains("x509_svid_ttl 3h") && f[0].2.contains("ca_ttl (2h)"));
    }

    #[test]
    fn the_active_authoritys_remaining_life_bounds_jwt_ttls() {
        let mut inv = inventory();
        inv.authorities.authorities[1] = authority("j1", "jwt", "active", NOW - DAY, NOW + 600);
        let mut e = entry("a", "/web", AGENT, &["unix:uid:1"]);
        e.jwt_svid_ttl = 900;
        inv.entries = vec![e];
        let f = ttl_findings(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].2.contains("active jwt authority j1"), "{}", f[0].2);
    }

    #[test]
    fn the_upstream_bounds_x509_ttls_and_the_server_default() {
        let mut inv = inventory();
        inv.authorities
            .upstream_certificates
            .push(admin::UpstreamCertificate {
                serial: "0a".into(),
                not_before: NOW - DAY,
                not_after: NOW + 1_800,
                root: true,
            });
        let f = ttl_findings(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(matches!(&f[0].1, Object::Server { .. }));
        assert!(f[0].2.contains("upstream certificate 0a"), "{}", f[0].2);
    }
}

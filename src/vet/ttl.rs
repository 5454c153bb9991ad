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
        let Some(limit) = limit(inv, kind) else {
            continue;
        };
        let a = &inv.authorities;
        let default = match kind {
            Kind::X509 => a.default_x509_svid_ttl,
            Kind::Jwt => a.default_jwt_svid_ttl,
        };
        if default > limit.secs {
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
                    "lower default_{} in the server configuration below {}, or raise ca_ttl",
                    kind.field(),
                    human_secs(limit.secs)
                ),
            });
        }
        for e in &inv.entries {
            let ttl = i64::from(match kind {
                Kind::X509 => e.x509_svid_ttl,
                Kind::Jwt => e.jwt_svid_ttl,
            });
            if ttl > limit.secs {
                out.push(entry_finding(e, kind, ttl, &limit));
            }
        }
    }
    out
}

fn entry_finding(e: &admin::Entry, kind: Kind, ttl: i64, limit: &Limit) -> Finding {
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
            "herald entry update --id {} {} {}s (or less), or raise ca_ttl",
            e.id,
            kind.flag(),
            limit.secs
        ),
    }
}

/// The shortest of: ca_ttl, what the active authority of `kind` has left,
/// and (X.509) what the upstream certificates have left. None when the
/// server reported none of them.
fn limit(inv: &Inventory, kind: Kind) -> Option<Limit> {
    let a = &inv.authorities;
    let mut limits = Vec::new();
    if a.ca_ttl > 0 {
        limits.push(Limit {
            secs: a.ca_ttl,
            what: format!("ca_ttl ({})", human_secs(a.ca_ttl)),
        });
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
    limits.into_iter().min_by_key(|l| l.secs)
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

//! Federation that does not hold: entries federating with a trust domain
//! whose bundle the server lacks, and federated bundles the server has not
//! refreshed for longer than twice their refresh interval.
//!
//! The server polls each relationship's bundle endpoint every
//! `spiffe_refresh_hint` (SPIFFE.md §8.4; 5 minutes without a hint, within
//! the refresher's bounds). Past twice that without a success, a rotation
//! in the foreign trust domain would go unnoticed: its new SVIDs would be
//! refused here. The refresh times are the running server's (the admin
//! API's `refresh_status`); after a restart they start afresh.

use std::collections::HashSet;

use super::{human_secs, Finding, Inventory, Object, Severity};
use crate::proto::admin;
use crate::server::federation::RefresherSettings;

/// `federates_with` and federated bundle freshness.
pub(super) fn check(inv: &Inventory) -> Vec<Finding> {
    let mut out = unknown_federates_with(inv);
    for r in &inv.relationships {
        out.extend(stale(inv, r));
    }
    out
}

fn unknown_federates_with(inv: &Inventory) -> Vec<Finding> {
    let known: HashSet<&str> = inv
        .federated_bundles
        .iter()
        .map(|b| b.trust_domain.as_str())
        .collect();
    let mut out = Vec::new();
    for e in &inv.entries {
        for td in e
            .federates_with
            .iter()
            .filter(|td| !known.contains(td.as_str()))
        {
            out.push(Finding {
                severity: Severity::Error,
                check: "federates_with",
                object: Object::entry(e),
                message: format!(
                    "federates_with names {td}, but the server holds no bundle of {td}: its workloads get no roots to authenticate {td}'s SVIDs with"
                ),
                remedy: format!(
                    "herald federation create --trust-domain {td} ... (or herald bundle set --trust-domain {td}), or remove {td} from the entry"
                ),
            });
        }
    }
    out
}

/// The refresh hint of a stored bundle's JSON, if it has one.
fn refresh_hint(bundle: &admin::Bundle) -> Option<u64> {
    let json: serde_json::Value = serde_json::from_str(&bundle.spiffe_json).ok()?;
    json.get("spiffe_refresh_hint")?.as_u64()
}

fn stale(inv: &Inventory, r: &admin::FederationRelationship) -> Option<Finding> {
    let td = &r.trust_domain;
    let bundle = inv.federated_bundles.iter().find(|b| &b.trust_domain == td);
    let hint = bundle.and_then(refresh_hint);
    let interval = i64::try_from(RefresherSettings::default().interval(hint).as_secs()).ok()?;
    let status = r.refresh_status.clone().unwrap_or_default();
    let object = Object::TrustDomain { name: td.clone() };
    let why = if status.last_error.is_empty() {
        String::new()
    } else {
        format!("; the last attempt failed: {}", status.last_error)
    };
    let remedy = format!(
        "check that {} answers from this server (herald federation refresh --trust-domain {td} shows the error)",
        r.bundle_endpoint_url
    );
    if status.last_success_at > 0 {
        let age = inv.now - status.last_success_at;
        if age <= 2 * interval {
            return None;
        }
        return Some(Finding {
            severity: Severity::Warning,
            check: "federation_refresh",
            object,
            message: format!(
                "its bundle was last refreshed {} ago, more than twice its refresh interval ({}){why}: a key rotation there would go unnoticed and its new SVIDs be refused",
                human_secs(age),
                human_secs(interval)
            ),
            remedy,
        });
    }
    if status.consecutive_failures == 0 && bundle.is_some() {
        // Not attempted since the server started: nothing to judge yet.
        return None;
    }
    let held = match bundle {
        Some(_) => "the stored bundle may be outdated",
        None => "no bundle of it is stored, so no workload can authenticate it",
    };
    Some(Finding {
        severity: Severity::Warning,
        check: "federation_refresh",
        object,
        message: format!(
            "its bundle has not been refreshed since the server started ({} failed attempts){why}; {held}",
            status.consecutive_failures
        ),
        remedy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vet::testdata::{entry, inventory, AGENT, NOW};

    fn bundle(td: &str, hint: Option<u64>) -> admin::Bundle {
        let hint = hint.map_or(String::new(), |h| format!(",\"spiffe_refresh_hint\":{h}"));
        admin::Bundle {
            trust_domain: td.into(),
            spiffe_json: format!("{{\"keys\":[]{hint}}}"),
            sequence_number: 1,
        }
    }

    fn relationship(
        td: &str,
        status: admin::FederationRefreshStatus,
    ) -> admin::FederationRelationship {
        admin::FederationRelationship {
            trust_domain: td.into(),
            bundle_endpoint_url: format!("https://{td}/bundle"),
            refresh_status: Some(status),
            ..Default::default()
        }
    }

    fn success_at(t: i64) -> admin::FederationRefreshStatus {
        admin::FederationRefreshStatus {
            last_attempt_at: t,
            last_success_at: t,
            ..Default::default()
        }
    }

    #[test]
    fn federating_with_a_trust_domain_without_bundle_is_an_error() {
        let mut inv = inventory();
        inv.federated_bundles = vec![bundle("known.org", None)];
        let mut e = entry("a", "/web", AGENT, &["unix:uid:1"]);
        e.federates_with = vec!["known.org".into(), "gone.org".into()];
        inv.entries = vec![e];
        let f = check(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].severity, f[0].check),
            (Severity::Error, "federates_with")
        );
        assert!(f[0].message.contains("gone.org") && !f[0].message.contains("known.org"));
    }

    #[test]
    fn a_bundle_older_than_twice_its_hint_is_stale() {
        let mut inv = inventory();
        inv.federated_bundles = vec![bundle("a.org", Some(60)), bundle("b.org", Some(60))];
        inv.relationships = vec![
            relationship("a.org", success_at(NOW - 121)),
            relationship("b.org", success_at(NOW - 120)),
        ];
        let f = check(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(
            f[0].object,
            Object::TrustDomain {
                name: "a.org".into()
            }
        );
    }

    #[test]
    fn without_a_hint_the_default_interval_applies() {
        let mut inv = inventory();
        inv.federated_bundles = vec![bundle("a.org", None)];
        inv.relationships = vec![relationship("a.org", success_at(NOW - 599))];
        assert!(check(&inv).is_empty());
        inv.relationships = vec![relationship("a.org", success_at(NOW - 601))];
        assert_eq!(check(&inv).len(), 1);
    }

    #[test]
    fn failures_since_start_are_stale_and_say_why() {
        let mut inv = inventory();
        inv.relationships = vec![relationship(
            "a.org",
            admin::FederationRefreshStatus {
                last_attempt_at: NOW,
                last_error: "connection refused".into(),
                consecutive_failures: 3,
                ..Default::default()
            },
        )];
        let f = check(&inv);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("connection refused"));
        assert!(f[0].message.contains("no bundle"));
    }

    #[test]
    fn a_relationship_not_yet_attempted_with_a_bundle_is_fine() {
        let mut inv = inventory();
        inv.federated_bundles = vec![bundle("a.org", None)];
        inv.relationships = vec![relationship("a.org", Default::default())];
        assert!(check(&inv).is_empty());
    }
}

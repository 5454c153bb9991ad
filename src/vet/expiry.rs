//! Authorities and upstream certificates about to expire.
//!
//! When the signing authority expires, no SVID can be issued and every
//! workload loses its identity as its SVIDs run out. Herald rotates its
//! own authorities on a schedule (`server/rotation.rs`: prepare the
//! successor at half the life left, at most 30 days; activate it at a
//! sixth, at most 7 days), so an authority inside the horizon matters
//! when rotation will not replace it in time: no successor prepared past
//! the prepare time, or a successor still waiting past its activation
//! time. An upstream root is not Herald's to renew: inside the horizon it
//! is always reported; an upstream intermediate when the active CA
//! outlives it.

use super::{human_secs, Finding, Inventory, Object, Options, Severity};
use crate::proto::admin::{self, AuthorityInfo};
use crate::server::rotation::Window;

/// Every authority of both kinds and every upstream certificate.
pub(super) fn check(inv: &Inventory, opts: &Options) -> Vec<Finding> {
    let all = &inv.authorities.authorities;
    let mut out: Vec<Finding> = all.iter().filter_map(|a| authority(inv, opts, a)).collect();
    out.extend(
        inv.authorities
            .upstream_certificates
            .iter()
            .filter_map(|c| upstream(inv, opts, c)),
    );
    out
}

fn authority(inv: &Inventory, opts: &Options, a: &AuthorityInfo) -> Option<Finding> {
    let now = inv.now;
    let left = a.not_after - now;
    let within = left < opts.expiry_horizon;
    let window = Window {
        not_before: a.not_before,
        not_after: a.not_after,
    };
    let prepared = inv
        .authorities
        .authorities
        .iter()
        .find(|p| p.kind == a.kind && p.state == "prepared");
    let finding = |severity, message: String, remedy: &str| Finding {
        severity,
        check: "authority_expiry",
        object: Object::Authority {
            authority_kind: a.kind.clone(),
            id: a.id.clone(),
            state: a.state.clone(),
        },
        message,
        remedy: remedy.to_string(),
    };
    let prepare_now = format!("herald authority prepare --kind {0}, then herald authority activate --kind {0}; then find why rotation stalled in the server log", a.kind);
    match a.state.as_str() {
        "active" if left <= 0 => Some(finding(
            Severity::Error,
            format!("expired {} ago: nothing can be signed, and workloads lose their identities as their SVIDs run out", human_secs(-left)),
            &prepare_now,
        )),
        "active" => match prepared {
            None if now >= window.prepare_at() => Some(finding(
                if within { Severity::Error } else { Severity::Warning },
                format!(
                    "expires in {} and no successor is prepared, though rotation should have prepared one {} ago",
                    human_secs(left),
                    human_secs(now - window.prepare_at())
                ),
                &prepare_now,
            )),
            Some(p) if now >= window.activate_at() && within => Some(finding(
                Severity::Warning,
                format!(
                    "expires in {}; its successor {} is prepared, but its activation is {} overdue (waiting for agents to acknowledge the bundle)",
                    human_secs(left),
                    p.id,
                    human_secs(now - window.activate_at())
                ),
                "see the agents lagging behind the bundle (herald authority show); herald authority activate activates it now",
            )),
            _ if within => Some(finding(
                Severity::Info,
                format!(
                    "expires in {}; rotation replaces it on schedule (its successor is due to be active in {})",
                    human_secs(left),
                    human_secs(window.activate_at() - now)
                ),
                "nothing",
            )),
            _ => None,
        },
        "prepared" if within && window.not_after - window.not_before > opts.expiry_horizon => {
            Some(finding(
                Severity::Warning,
                format!("expires in {}, before it has served long as the active authority", human_secs(left)),
                "prepare a fresh one (herald authority prepare) if it was prepared long ago",
            ))
        }
        "old" if within && a.tainted => Some(finding(
            Severity::Info,
            format!("tainted, and leaves the bundle when it expires in {}", human_secs(left.max(0))),
            "herald authority revoke removes it now, once no agent depends on it",
        )),
        _ => None,
    }
}

fn upstream(inv: &Inventory, opts: &Options, c: &admin::UpstreamCertificate) -> Option<Finding> {
    let left = c.not_after - inv.now;
    // An intermediate that the active CA does not outlive is renewed with
    // it (a Herald upstream's own CA rotates on its schedule).
    let outlived = inv
        .authorities
        .authorities
        .iter()
        .any(|a| a.kind == "x509" && a.state == "active" && a.not_after > c.not_after);
    if left >= opts.expiry_horizon || (left > 0 && !c.root && !outlived) {
        return None;
    }
    let what = if c.root {
        "upstream root"
    } else {
        "upstream intermediate"
    };
    let message = if left <= 0 {
        format!(
            "the {what} expired {} ago: SVIDs chaining to it no longer verify",
            human_secs(-left)
        )
    } else {
        format!(
            "the {what} expires in {}: SVIDs chaining to it stop verifying then, and the server cannot sign a new CA under it",
            human_secs(left)
        )
    };
    Some(Finding {
        severity: if c.root || left <= 0 { Severity::Error } else { Severity::Warning },
        check: "upstream_expiry",
        object: Object::UpstreamCertificate {
            serial: c.serial.clone(),
        },
        message,
        remedy: "renew the upstream CA certificate (a disk upstream: replace its files and restart; a Herald upstream: check that server), then herald authority prepare".into(),
    })
}

#[cfg(test)]
#[path = "expiry_tests.rs"]
mod tests;

use super::*;
use crate::vet::testdata::{authority, inventory, DAY, HOUR, NOW, OPTS};

fn found(authorities: Vec<AuthorityInfo>) -> Vec<(Severity, String)> {
    let mut inv = inventory();
    inv.authorities.authorities = authorities;
    check(&inv, &OPTS)
        .into_iter()
        .map(|f| (f.severity, f.message))
        .collect()
}

#[test]
fn a_long_lived_active_authority_is_fine() {
    assert!(check(&inventory(), &OPTS).is_empty());
}

#[test]
fn an_expired_active_authority_is_an_error() {
    let f = found(vec![authority("x1", "x509", "active", NOW - DAY, NOW - 60)]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Severity::Error);
    assert!(f[0].1.contains("expired 1m ago"), "{}", f[0].1);
}

#[test]
fn an_active_authority_in_the_horizon_without_successor_is_an_error() {
    // A 60-day CA with 5 days left: the successor was due 25 days ago.
    let f = found(vec![authority(
        "x1",
        "x509",
        "active",
        NOW - 55 * DAY,
        NOW + 5 * DAY,
    )]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Severity::Error);
    assert!(f[0].1.contains("no successor is prepared"), "{}", f[0].1);
}

#[test]
fn a_stalled_rotation_outside_the_horizon_is_a_warning() {
    let f = found(vec![authority(
        "j1",
        "jwt",
        "active",
        NOW - 200 * DAY,
        NOW + 20 * DAY,
    )]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Severity::Warning);
}

#[test]
fn a_short_lived_authority_rotating_on_schedule_is_only_info() {
    // ca_ttl 24h: every authority is inside a 7-day horizon by design.
    let f = found(vec![authority(
        "x1",
        "x509",
        "active",
        NOW - HOUR,
        NOW + 23 * HOUR,
    )]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Severity::Info);
    let f = found(vec![
        authority("x1", "x509", "active", NOW - 13 * HOUR, NOW + 11 * HOUR),
        authority("x2", "x509", "prepared", NOW - HOUR, NOW + 23 * HOUR),
        authority("x0", "x509", "old", NOW - 25 * HOUR, NOW + 2 * HOUR),
    ]);
    assert!(f.iter().all(|(s, _)| *s == Severity::Info), "{f:?}");
}

#[test]
fn an_overdue_activation_is_a_warning() {
    let f = found(vec![
        authority("x1", "x509", "active", NOW - 22 * HOUR, NOW + 2 * HOUR),
        authority("x2", "x509", "prepared", NOW - 10 * HOUR, NOW + 14 * HOUR),
    ]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Severity::Warning);
    assert!(
        f[0].1.contains("x2") && f[0].1.contains("overdue"),
        "{}",
        f[0].1
    );
}

#[test]
fn a_tainted_old_authority_in_the_horizon_is_info() {
    let mut old = authority("x0", "x509", "old", NOW - 30 * DAY, NOW + DAY);
    old.tainted = true;
    let mut inv = inventory();
    inv.authorities.authorities.push(old);
    let f = check(&inv, &OPTS);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Severity::Info);
}

fn upstream_cert(root: bool, not_after: i64) -> admin::UpstreamCertificate {
    admin::UpstreamCertificate {
        serial: "0b".into(),
        not_before: NOW - DAY,
        not_after,
        root,
    }
}

#[test]
fn an_upstream_root_in_the_horizon_is_an_error() {
    let mut inv = inventory();
    inv.authorities.upstream_certificates = vec![upstream_cert(true, NOW + 3 * DAY)];
    let f = check(&inv, &OPTS);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].severity, f[0].check),
        (Severity::Error, "upstream_expiry")
    );
    inv.authorities.upstream_certificates = vec![upstream_cert(true, NOW + 30 * DAY)];
    assert!(check(&inv, &OPTS).is_empty());
}

#[test]
fn an_upstream_intermediate_matters_when_the_ca_outlives_it() {
    let mut inv = inventory();
    // The active CA (a year left) outlives it: a warning.
    inv.authorities.upstream_certificates = vec![upstream_cert(false, NOW + 3 * DAY)];
    assert_eq!(check(&inv, &OPTS)[0].severity, Severity::Warning);
    // A CA cut at the intermediate's end is renewed with it.
    inv.authorities.authorities =
        vec![authority("x1", "x509", "active", NOW - HOUR, NOW + 3 * DAY)];
    let f = check(&inv, &OPTS);
    assert!(f.iter().all(|f| f.check != "upstream_expiry"), "{f:?}");
    // Expired is an error whatever it is.
    inv.authorities.upstream_certificates = vec![upstream_cert(false, NOW - 1)];
    assert!(check(&inv, &OPTS)
        .iter()
        .any(|f| f.check == "upstream_expiry" && f.severity == Severity::Error));
}

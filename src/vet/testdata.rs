//! Inventories for the checks' tests: a healthy server of example.org at
//! a fixed time, and builders for the records the tests change.

use super::{Inventory, Options};
use crate::proto::admin;

/// The time of every test inventory.
pub(crate) const NOW: i64 = 1_800_000_000;
/// An hour and a day, in seconds.
pub(crate) const HOUR: i64 = 3_600;
pub(crate) const DAY: i64 = 86_400;
/// The one attested agent of [`inventory`].
pub(crate) const AGENT: &str = "spiffe://example.org/herald/agent/join_token/a";
/// A seven-day horizon; agents stale after a day.
pub(crate) const OPTS: Options = Options {
    expiry_horizon: 7 * DAY,
    stale_agent_after: DAY,
};

/// A healthy server: one connected agent that acknowledged bundle 3, an
/// active X.509 and JWT authority with a year left (ca_ttl two years), no
/// entries.
pub(crate) fn inventory() -> Inventory {
    Inventory {
        trust_domain: "example.org".into(),
        entries: Vec::new(),
        agents: vec![agent(AGENT)],
        federated_bundles: Vec::new(),
        relationships: Vec::new(),
        authorities: admin::ShowAuthoritiesResponse {
            authorities: vec![
                authority("x1", "x509", "active", NOW - DAY, NOW + 365 * DAY),
                authority("j1", "jwt", "active", NOW - DAY, NOW + 365 * DAY),
            ],
            bundle_sequence: 3,
            lagging_agents: Vec::new(),
            ca_ttl: 2 * 365 * DAY,
            default_x509_svid_ttl: HOUR,
            default_jwt_svid_ttl: 300,
            upstream_certificates: Vec::new(),
        },
        now: NOW,
    }
}

/// An entry `id` for `spiffe://example.org<path>` under `parent`, with
/// `type:value` selectors.
pub(crate) fn entry(id: &str, path: &str, parent: &str, selectors: &[&str]) -> admin::Entry {
    admin::Entry {
        id: id.into(),
        spiffe_id: format!("spiffe://example.org{path}"),
        parent_id: parent.into(),
        selectors: selectors
            .iter()
            .map(|s| {
                let (t, v) = s.split_once(':').unwrap();
                admin::Selector {
                    r#type: t.into(),
                    value: v.into(),
                }
            })
            .collect(),
        ..Default::default()
    }
}

/// A connected agent that acknowledged bundle 3 and was seen now.
pub(crate) fn agent(id: &str) -> admin::Agent {
    admin::Agent {
        id: id.into(),
        attestation_type: "join_token".into(),
        x509svid_expires_at: NOW + HOUR,
        connected: true,
        acked_bundle_sequence: 3,
        last_seen_at: NOW,
        ..Default::default()
    }
}

/// An authority record.
pub(crate) fn authority(
    id: &str,
    kind: &str,
    state: &str,
    not_before: i64,
    not_after: i64,
) -> admin::AuthorityInfo {
    admin::AuthorityInfo {
        id: id.into(),
        kind: kind.into(),
        state: state.into(),
        not_before,
        not_after,
        ..Default::default()
    }
}

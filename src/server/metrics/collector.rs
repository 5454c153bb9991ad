//! The server's gauges, read from its state at each scrape: what the
//! store, the authority set, the connected agents and the federation
//! refresher say right now, so no gauge can drift from the truth.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::ServerOps;
use crate::ops::{gauge, gauge_family, Role as _};
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState};

/// Writes the server's state gauges; runs on the blocking pool (it counts
/// the entries in the store).
pub(super) struct ServerCollector(pub(super) Arc<ServerOps>);

impl fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerCollector")
    }
}

pub(super) fn kind_label(kind: AuthorityKind) -> &'static str {
    match kind {
        AuthorityKind::X509 => "x509",
        AuthorityKind::Jwt => "jwt",
    }
}

pub(super) fn state_label(state: AuthorityState) -> &'static str {
    match state {
        AuthorityState::Prepared => "prepared",
        AuthorityState::Active => "active",
        AuthorityState::Old => "old",
    }
}

/// Per (kind, state): how many authorities, and the earliest expiry.
fn authority_rows<'a>(
    records: impl Iterator<Item = &'a AuthorityRecord>,
) -> BTreeMap<(&'static str, &'static str), (u32, i64)> {
    let mut rows = BTreeMap::new();
    for r in records {
        let row = rows
            .entry((kind_label(r.kind), state_label(r.state)))
            .or_insert((0, i64::MAX));
        row.0 += 1;
        row.1 = row.1.min(r.not_after);
    }
    rows
}

impl Collector for ServerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), fmt::Error> {
        let ops = &self.0;
        let state = &ops.state;
        let now = crate::clock::now_unix();
        let authorities = state.authorities();
        let records = authorities
            .x509_slots()
            .iter()
            .map(|s| &s.record)
            .chain(authorities.jwt_slots().iter().map(|s| &s.record));
        let rows = authority_rows(records);
        gauge_family(
            &mut e,
            "herald_server_authorities",
            "Authorities per kind and rotation state",
            rows.iter()
                .map(|((k, s), (n, _))| ([("kind", *k), ("state", *s)], f64::from(*n))),
        )?;
        gauge_family(
            &mut e,
            "herald_server_authority_expiry_seconds",
            "Seconds until the earliest authority of that kind and state expires",
            rows.iter()
                .map(|((k, s), (_, t))| ([("kind", *k), ("state", *s)], (t - now) as f64)),
        )?;
        gauge(
            &mut e,
            "herald_server_ca_ttl_seconds",
            "Configured CA lifetime",
            authorities.settings().ca_ttl_secs as f64,
        )?;
        let sequence = authorities.bundle().sequence;
        gauge(
            &mut e,
            "herald_server_bundle_sequence",
            "Sequence number of the current own bundle",
            sequence as f64,
        )?;
        let (connected, acked) = state.agent_ack_counts(sequence);
        gauge(
            &mut e,
            "herald_server_agents_connected",
            "Agents with an open Sync stream",
            connected as f64,
        )?;
        let ratio = if connected == 0 {
            1.0
        } else {
            acked as f64 / connected as f64
        };
        gauge(
            &mut e,
            "herald_server_bundle_acknowledged_ratio",
            "Share of connected agents that acknowledged the current bundle (1 when none is connected)",
            ratio,
        )?;
        // A store that cannot count leaves the gauge out rather than lie.
        if let Ok(n) = state.store.count_entries() {
            gauge(
                &mut e,
                "herald_server_entries",
                "Registration entries in the store",
                n as f64,
            )?;
        }
        let statuses = ops.refresher.statuses();
        gauge_family(
            &mut e,
            "herald_server_federation_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh of a federated bundle",
            statuses.iter().filter_map(|(td, s)| {
                s.last_success_at
                    .map(|t| ([("trust_domain", td.to_string())], t as f64))
            }),
        )?;
        gauge_family(
            &mut e,
            "herald_server_federation_refresh_hint_seconds",
            "Refresh interval in force: the bundle's refresh hint within the refresher's bounds",
            statuses.iter().filter_map(|(td, s)| {
                s.interval_secs
                    .map(|i| ([("trust_domain", td.to_string())], i as f64))
            }),
        )?;
        let ready = ops.not_ready().is_none();
        gauge(
            &mut e,
            "herald_server_ready",
            "1 when /ready answers 200",
            if ready { 1.0 } else { 0.0 },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: AuthorityKind, state: AuthorityState, not_after: i64) -> AuthorityRecord {
        AuthorityRecord {
            id: format!("{not_after}"),
            kind,
            state,
            tainted: false,
            key_id: String::new(),
            cert_der: None,
            upstream_chain: Vec::new(),
            public_key: None,
            jwt_key_id: None,
            not_before: 0,
            not_after,
            created_at: 0,
            bundle_sequence: 0,
            server_id: String::new(),
        }
    }

    #[test]
    fn each_kind_and_state_counts_and_keeps_its_earliest_expiry() {
        let records = [
            record(AuthorityKind::X509, AuthorityState::Old, 50),
            record(AuthorityKind::X509, AuthorityState::Old, 20),
            record(AuthorityKind::X509, AuthorityState::Active, 100),
            record(AuthorityKind::Jwt, AuthorityState::Active, 90),
        ];
        let rows = authority_rows(records.iter());
        assert_eq!(rows[&("x509", "old")], (2, 20));
        assert_eq!(rows[&("x509", "active")], (1, 100));
        assert_eq!(rows[&("jwt", "active")], (1, 90));
        assert_eq!(rows.len(), 3);
    }
}

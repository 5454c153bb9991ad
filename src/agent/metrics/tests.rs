//! Readiness and the outage budget from a cache snapshot, and the method
//! lists against workload.proto.

use std::sync::Arc;

use super::*;
use crate::agent::cache::tests::identity;
use crate::agent::cache::WorkloadIdentity;
use crate::spiffe::TrustDomain;

fn snapshot(not_afters: &[i64]) -> CacheSnapshot {
    let mut s = CacheSnapshot::empty(TrustDomain::new("example.org").unwrap());
    s.identities = not_afters
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let mut i = WorkloadIdentity::clone(&identity(&format!("e{n}"), Vec::new()));
            i.not_after = *t;
            Arc::new(i)
        })
        .collect();
    s.ready = true;
    s
}

#[test]
fn ready_needs_a_sync_and_a_valid_svid_for_every_entry() {
    let now = 1_000;
    let why = not_ready(&snapshot(&[2_000]), false, 1, now).unwrap();
    assert!(why.contains("not synced"), "{why}");
    assert_eq!(not_ready(&snapshot(&[2_000]), true, 1, now), None);
    assert_eq!(not_ready(&snapshot(&[]), true, 0, now), None);
    let why = not_ready(&snapshot(&[2_000]), true, 2, now).unwrap();
    assert!(why.contains("1 of 2 entries"), "{why}");
    let why = not_ready(&snapshot(&[2_000, now]), true, 2, now).unwrap();
    assert!(
        why.contains("1 of 2 entries"),
        "an expired SVID is no SVID: {why}"
    );
}

#[test]
fn the_outage_budget_is_the_earliest_expiry() {
    assert_eq!(outage_budget(&snapshot(&[]), 100), None);
    assert_eq!(outage_budget(&snapshot(&[700, 400, 900]), 100), Some(300));
    assert_eq!(outage_budget(&snapshot(&[50]), 100), Some(0));
}

#[test]
fn the_method_lists_match_the_protos() {
    let workload = crate::ops::proto_methods("proto/spiffe/workload/workload.proto");
    assert_eq!(WORKLOAD_METHODS, workload.as_slice());
}

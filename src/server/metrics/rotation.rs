//! Authority transitions as events for `herald_server_rotation_events_total`,
//! found by comparing the authority set before and after a change: one
//! place sees every transition, whether the CA manager or an operator
//! (the admin API) made it.

use std::collections::HashMap;

use super::collector::kind_label;
use crate::server::authorities::Authorities;
use crate::store::{AuthorityRecord, AuthorityState};

fn records(a: &Authorities) -> HashMap<&str, &AuthorityRecord> {
    a.x509_slots()
        .iter()
        .map(|s| &s.record)
        .chain(a.jwt_slots().iter().map(|s| &s.record))
        .map(|r| (r.id.as_str(), r))
        .collect()
}

/// The transitions from `old` to `new`, as (kind, event): a new authority
/// is `prepared` (or `activated` when it arrives signing at once), one
/// that starts signing is `activated`, one newly tainted is `tainted`, and
/// one that leaves the set is `revoked` if it was tainted, else `removed`.
pub(crate) fn rotation_events(
    old: &Authorities,
    new: &Authorities,
) -> Vec<(&'static str, &'static str)> {
    let (before, after) = (records(old), records(new));
    let mut events = Vec::new();
    for (id, r) in &after {
        let kind = kind_label(r.kind);
        match before.get(id) {
            None if r.state == AuthorityState::Active => events.push((kind, "activated")),
            None => events.push((kind, "prepared")),
            Some(was) => {
                if r.state == AuthorityState::Active && was.state != AuthorityState::Active {
                    events.push((kind, "activated"));
                }
                if r.tainted && !was.tainted {
                    events.push((kind, "tainted"));
                }
            }
        }
    }
    for (id, r) in &before {
        if !after.contains_key(id) {
            let event = if r.tainted { "revoked" } else { "removed" };
            events.push((kind_label(r.kind), event));
        }
    }
    events.sort_unstable();
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuthorityKind;

    #[test]
    fn a_full_rotation_reads_as_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        let state = crate::server::state::test_state(store);
        let (store, keys) = (state.store.as_ref(), state.keys.as_ref());
        let a0 = state.authorities();
        let a1 = a0.prepare(AuthorityKind::X509, store, keys, 10).unwrap();
        assert_eq!(rotation_events(&a0, &a1), [("x509", "prepared")]);
        let a2 = a1.activate(AuthorityKind::X509, store).unwrap();
        assert_eq!(rotation_events(&a1, &a2), [("x509", "activated")]);
        let old = a2
            .x509_slots()
            .iter()
            .find(|s| s.record.state == AuthorityState::Old)
            .unwrap()
            .record
            .id
            .clone();
        let a3 = a2.taint(AuthorityKind::X509, &old, store).unwrap();
        assert_eq!(rotation_events(&a2, &a3), [("x509", "tainted")]);
        let a4 = a3
            .revoke(AuthorityKind::X509, &old, &[], store, keys)
            .unwrap();
        assert_eq!(rotation_events(&a3, &a4), [("x509", "revoked")]);
        assert!(rotation_events(&a4, &a4).is_empty());
    }
}

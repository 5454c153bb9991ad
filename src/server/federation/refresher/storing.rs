//! One refresh: fetch a relationship's bundle and store it by the rules of
//! the parent module's doc ("What is stored").

use std::sync::Arc;

use super::{RefreshError, RefreshOutcome, RefresherHandle};
use crate::server::federation::fetch::{fetch_for_relationship, FetchLimits};
use crate::server::federation::web_roots::WebRoots;
use crate::server::state::{ServerEvent, ServerState};
use crate::spiffe::Bundle;
use crate::store::FederationRelationship;

/// Fetches `rel`'s bundle and stores it by the rules in the module doc.
pub(super) async fn refresh_once(
    state: Arc<ServerState>,
    web_roots: WebRoots,
    handle: RefresherHandle,
    rel: FederationRelationship,
    limits: FetchLimits,
) -> Result<RefreshOutcome, RefreshError> {
    let td = rel.trust_domain.clone();
    let fetched = fetch_for_relationship(&state, &rel, &web_roots, limits)
        .await
        .map_err(|e| RefreshError::Fetch(Arc::new(e)))?;
    let _writes = handle.lock_writes().await;
    let stored = state
        .with_store(move |s| {
            if s.get_federation_relationship(&rel.trust_domain)?.as_ref() != Some(&rel) {
                return Ok(None);
            }
            let current = s.get_bundle(&rel.trust_domain)?;
            let decision = match &current {
                None => Decision::Replace,
                Some(current) => decide(current, &fetched),
            };
            let old_sequence = current.as_ref().map(|b| b.sequence);
            match (decision, current) {
                (Decision::Keep, Some(current)) => Ok(Some((current, decision, old_sequence))),
                _ => {
                    s.set_bundle(&fetched)?;
                    Ok(Some((fetched, decision, old_sequence)))
                }
            }
        })
        .await
        .map_err(|e| RefreshError::Store {
            trust_domain: td.clone(),
            source: Arc::new(e),
        })?;
    let Some((bundle, decision, old_sequence)) = stored else {
        return Err(RefreshError::Superseded(td));
    };
    let changed = decision == Decision::Replace;
    if changed {
        tracing::info!(
            trust_domain = %td,
            old_sequence = ?old_sequence,
            sequence = bundle.sequence,
            x509_authorities = bundle.x509_authorities.len(),
            jwt_authorities = bundle.jwt_authorities.len(),
            "federated bundle updated"
        );
        state.publish(ServerEvent::BundleChanged);
    } else if decision == Decision::UpdateQuietly {
        state.bundle_stored_quietly();
    }
    Ok(RefreshOutcome { bundle, changed })
}

/// What to do with a fetched bundle, given the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing new: leave the store alone.
    Keep,
    /// Same authorities, newer sequence or hint: store, tell nobody.
    UpdateQuietly,
    /// New authorities: store and tell agents.
    Replace,
}

/// The storing rule of the module doc.
pub(super) fn decide(current: &Bundle, fetched: &Bundle) -> Decision {
    if !same_authorities(current, fetched) {
        return Decision::Replace;
    }
    let newer = fetched.sequence > current.sequence
        || (fetched.sequence == current.sequence && fetched.refresh_hint != current.refresh_hint);
    if newer {
        Decision::UpdateQuietly
    } else {
        Decision::Keep
    }
}

/// Whether two bundles hold the same authorities, in any order.
pub(super) fn same_authorities(a: &Bundle, b: &Bundle) -> bool {
    let x509 = |b: &Bundle| {
        let mut v = b.x509_authorities.clone();
        v.sort();
        v
    };
    let jwt = |b: &Bundle| {
        let mut v: Vec<(String, Vec<u8>)> = b
            .jwt_authorities
            .iter()
            .map(|a| (a.key_id.clone(), a.public_key.clone()))
            .collect();
        v.sort();
        v
    };
    x509(a) == x509(b) && jwt(a) == jwt(b)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::federation::refresher::RefresherSettings;
    use crate::spiffe::{JwtAuthority, TrustDomain};

    fn bundle(seq: u64, hint: Option<u64>, roots: &[&[u8]]) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new("peer.org").unwrap());
        b.sequence = seq;
        b.refresh_hint = hint;
        b.x509_authorities = roots.iter().map(|r| r.to_vec()).collect();
        b
    }

    #[test]
    fn new_authorities_replace_whatever_the_sequence() {
        let stored = bundle(7, Some(300), &[b"a"]);
        assert_eq!(
            decide(&stored, &bundle(8, Some(300), &[b"b"])),
            Decision::Replace
        );
        assert_eq!(
            decide(&stored, &bundle(1, Some(300), &[b"b"])),
            Decision::Replace
        );
        assert_eq!(
            decide(&stored, &bundle(7, Some(300), &[b"a", b"b"])),
            Decision::Replace
        );
        let mut with_jwt = stored.clone();
        with_jwt.jwt_authorities.push(JwtAuthority {
            key_id: "k".into(),
            public_key: vec![1],
            expires_at: None,
        });
        assert_eq!(decide(&stored, &with_jwt), Decision::Replace);
    }

    #[test]
    fn same_authorities_never_move_the_sequence_back() {
        let stored = bundle(7, Some(300), &[b"a", b"b"]);
        let (same, swapped): (&[&[u8]], &[&[u8]]) = (&[b"a", b"b"], &[b"b", b"a"]);
        for (sequence, hint, roots, want) in [
            (7, 300, swapped, Decision::Keep),
            (6, 300, same, Decision::Keep),
            (6, 60, same, Decision::Keep),
            (9, 300, same, Decision::UpdateQuietly),
            (7, 60, same, Decision::UpdateQuietly),
        ] {
            let got = decide(&stored, &bundle(sequence, Some(hint), roots));
            assert_eq!(got, want, "sequence {sequence}, hint {hint}");
        }
    }

    #[test]
    fn intervals_follow_the_hint_within_bounds() {
        let s = RefresherSettings::default();
        assert_eq!(s.interval(None), Duration::from_secs(300));
        assert_eq!(s.interval(Some(0)), Duration::from_secs(300));
        assert_eq!(s.interval(Some(60)), Duration::from_secs(60));
        assert_eq!(s.interval(Some(1)), Duration::from_secs(10));
        assert_eq!(s.interval(Some(u64::MAX)), Duration::from_secs(86_400));
    }
}

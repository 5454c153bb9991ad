//! Concurrent callers: compare-and-swap on agents, single-use tokens.
//! Every thread shares one store, so with PostgreSQL each uses a pooled
//! connection of its own: the database, not the client, decides.

use std::sync::{Arc, Barrier};

use super::records::{agent, assert_not_found, token};
use super::{id, Store};
use crate::store::{AttestedAgent, StoreError};

pub(super) fn a_ban_survives_every_concurrent_renewal_and_reattestation(store: Store) {
    let agent_id = id("/agent/raced");
    store.attest_agent(&agent("/agent/raced")).unwrap();
    let start = Arc::new(Barrier::new(9));
    let mut threads = Vec::new();
    for t in 0..8 {
        let (store, start, agent_id) = (store.clone(), start.clone(), agent_id.clone());
        threads.push(std::thread::spawn(move || {
            start.wait();
            for i in 0..50 {
                // A renewal: a new serial on the record it read. Once the
                // ban lands, these must fail rather than write it away.
                let _ = store.update_agent(&agent_id, &mut |a| {
                    Ok(AttestedAgent {
                        serial: format!("{t:02}{i:02}"),
                        ..a.clone()
                    })
                });
            }
        }));
    }
    start.wait();
    store
        .update_agent(&agent_id, &mut |a| {
            Ok(AttestedAgent {
                banned: true,
                ..a.clone()
            })
        })
        .unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert!(store.get_agent(&agent_id).unwrap().unwrap().banned);
    // Neither a write that unbans nor a re-attestation gets through.
    assert!(matches!(
        store.update_agent(&agent_id, &mut |a| Ok(AttestedAgent {
            banned: false,
            ..a.clone()
        })),
        Err(StoreError::AgentBanned { .. })
    ));
    assert!(matches!(
        store.attest_agent(&agent("/agent/raced")),
        Err(StoreError::AgentBanned { .. })
    ));
    // Eviction deletes the record; a late renewal cannot bring it back.
    store.delete_agent(&agent_id).unwrap();
    assert_not_found(
        store.update_agent(&agent_id, &mut |a| Ok(a.clone())),
        "agent",
    );
    assert_eq!(store.get_agent(&agent_id).unwrap(), None);
}

/// Concurrent read-modify-writes of one agent: every increment lands.
pub(super) fn concurrent_agent_updates_lose_nothing(store: Store) {
    let agent_id = id("/agent/counted");
    store.attest_agent(&agent("/agent/counted")).unwrap();
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, start, agent_id) = (store.clone(), start.clone(), agent_id.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..25 {
                    store
                        .update_agent(&agent_id, &mut |a| {
                            Ok(AttestedAgent {
                                expires_at: a.expires_at + 1,
                                ..a.clone()
                            })
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stored = store.get_agent(&agent_id).unwrap().unwrap();
    assert_eq!(stored.expires_at, agent("/agent/counted").expires_at + 200);
}

pub(super) fn racing_consumers_exactly_one_wins(store: Store) {
    race_for_tokens([store.clone(), store]);
}

/// Twenty tokens, each created once and consumed by two threads at once,
/// one through each store of `stores` (the same store twice, or two
/// stores on one database): exactly one of the two wins each time.
pub(super) fn race_for_tokens(stores: [Store; 2]) {
    for round in 0..20 {
        let value = format!("race-{round}");
        stores[0]
            .create_join_token(token(&value, i64::MAX))
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let (store, barrier, value) = (store.clone(), barrier.clone(), value.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.consume_join_token(&value, 0)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(StoreError::NotFound { .. }))));
    }
}

/// `swap_bundle` is a compare-and-swap: from an absent bundle and then
/// from each sequence, of eight threads swapping at once exactly one wins,
/// and a swap from a stale sequence changes nothing.
pub(super) fn racing_bundle_swaps_exactly_one_wins(store: Store) {
    let mut expected = 0;
    for round in 0..10u64 {
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut b = super::records::sample_bundle("example.org");
                    b.sequence = expected + 1;
                    b.refresh_hint = Some(i + 1);
                    barrier.wait();
                    store.swap_bundle(&b, expected).map(|won| (won, i))
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let winners: Vec<u64> = results
            .iter()
            .filter(|(won, _)| *won)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let stored = store
            .get_bundle(&super::td("example.org"))
            .unwrap()
            .unwrap();
        assert_eq!(stored.sequence, expected + 1);
        assert_eq!(stored.refresh_hint, Some(winners[0] + 1));
        expected += 1;
    }
    let stale = super::records::sample_bundle("example.org");
    assert!(!store.swap_bundle(&stale, 3).unwrap());
    assert_eq!(
        store
            .get_bundle(&super::td("example.org"))
            .unwrap()
            .unwrap()
            .sequence,
        expected
    );
}

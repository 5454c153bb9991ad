//! PostgreSQL only: the change feed hands on every event exactly once,
//! even when transactions commit out of the order in which they drew their
//! event ids (spire#5624), and every kind of change writes its event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::records::sample_bundle;
use super::{add_entry, id, temp_database};
use crate::store::postgres::test_database::TempDatabase;
use crate::store::postgres::{PostgresSettings, PostgresStore};
use crate::store::{Change, Cluster, DataStore};

fn store(db: &TempDatabase) -> PostgresStore {
    PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw connection of the test's own, to hold transactions open.
async fn raw(db: &TempDatabase) -> tokio_postgres::Client {
    let (client, conn) = db
        .url
        .parse()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Appends an event the way the triggers do, in the client's transaction.
async fn event(c: &tokio_postgres::Client, subject: &str) {
    c.execute("SELECT herald_event('bundle', $1)", &[&subject])
        .await
        .unwrap();
}

fn subjects(batch: &[(i64, i64, Change)]) -> Vec<String> {
    batch
        .iter()
        .map(|(_, _, c)| match c {
            Change::Bundle(s) => s.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// The events readable from `after` once there are `n` of them: any
/// write transaction still open on the PostgreSQL server (other tests run
/// at the same time) holds the horizon back for a moment.
fn read_until(s: &PostgresStore, after: (i64, i64), n: usize) -> Vec<(i64, i64, Change)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = s.feed_read_once(after).unwrap().events;
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_event_whose_id_commits_late_is_not_skipped() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let start = (s.feed_horizon_now().unwrap(), 0);
    // T1 draws the lower id, T2 the higher; T2 commits first.
    let (t1, t2) = rt.block_on(async { (raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        t1.batch_execute("BEGIN").await.unwrap();
        event(&t1, "first").await;
        t2.batch_execute("BEGIN").await.unwrap();
        event(&t2, "second").await;
        t2.batch_execute("COMMIT").await.unwrap();
    });
    // "Everything after the highest id seen" would hand on `second` now
    // and never `first`. The feed waits: T1 is still running.
    let held = s.feed_read_once(start).unwrap();
    assert!(held.events.is_empty(), "{:?}", subjects(&held.events));
    assert!(held.pending, "committed events wait beyond the horizon");
    rt.block_on(t1.batch_execute("COMMIT")).unwrap();
    let both = read_until(&s, start, 2);
    assert_eq!(subjects(&both), ["first", "second"]);
    let (tx, id, _) = &both[1];
    assert!(s.feed_read_once((*tx, *id)).unwrap().events.is_empty());
}

#[test]
fn an_older_transaction_holds_back_a_younger_ones_earlier_id() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let start = (s.feed_horizon_now().unwrap(), 0);
    let (old, young) = rt.block_on(async { (raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        // `old` gets its transaction id first, its event id last.
        old.batch_execute("BEGIN; SELECT pg_current_xact_id()")
            .await
            .unwrap();
        young.batch_execute("BEGIN").await.unwrap();
        event(&young, "young").await;
        event(&old, "old").await;
        young.batch_execute("COMMIT").await.unwrap();
    });
    assert!(s.feed_read_once(start).unwrap().events.is_empty());
    rt.block_on(old.batch_execute("COMMIT")).unwrap();
    assert_eq!(subjects(&read_until(&s, start, 2)), ["old", "young"]);
}

#[test]
fn concurrent_writers_committing_out_of_order_lose_nothing() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let mut feed = s.watch_changes();
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let c = raw(&db).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    c.batch_execute("BEGIN").await.unwrap();
                    event(&c, &format!("{w}-{i}")).await;
                    // Hold some transactions open while others commit, so
                    // ids commit out of order.
                    let hold = (w * 7 + i * 13) % 5;
                    tokio::time::sleep(Duration::from_millis(hold as u64 * 3)).await;
                    if (w + i) % 11 == 0 {
                        c.batch_execute("ROLLBACK").await.unwrap();
                    } else {
                        c.batch_execute("COMMIT").await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let expected: Vec<String> = (0..WRITERS)
        .flat_map(|w| (0..EACH).map(move |i| (w, i)))
        .filter(|(w, i)| (w + i) % 11 != 0)
        .map(|(w, i)| format!("{w}-{i}"))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() && Instant::now() < deadline {
        match feed.changes.try_recv() {
            Ok(Change::Bundle(subject)) => *seen.entry(subject).or_default() += 1,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // A little longer, for duplicates to show.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(c) = feed.changes.try_recv() {
        if let Change::Bundle(subject) = c {
            *seen.entry(subject).or_default() += 1;
        }
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !seen.contains_key(*e)).collect();
    assert!(missing.is_empty(), "never handed on: {missing:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handed on more than once: {twice:?}");
    assert_eq!(seen.len(), expected.len(), "rolled back events appeared");
    assert_eq!(*feed.health.borrow(), Ok(()));
}

#[test]
fn every_kind_of_change_writes_its_event_in_its_transaction() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let mut feed = s.watch_changes();
    let first = feed.changes.blocking_recv();
    assert_eq!(first, Some(Change::Resync));
    let entry = add_entry(&s, "/w", "/agent", &["unix:uid:1"]);
    s.delete_entries(&[entry.id]).unwrap();
    s.set_bundle(&sample_bundle("other.org")).unwrap();
    let agent = super::records::agent("/node/a");
    s.attest_agent(&agent).unwrap();
    s.delete_agent(&id("/node/a")).unwrap();
    let want = [
        Change::Entries,
        Change::Entries,
        Change::Bundle("other.org".into()),
        Change::AgentRevoked(id("/node/a").to_string()),
    ];
    for w in want {
        assert_eq!(feed.changes.blocking_recv(), Some(w));
    }
    // Nothing for a write that changed nothing.
    assert_eq!(s.prune_expired_entries(i64::MAX / 2).unwrap(), vec![]);
    s.set_bundle(&sample_bundle("third.org")).unwrap();
    assert_eq!(
        feed.changes.blocking_recv(),
        Some(Change::Bundle("third.org".into()))
    );
}

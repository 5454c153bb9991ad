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

fn subjects(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Bundle(s) => s.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn an_event_whose_id_commits_late_is_not_skipped() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let mut cursor = s.feed_cursor_now().unwrap();
    // T1 draws the lower id, T2 the higher; T2 commits first.
    let (t1, t2) = rt.block_on(async { (raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        t1.batch_execute("BEGIN").await.unwrap();
        event(&t1, "first").await;
        t2.batch_execute("BEGIN").await.unwrap();
        event(&t2, "second").await;
        t2.batch_execute("COMMIT").await.unwrap();
    });
    // "Everything after the highest id seen" would never hand on `first`.
    assert_eq!(
        subjects(&s.feed_read_once(&mut cursor).unwrap()),
        ["second"]
    );
    assert_eq!(cursor.gaps.len(), 1, "{cursor:?}");
    rt.block_on(t1.batch_execute("COMMIT")).unwrap();
    assert_eq!(subjects(&s.feed_read_once(&mut cursor).unwrap()), ["first"]);
    assert!(cursor.gaps.is_empty());
    assert!(s.feed_read_once(&mut cursor).unwrap().is_empty());
}

/// A reader starting while a writer holds the lowest id of an empty
/// table, another's higher id already committed, still hands it on.
#[test]
fn a_reader_starting_after_a_later_commit_still_hands_on_the_earlier_id() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let (t1, t2) = rt.block_on(async { (raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        t1.batch_execute("BEGIN").await.unwrap();
        event(&t1, "first").await;
        t2.batch_execute("BEGIN").await.unwrap();
        event(&t2, "second").await;
        t2.batch_execute("COMMIT").await.unwrap();
    });
    // Starts with `second` committed and `first` in flight below it.
    let mut cursor = s.feed_cursor_now().unwrap();
    assert!(s.feed_read_once(&mut cursor).unwrap().is_empty());
    rt.block_on(t1.batch_execute("COMMIT")).unwrap();
    assert_eq!(subjects(&s.feed_read_once(&mut cursor).unwrap()), ["first"]);
    assert!(cursor.gaps.is_empty(), "{cursor:?}");
}

#[test]
fn a_gap_held_by_the_youngest_transaction_stays_open_until_it_ends() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let mut cursor = s.feed_cursor_now().unwrap();
    let (older, middle, younger) =
        rt.block_on(async { (raw(&db).await, raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        // Transaction ids in the order older < middle < younger; the
        // youngest draws an event id, the older a later one and commits.
        for t in [&older, &middle] {
            t.batch_execute("BEGIN; SELECT pg_current_xact_id()")
                .await
                .unwrap();
        }
        younger.batch_execute("BEGIN").await.unwrap();
        event(&younger, "younger").await;
        event(&older, "older").await;
        older.batch_execute("COMMIT").await.unwrap();
    });
    assert_eq!(subjects(&s.feed_read_once(&mut cursor).unwrap()), ["older"]);
    // The snapshot's xmax (one past the latest finished transaction) was
    // below the younger one's id: a gap bounded by it would close as soon
    // as the middle one ends, and the younger's event would be lost.
    rt.block_on(middle.batch_execute("ROLLBACK")).unwrap();
    for _ in 0..3 {
        assert!(s.feed_read_once(&mut cursor).unwrap().is_empty());
    }
    assert_eq!(cursor.gaps.len(), 1, "{cursor:?}");
    rt.block_on(younger.batch_execute("COMMIT")).unwrap();
    assert_eq!(
        subjects(&s.feed_read_once(&mut cursor).unwrap()),
        ["younger"]
    );
}

#[test]
fn a_long_transaction_holds_back_only_its_own_event() {
    let Some(db) = temp_database() else { return };
    let s = store(&db);
    let rt = runtime();
    let mut cursor = s.feed_cursor_now().unwrap();
    let (long, other) = rt.block_on(async { (raw(&db).await, raw(&db).await) });
    rt.block_on(async {
        // A write transaction left open (as by a slow batch, or an idle
        // session of another application on the same PostgreSQL server).
        long.batch_execute("BEGIN; SELECT pg_current_xact_id()")
            .await
            .unwrap();
        // Another change draws an id and rolls back; a third commits.
        other.batch_execute("BEGIN").await.unwrap();
        event(&other, "rolled back").await;
        other.batch_execute("ROLLBACK").await.unwrap();
        event(&other, "committed").await;
    });
    assert_eq!(
        subjects(&s.feed_read_once(&mut cursor).unwrap()),
        ["committed"]
    );
    // The rolled-back id stays a gap while an older transaction runs...
    assert_eq!(cursor.gaps.len(), 1, "{cursor:?}");
    rt.block_on(long.batch_execute("COMMIT")).unwrap();
    // ...and closes once none that could fill it runs (other tests' write
    // transactions on the same server may hold it a moment longer).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cursor.gaps.is_empty() && Instant::now() < deadline {
        assert!(s.feed_read_once(&mut cursor).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cursor.gaps.is_empty(), "{cursor:?}");
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

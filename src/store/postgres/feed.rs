//! The change feed: every server reads the `events` table (filled by
//! triggers in the transaction of each change, see
//! `migrations/postgres/0002_cluster.sql`) from its last position and hands
//! each event on as a [`Change`], woken by LISTEN/NOTIFY and polling as a
//! fallback.
//!
//! **Reading without skipping (spire#5624).** Event ids come from a
//! sequence, and sequence values are drawn when a transaction inserts, not
//! when it commits: transaction T1 may take id 10, T2 id 11, and T2 commit
//! first. A reader that saw 11 and then asks for "ids above 11" never sees
//! 10. Herald's reader hands on every id the first time it sees it and
//! keeps the ids below the highest seen that it has not seen yet (gaps),
//! asking for them again at every read, until each either appears or can
//! no longer appear: PostgreSQL's transaction ids prove when every
//! transaction that could have drawn it has finished (see [`cursor`]).
//! Rows and `xmin` come from one statement, hence one snapshot.
//!
//! Why not the alternatives: serializing every writer on an advisory lock
//! (so that id order is commit order) would make all writes of all servers
//! wait for each other's commits, and taking a lock inside triggers invites
//! deadlocks; closing gaps after a timeout would skip the event of any
//! transaction slower than the timeout; reading only below the snapshot's
//! `xmin` never skips either, but one long write transaction anywhere on
//! the PostgreSQL server (any database) would hold back every event behind
//! it. Here a slow transaction delays only its own event.
//!
//! **Doorbell and fallback.** NOTIFY `herald_events` is sent at commit by
//! the same triggers. The reader LISTENs on a connection of its own before
//! it reads, so no ring between a read and the wait is lost; it also polls
//! every [`POLL_EVERY`]. If the database or that connection goes away, the
//! feed reports itself unhealthy, reconnects every second, and on recovery
//! sends [`Change::Resync`] (so a server recomputes everything, even if
//! events it missed were pruned meanwhile) and reads on from where it was.
//!
//! **Pruning.** Events older than [`RETENTION`] are deleted by whichever
//! server gets there; a server away longer than that resyncs anyway.

mod cursor;

use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use self::cursor::Cursor;
use super::codec::column;
use super::PostgresStore;
use crate::errors::Chain;
use crate::store::{Change, ChangeFeed, FeedHealth, StoreError};

/// Fallback poll interval, should a NOTIFY be lost.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Wait before reconnecting after a failure.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Events read per query.
const BATCH: i64 = 1000;
/// How long events are kept.
const RETENTION: Duration = Duration::from_secs(3600);
/// How often a server prunes old events.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The NOTIFY channel the triggers ring.
const CHANNEL: &str = "herald_events";

/// A REPEATABLE READ transaction (every query sees one snapshot) and its
/// snapshot's `xmin`: every transaction id below it has finished.
async fn snapshot_tx<'c>(
    client: &'c mut deadpool_postgres::Object,
    op: &'static str,
) -> Result<(deadpool_postgres::Transaction<'c>, i64), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(StoreError::pg(op))?;
    let row = tx
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
        )
        .await
        .map_err(StoreError::pg(op))?;
    Ok((tx, column(&row, 0, "events")?))
}

/// A transaction id assigned now, after the snapshot of `tx` was taken:
/// above that of every transaction that drew an event id before it (see
/// [`cursor`]). Drawn only when a read opens gaps.
async fn bound(
    tx: &deadpool_postgres::Transaction<'_>,
    op: &'static str,
) -> Result<i64, StoreError> {
    let row = tx
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .await
        .map_err(StoreError::pg(op))?;
    column(&row, 0, "events")
}

/// How far below the highest id a starting reader looks for ids whose
/// transactions may still commit.
const START_WINDOW: i64 = 4096;

impl PostgresStore {
    /// Where a new reader starts: after the highest id now, waiting for
    /// the lower ids this snapshot does not show (their transactions may
    /// still commit). What came before is the state the server loads.
    pub(crate) async fn feed_start(pool: &deadpool_postgres::Pool) -> Result<Cursor, StoreError> {
        const OP: &str = "start reading the change feed";
        let mut client = pool
            .get()
            .await
            .map_err(|source| StoreError::Pool { op: OP, source })?;
        let (tx, _) = snapshot_tx(&mut client, OP).await?;
        let row = tx
            .query_one(
                // Missing ids are looked for below the highest up to a
                // window, not only above the lowest shown: on an empty or
                // pruned table, writers still in flight hold ids below the
                // first committed one. A writer whose id lies more than the
                // window below the highest at start is the one case left.
                "SELECT greatest(1, coalesce(max(id), 0) - $1), coalesce(max(id), 0) FROM events",
                &[&START_WINDOW],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let (low, high): (i64, i64) = (column(&row, 0, "events")?, column(&row, 1, "events")?);
        let missing: Vec<i64> = tx
            .query(
                "SELECT g FROM generate_series($1::int8, $2::int8) AS g
                 WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = g)",
                &[&low, &high],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .iter()
            .map(|r| column(r, 0, "events"))
            .collect::<Result<_, _>>()?;
        let bound = match missing.is_empty() {
            true => 0,
            false => bound(&tx, OP).await?,
        };
        tx.commit().await.map_err(StoreError::pg(OP))?;
        Ok(Cursor::starting(high, &missing, bound))
    }

    /// One read from `cursor`: the changes to hand on, in id order, and
    /// whether more are waiting (the read hit its limit). One statement,
    /// so the rows and the `xmin` come from one snapshot (PostgreSQL gives
    /// each statement its own); the bound, when needed, is a transaction
    /// id assigned by a later statement, hence after that snapshot.
    pub(crate) async fn feed_read(
        pool: &deadpool_postgres::Pool,
        cursor: &mut Cursor,
    ) -> Result<(Vec<Change>, bool), StoreError> {
        const OP: &str = "read the change feed";
        let client = pool
            .get()
            .await
            .map_err(|source| StoreError::Pool { op: OP, source })?;
        let read = client
            .prepare_cached(
                "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
                 SELECT snap.xmin, e.id, e.kind, e.subject
                 FROM snap LEFT JOIN LATERAL (
                     SELECT id, kind, subject FROM events
                     WHERE id = ANY($1) OR id > $2 ORDER BY id LIMIT $3
                 ) AS e ON true
                 ORDER BY e.id",
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let gaps = cursor.gap_ids();
        let rows = client
            .query(&read, &[&gaps, &cursor.max_seen, &BATCH])
            .await
            .map_err(StoreError::pg(OP))?;
        let mut xmin = 0;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            xmin = column(row, 0, "events")?;
            let Some(id) = column::<Option<i64>>(row, 1, "events")? else {
                continue;
            };
            let kind: String = column(row, 2, "events")?;
            events.push((id, Change::from_row(&kind, column(row, 3, "events")?)));
        }
        let full = events.len() as i64 == BATCH;
        let bound = match cursor.opens_gaps(&events) {
            true => {
                let row = client
                    .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
                    .await
                    .map_err(StoreError::pg(OP))?;
                column(&row, 0, "events")?
            }
            false => 0,
        };
        Ok((cursor.advance(events, xmin, bound, !full), full))
    }
}

/// Starts the feed on the store's runtime (see [`crate::store::Cluster`]).
pub(super) fn start(store: &PostgresStore) -> ChangeFeed {
    let (changes, rx) = mpsc::unbounded_channel();
    let (health, health_rx) = watch::channel::<FeedHealth>(Err("starting".into()));
    let reader = Reader {
        pool: store.pool.clone(),
        config: store.pg_config.clone(),
        tls: store.tls.clone(),
        changes,
        health,
    };
    // Only `drop` takes the runtime: without it the feed stays unhealthy.
    if let Some(rt) = &store.runtime {
        rt.spawn(reader.run());
    }
    ChangeFeed {
        changes: rx,
        health: health_rx,
    }
}

struct Reader {
    pool: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    changes: mpsc::UnboundedSender<Change>,
    health: watch::Sender<FeedHealth>,
}

impl Reader {
    /// Reads until the receiver goes, reconnecting after any failure.
    async fn run(self) {
        let mut cursor = None;
        let mut last_error = String::new();
        while !self.changes.is_closed() {
            let Err(e) = self.session(&mut cursor).await else {
                return;
            };
            let why = Chain(&e).to_string();
            if why != last_error {
                tracing::warn!(error = %why, "change feed from PostgreSQL interrupted; reconnecting every second");
                last_error = why.clone();
            }
            let _previous = self.health.send_replace(Err(why));
            tokio::time::sleep(RECONNECT_EVERY).await;
        }
    }

    /// One connected stretch: LISTEN, announce a resync, then read at each
    /// ring or poll. `Ok` when the receiver went away.
    async fn session(&self, cursor: &mut Option<Cursor>) -> Result<(), StoreError> {
        let (_client, mut doorbell) = self.listen().await?;
        let at = match cursor {
            Some(c) => c,
            None => cursor.insert(PostgresStore::feed_start(&self.pool).await?),
        };
        if self.changes.send(Change::Resync).is_err() {
            return Ok(());
        }
        if self.health.borrow().is_err() {
            tracing::info!("change feed from PostgreSQL reading");
        }
        let _previous = self.health.send_replace(Ok(()));
        let mut pruned = tokio::time::Instant::now();
        loop {
            let (changes, more) = PostgresStore::feed_read(&self.pool, at).await?;
            for change in changes {
                if self.changes.send(change).is_err() {
                    return Ok(());
                }
            }
            if more {
                continue;
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                prune(&self.pool).await?;
                pruned = tokio::time::Instant::now();
            }
            // A gap fills when its transaction commits, which rings.
            tokio::select! {
                rang = doorbell.recv() => match rang {
                    Some(Ok(())) => while doorbell.try_recv().is_ok() {},
                    Some(Err(e)) => return Err(e),
                    None => return Err(StoreError::FeedClosed),
                },
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = self.changes.closed() => return Ok(()),
            }
        }
    }
    /// A connection of its own that LISTENs; each notification (or the
    /// connection's failure) arrives on the returned channel, which closes
    /// with the connection. Keep the client alive while listening.
    async fn listen(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            mpsc::UnboundedReceiver<Result<(), StoreError>>,
        ),
        StoreError,
    > {
        const OP: &str = "listen for changes";
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(StoreError::pg(OP))?;
        let (ring, doorbell) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        if ring.send(Ok(())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ring.send(Err(StoreError::pg(OP)(e)));
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(StoreError::pg(OP))?;
        Ok((client, doorbell))
    }
}

/// Deletes events older than [`RETENTION`].
async fn prune(pool: &deadpool_postgres::Pool) -> Result<(), StoreError> {
    const OP: &str = "prune the change feed";
    let client = pool
        .get()
        .await
        .map_err(|source| StoreError::Pool { op: OP, source })?;
    let secs = RETENTION.as_secs_f64();
    let removed = client
        .execute(
            "DELETE FROM events WHERE created_at < now() - make_interval(secs => $1)",
            &[&secs],
        )
        .await
        .map_err(StoreError::pg(OP))?;
    if removed > 0 {
        tracing::debug!(removed, "pruned old change events");
    }
    Ok(())
}

#[cfg(test)]
impl PostgresStore {
    /// A reader's cursor starting now, for tests of the ordering.
    pub(crate) fn feed_cursor_now(&self) -> Result<Cursor, StoreError> {
        self.run(PostgresStore::feed_start(&self.pool))
    }

    /// One read of the feed from `cursor`, for tests of the ordering.
    pub(crate) fn feed_read_once(&self, cursor: &mut Cursor) -> Result<Vec<Change>, StoreError> {
        self.run(async { Ok(PostgresStore::feed_read(&self.pool, cursor).await?.0) })
    }
}

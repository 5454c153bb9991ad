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
//! 10. Herald orders and bounds its reads by the *writing transaction's
//! id* instead (`events.tx`, PostgreSQL's 64-bit `pg_current_xact_id()`):
//! in a snapshot, `pg_snapshot_xmin` is the oldest transaction still
//! running, so every transaction with a smaller id has finished — it
//! committed (its events are visible in that very snapshot) or aborted (its
//! events never will be). A read therefore takes only events with
//! `tx < xmin` (the *horizon*), in `(tx, id)` order, and continues after
//! the last `(tx, id)` it handed on. Nothing below the horizon can appear
//! later, so the position never passes an event that is still to come, and
//! no event is handed on twice. The horizon and the rows come from one
//! REPEATABLE READ snapshot, so they agree.
//!
//! Why not the alternatives: serializing every writer on an advisory lock
//! (so that id order is commit order) would make all writes of all servers
//! wait for each other's commits; re-reading gaps until a timeout would
//! skip the event of any transaction slower than the timeout. The horizon
//! never skips and costs writers nothing. Its price is latency, never
//! loss: an event waits while an older write transaction anywhere on the
//! PostgreSQL server is still open (Herald's own are short). While events
//! beyond the horizon are waiting, the reader polls again quickly (an
//! older transaction that aborts sends no NOTIFY), backing off to 0.5 s.
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

use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::codec::column;
use super::PostgresStore;
use crate::errors::Chain;
use crate::store::{Change, ChangeFeed, FeedHealth, StoreError};

/// Fallback poll interval, should a NOTIFY be lost.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// First quick re-read while events wait beyond the horizon.
const PENDING_FIRST: Duration = Duration::from_millis(10);
/// Slowest quick re-read.
const PENDING_MAX: Duration = Duration::from_millis(500);
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

/// Where a reader is: the `(tx, id)` of the last event handed on (or the
/// horizon it started at, with id 0).
pub(crate) type Position = (i64, i64);

/// One read: the events below the horizon after the position.
pub(crate) struct Batch {
    /// `(tx, id, change)` in `(tx, id)` order.
    pub(crate) events: Vec<(i64, i64, Change)>,
    /// The read was capped at [`BATCH`]: read again at once.
    pub(crate) full: bool,
    /// Committed events wait beyond the horizon: read again soon.
    pub(crate) pending: bool,
}

impl PostgresStore {
    /// The horizon now: every transaction with a smaller id has finished.
    pub(crate) async fn feed_horizon(pool: &deadpool_postgres::Pool) -> Result<i64, StoreError> {
        const OP: &str = "read the change feed horizon";
        let client = pool
            .get()
            .await
            .map_err(|source| StoreError::Pool { op: OP, source })?;
        let row = client
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        column(&row, 0, "events")
    }

    /// The events after `after` below the horizon, from one snapshot (see
    /// the module docs).
    pub(crate) async fn feed_read(
        pool: &deadpool_postgres::Pool,
        after: Position,
    ) -> Result<Batch, StoreError> {
        const OP: &str = "read the change feed";
        let pg = StoreError::pg(OP);
        let mut client = pool
            .get()
            .await
            .map_err(|source| StoreError::Pool { op: OP, source })?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg)?;
        let horizon: i64 = column(
            &tx.query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await
            .map_err(StoreError::pg(OP))?,
            0,
            "events",
        )?;
        let rows = tx
            .query(
                "SELECT tx, id, kind, subject FROM events
                 WHERE (tx, id) > ($1, $2) AND tx < $3
                 ORDER BY tx, id LIMIT $4",
                &[&after.0, &after.1, &horizon, &BATCH],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let pending: bool = column(
            &tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM events WHERE tx >= $1)",
                &[&horizon],
            )
            .await
            .map_err(StoreError::pg(OP))?,
            0,
            "events",
        )?;
        tx.commit().await.map_err(StoreError::pg(OP))?;
        let full = rows.len() as i64 == BATCH;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = column(row, 2, "events")?;
            events.push((
                column(row, 0, "events")?,
                column(row, 1, "events")?,
                Change::from_row(&kind, column(row, 3, "events")?),
            ));
        }
        Ok(Batch {
            events,
            full,
            pending,
        })
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
        let mut position = None;
        let mut last_error = String::new();
        while !self.changes.is_closed() {
            let Err(e) = self.session(&mut position).await else {
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

    /// One connected stretch: LISTEN, announce a resync, then read on each
    /// ring, poll, or quick re-read. `Ok` when the receiver went away.
    async fn session(&self, position: &mut Option<Position>) -> Result<(), StoreError> {
        let (_client, mut doorbell) = self.listen().await?;
        let mut at = match *position {
            Some(p) => p,
            None => (PostgresStore::feed_horizon(&self.pool).await?, 0),
        };
        *position = Some(at);
        if self.changes.send(Change::Resync).is_err() {
            return Ok(());
        }
        if self.health.borrow().is_err() {
            tracing::info!("change feed from PostgreSQL reading");
        }
        let _previous = self.health.send_replace(Ok(()));
        let mut quick: Option<Duration> = None;
        let mut pruned = tokio::time::Instant::now();
        loop {
            let batch = PostgresStore::feed_read(&self.pool, at).await?;
            for (tx, id, change) in batch.events {
                if self.changes.send(change).is_err() {
                    return Ok(());
                }
                at = (tx, id);
                *position = Some(at);
            }
            if batch.full {
                continue;
            }
            quick = match (batch.pending, quick) {
                (false, _) => None,
                (true, None) => Some(PENDING_FIRST),
                (true, Some(d)) => Some((d * 2).min(PENDING_MAX)),
            };
            if pruned.elapsed() >= PRUNE_EVERY {
                prune(&self.pool).await?;
                pruned = tokio::time::Instant::now();
            }
            tokio::select! {
                rang = doorbell.recv() => match rang {
                    Some(Ok(())) => while doorbell.try_recv().is_ok() {},
                    Some(Err(e)) => return Err(e),
                    None => return Err(StoreError::FeedClosed),
                },
                () = tokio::time::sleep(quick.unwrap_or(POLL_EVERY)) => {}
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
    /// One read of the feed from `after`, for tests of the ordering.
    pub(crate) fn feed_read_once(&self, after: Position) -> Result<Batch, StoreError> {
        self.run(PostgresStore::feed_read(&self.pool, after))
    }

    /// The horizon now, for tests.
    pub(crate) fn feed_horizon_now(&self) -> Result<i64, StoreError> {
        self.run(PostgresStore::feed_horizon(&self.pool))
    }
}

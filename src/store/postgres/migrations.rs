//! Versioned schema migrations, embedded from `migrations/postgres/`.
//!
//! At start every server runs [`migrate`]: one transaction that first takes
//! a transaction-scoped advisory lock, so that servers starting together on
//! an empty database apply each migration exactly once, one after the
//! other, and never deadlock (the lock is the only one taken before the
//! DDL, and it is released by the commit). A database whose recorded
//! version is newer than [`LATEST_VERSION`] is refused: this build would
//! misread a schema it does not know.

use deadpool_postgres::Pool;

use crate::store::StoreError;

/// One migration: its version, a name for the version table, its SQL.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3… without gaps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: include_str!("../../../migrations/postgres/0002_cluster.sql"),
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i32 = 2;

/// The advisory lock key of schema migration ("herald01" as ASCII), shared
/// by every Herald server of every version.
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64_3031;

/// Brings the database to [`LATEST_VERSION`]; see the module docs.
pub(super) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    const OP: &str = "migrate the schema";
    let pg = StoreError::pg(OP);
    let mut client = pool
        .get()
        .await
        .map_err(|source| StoreError::Pool { op: OP, source })?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(StoreError::pg(OP))?;
    // `IF NOT EXISTS` on a migrated database makes PostgreSQL send a NOTICE,
    // which tokio-postgres logs at INFO at every start: it reads like a
    // fault to an operator, so this transaction asks for warnings only.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS schema_version (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(StoreError::pg(OP))?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(StoreError::pg(OP))?;
    let current: i32 = row.try_get(0).map_err(StoreError::pg(OP))?;
    if current > LATEST_VERSION {
        return Err(StoreError::DatabaseSchemaTooNew {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying PostgreSQL schema migration"
        );
        tx.batch_execute(m.sql).await.map_err(StoreError::pg(OP))?;
        tx.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(StoreError::pg(OP))?;
    }
    tx.commit().await.map_err(StoreError::pg(OP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_latest_is_last() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }
}

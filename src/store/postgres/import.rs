//! What `herald store migrate` needs beyond the trait: whether the target
//! is empty, and entries written exactly as they were (revision kept).

use super::entries::{columns, insert_rows};
use super::PostgresStore;
use crate::registration::RegistrationEntry;
use crate::store::StoreError;

/// Every table holding records (not `schema_version`).
const RECORD_TABLES: &[&str] = &[
    "entries",
    "agents",
    "join_tokens",
    "bundles",
    "federation_relationships",
    "authorities",
    "issuances",
];

impl PostgresStore {
    /// Whether no table holds a record: a migration target must be.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.run(async {
            for table in RECORD_TABLES {
                if self
                    .count(table, "check that the database is empty")
                    .await?
                    > 0
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Writes `entries` as they are, revision and all, in one transaction;
    /// any clash with a stored entry fails the whole batch.
    pub fn import_entries(&self, entries: &[RegistrationEntry]) -> Result<(), StoreError> {
        const OP: &str = "import registration entries";
        self.run(async {
            for e in entries {
                e.validate()?;
            }
            let prepared: Vec<(RegistrationEntry, _)> =
                entries.iter().map(|e| (e.clone(), columns(e))).collect();
            let rows: Vec<_> = prepared.iter().collect();
            let mut client = self.client(OP).await?;
            let tx = client.transaction().await.map_err(StoreError::pg(OP))?;
            let inserted = insert_rows(&tx, &rows).await?;
            if inserted.len() != entries.len() {
                return Err(StoreError::Conflict {
                    what: "an imported registration entry clashes with a stored one",
                });
            }
            tx.commit().await.map_err(StoreError::pg(OP))
        })
    }
}

//! The issuance log: one row per issued certificate, indexed by expiry so
//! that pruning reads only the expired rows.

use std::collections::HashMap;

use tokio_postgres::types::Json;

use super::codec::record;
use super::PostgresStore;
use crate::store::{IssuanceRecord, StoreError};

const TABLE: &str = "issuances";

impl PostgresStore {
    /// Writes `records` (several callers' at once, grouped by the store's
    /// `Combiner`) in one statement: one commit.
    pub(super) async fn append_issuances_impl(
        &self,
        records: &[IssuanceRecord],
    ) -> Result<(), StoreError> {
        const OP: &str = "append issuance records";
        let _span = tracing::debug_span!("store.append_issuances", count = records.len()).entered();
        if records.is_empty() {
            return Ok(());
        }
        // Validated by the caller (`append_issuances`). One statement
        // upserts the whole batch; it may not touch a row twice, so of a
        // serial given twice the last record wins, as when appended one
        // after the other.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            last.insert(r.serial.as_str(), i);
        }
        let batch: Vec<&IssuanceRecord> = records
            .iter()
            .enumerate()
            .filter(|(i, r)| last.get(r.serial.as_str()) == Some(i))
            .map(|(_, r)| r)
            .collect();
        let serials: Vec<&str> = batch.iter().map(|r| r.serial.as_str()).collect();
        let not_after: Vec<i64> = batch.iter().map(|r| r.not_after).collect();
        let json: Vec<Json<&IssuanceRecord>> = batch.iter().map(|r| Json(*r)).collect();
        let client = self.client(OP).await?;
        // Prepared once per connection: this runs for every signing call.
        let stmt = client
            .prepare_cached(
                "INSERT INTO issuances (serial, not_after, record)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::jsonb[])
                 ON CONFLICT (serial) DO UPDATE
                 SET not_after = excluded.not_after, record = excluded.record",
            )
            .await
            .map_err(StoreError::pg(OP))?;
        client
            .execute(&stmt, &[&serials, &not_after, &json])
            .await
            .map_err(StoreError::pg(OP))?;
        Ok(())
    }

    pub(super) async fn get_issuance_impl(
        &self,
        serial: &str,
    ) -> Result<Option<IssuanceRecord>, StoreError> {
        const OP: &str = "read an issuance record";
        let serial = serial.to_ascii_lowercase();
        let client = self.client(OP).await?;
        let row = client
            .query_opt("SELECT record FROM issuances WHERE serial = $1", &[&serial])
            .await
            .map_err(StoreError::pg(OP))?;
        row.map(|row| record(&row, 0, TABLE, &serial)).transpose()
    }

    pub(super) async fn prune_issuances_impl(&self, before: i64) -> Result<usize, StoreError> {
        const OP: &str = "prune issuance records";
        let _span = tracing::debug_span!("store.prune_issuances", before).entered();
        let client = self.client(OP).await?;
        let removed = client
            .execute("DELETE FROM issuances WHERE not_after < $1", &[&before])
            .await
            .map_err(StoreError::pg(OP))?;
        tracing::debug!(removed, "pruned expired issuance records");
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

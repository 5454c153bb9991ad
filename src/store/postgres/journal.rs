//! The CA journal: authority records, listed in the order they were made.

use tokio_postgres::types::Json;

use super::codec::{column, record};
use super::PostgresStore;
use crate::store::common::{check_authority, put_authority_span};
use crate::store::{AuthorityRecord, StoreError};

const TABLE: &str = "authorities";

fn decode(row: &tokio_postgres::Row) -> Result<AuthorityRecord, StoreError> {
    let id: String = column(row, 0, TABLE)?;
    record(row, 1, TABLE, &id)
}

impl PostgresStore {
    pub(super) async fn put_authority_impl(&self, rec: &AuthorityRecord) -> Result<(), StoreError> {
        const OP: &str = "write an authority record";
        let _span = put_authority_span(rec);
        check_authority(rec)?;
        let client = self.client(OP).await?;
        client
            .execute(
                "INSERT INTO authorities (id, created_at, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE
                 SET created_at = excluded.created_at, record = excluded.record",
                &[&rec.id, &rec.created_at, &Json(rec)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        Ok(())
    }

    pub(super) async fn list_authorities_impl(&self) -> Result<Vec<AuthorityRecord>, StoreError> {
        const OP: &str = "list authority records";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT id, record FROM authorities ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        rows.iter().map(decode).collect()
    }

    pub(super) async fn delete_authority_impl(
        &self,
        id: &str,
    ) -> Result<AuthorityRecord, StoreError> {
        const OP: &str = "delete an authority record";
        let _span = tracing::debug_span!("store.delete_authority", authority_id = id).entered();
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "DELETE FROM authorities WHERE id = $1 RETURNING id, record",
                &[&id],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "authority",
                id: id.to_owned(),
            })?;
        decode(&row)
    }
}

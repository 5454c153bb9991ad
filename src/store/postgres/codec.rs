//! Reading records out of rows, and the small query helpers every record
//! family shares.
//!
//! Records are JSON (`jsonb`) in the serde shape the sled store uses. A
//! value that does not decode is reported as `Corrupt` with its table and
//! key, never a panic.

use serde::de::DeserializeOwned;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::store::StoreError;

/// Decodes the JSON record in column `col` of `row` (from `table`, at `key`).
pub(super) fn record<T: DeserializeOwned>(
    row: &Row,
    col: usize,
    table: &'static str,
    key: &str,
) -> Result<T, StoreError> {
    row.try_get::<_, Json<T>>(col)
        .map(|Json(value)| value)
        .map_err(|e| StoreError::Corrupt {
            tree: table,
            key: key.to_owned(),
            reason: e.to_string(),
        })
}

/// Column `col` of `row` as a plain value; a type mismatch is `Corrupt`.
pub(super) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    col: usize,
    table: &'static str,
) -> Result<T, StoreError> {
    row.try_get(col).map_err(|e| StoreError::Corrupt {
        tree: table,
        key: String::new(),
        reason: e.to_string(),
    })
}

/// Whether `e` is a violation of the unique constraint or index `name`.
pub(super) fn violates(e: &tokio_postgres::Error, name: &str) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some(name)
}

/// A page limit as SQL wants it: one more than the page size, so that the
/// extra row tells whether another page follows.
pub(super) fn limit_plus_one(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1)
}

/// Splits `rows` (at most `size + 1`) into a page: the token is the key of
/// the last item when another row followed.
pub(super) fn into_page<T>(
    mut items: Vec<T>,
    size: usize,
    key: impl Fn(&T) -> String,
) -> crate::store::Page<T> {
    let more = items.len() > size;
    items.truncate(size);
    let next_token = if more { items.last().map(key) } else { None };
    crate::store::Page { items, next_token }
}

impl PostgresStore {
    /// `SELECT count(*)` of a table (its name is one of ours, never input).
    pub(super) async fn count(
        &self,
        table: &'static str,
        op: &'static str,
    ) -> Result<u64, StoreError> {
        let client = self.client(op).await?;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(StoreError::pg(op))?;
        let n: i64 = column(&row, 0, table)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

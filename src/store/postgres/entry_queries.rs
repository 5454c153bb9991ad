//! Reading registration entries: filtered, paged listings (the filter is
//! evaluated by PostgreSQL, on its indexes) and the lookups by parent and by
//! selector.

use tokio_postgres::types::ToSql;

use super::codec::{column, into_page, limit_plus_one, record};
use super::PostgresStore;
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::SpiffeId;
use crate::store::common::page_size;
use crate::store::{EntryFilter, Page, PageRequest, SelectorMatch, StoreError};

const TABLE: &str = "entries";

/// Decodes `id, record` rows.
fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<RegistrationEntry>, StoreError> {
    rows.iter()
        .map(|row| {
            let id: String = column(row, 0, TABLE)?;
            record(row, 1, TABLE, &id)
        })
        .collect()
}

impl PostgresStore {
    pub(super) async fn get_entry_impl(
        &self,
        id: &str,
    ) -> Result<Option<RegistrationEntry>, StoreError> {
        let rows = self
            .entry_query(
                "read a registration entry",
                "SELECT id, record FROM entries WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(decode_rows(&rows)?.pop())
    }

    /// One query for a batch of ids (see
    /// [`crate::store::DataStore::get_entries`]), on the primary key.
    pub(super) async fn get_entries_impl(
        &self,
        ids: &[String],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.entries_where_any("read registration entries", "id", &ids)
            .await
    }

    pub(super) async fn list_entries_impl(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError> {
        let size = page_size(page);
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let add = |params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
                   value: Box<dyn ToSql + Sync + Send>| {
            params.push(value);
            format!("${}", params.len())
        };
        if let Some(token) = &page.token {
            let p = add(&mut params, Box::new(token.clone()));
            conditions.push(format!("id > {p}"));
        }
        if let Some(id) = &filter.by_spiffe_id {
            let p = add(&mut params, Box::new(id.as_str().to_owned()));
            conditions.push(format!("spiffe_id = {p}"));
        }
        if let Some(parent) = &filter.by_parent_id {
            let p = add(&mut params, Box::new(parent.as_str().to_owned()));
            conditions.push(format!("parent_id = {p}"));
        }
        if let Some((selectors, how)) = &filter.by_selectors {
            let given: Vec<String> = selectors.iter().map(|s| s.to_string()).collect();
            let p = add(&mut params, Box::new(given));
            // Set relations on the deduplicated selector column (GIN index).
            conditions.push(match how {
                SelectorMatch::Exact => format!("(selectors @> {p} AND selectors <@ {p})"),
                SelectorMatch::Subset => format!("selectors <@ {p}"),
                SelectorMatch::Superset => format!("selectors @> {p}"),
                SelectorMatch::Any => format!("selectors && {p}"),
            });
        }
        let limit = add(&mut params, Box::new(limit_plus_one(size)));
        let mut sql = String::from("SELECT id, record FROM entries");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self
            .entry_query("list registration entries", &sql, &refs)
            .await?;
        Ok(into_page(decode_rows(&rows)?, size, |e| e.id.clone()))
    }

    pub(super) async fn entries_by_parent_impl(
        &self,
        parent: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let rows = self
            .entry_query(
                "list registration entries by parent",
                "SELECT id, record FROM entries WHERE parent_id = $1 ORDER BY id",
                &[&parent.as_str()],
            )
            .await?;
        decode_rows(&rows)
    }

    /// One query for a whole nesting level (see
    /// [`crate::store::DataStore::entries_by_parents`]), on the parent index.
    pub(super) async fn entries_by_parents_impl(
        &self,
        parents: &[SpiffeId],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let parents: Vec<&str> = parents.iter().map(SpiffeId::as_str).collect();
        self.entries_where_any(
            "list registration entries by parents",
            "parent_id",
            &parents,
        )
        .await
    }

    /// The entries whose `column` (one of ours, never caller input) is one
    /// of `values`, in one query; none asked, none read.
    async fn entries_where_any(
        &self,
        op: &'static str,
        column: &'static str,
        values: &[&str],
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT id, record FROM entries WHERE {column} = ANY($1)");
        let rows = self.entry_query(op, &sql, &[&values]).await?;
        decode_rows(&rows)
    }

    pub(super) async fn entries_by_selector_impl(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let one = vec![selector.to_string()];
        let rows = self
            .entry_query(
                "list registration entries by selector",
                "SELECT id, record FROM entries WHERE selectors @> $1 ORDER BY id",
                &[&one],
            )
            .await?;
        decode_rows(&rows)
    }

    async fn entry_query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client(op).await?;
        // Each connection prepares a statement once (the filtered listing
        // has a handful of shapes), not once per call.
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(StoreError::pg(op))?;
        client
            .query(&stmt, params)
            .await
            .map_err(StoreError::pg(op))
    }
}

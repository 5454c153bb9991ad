//! Writing registration entries. The `entries` table enforces both rules
//! of the trait: a unique id (primary key) and no two "similar" entries
//! (unique `similar_digest`), so concurrent writers on any number of
//! servers cannot break them.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::Json;

use super::codec::{column, record, violates};
use super::PostgresStore;
use crate::registration::RegistrationEntry;
use crate::store::common::{log_created, new_entry, similar_key};
use crate::store::StoreError;

const TABLE: &str = "entries";
const KIND: &str = "registration entry";
/// The `AlreadyExists` kind when another entry has the same SPIFFE ID,
/// parent ID and selector set (SPIRE calls these "similar" entries).
const SIMILAR_KIND: &str = "registration entry with the same SPIFFE ID, parent ID and selectors";
const SIMILAR_CONSTRAINT: &str = "entries_similar";

/// The columns of an entry besides its record.
pub(super) struct Columns {
    digest: Vec<u8>,
    selectors: Vec<String>,
}

/// SHA-256 of the entry's similarity key (fixed size, so the unique index
/// holds any number of selectors), and its deduplicated selector set.
pub(super) fn columns(entry: &RegistrationEntry) -> Columns {
    let digest = ring::digest::digest(&ring::digest::SHA256, &similar_key(entry));
    Columns {
        digest: digest.as_ref().to_vec(),
        selectors: entry.selector_set().iter().map(|s| s.to_string()).collect(),
    }
}

fn prepare(entry: RegistrationEntry) -> Result<(RegistrationEntry, Columns), StoreError> {
    let entry = new_entry(entry)?;
    let cols = columns(&entry);
    Ok((entry, cols))
}

/// Inserts the rows in request order, skipping any that would break a
/// constraint; returns the (id, digest) of each row inserted.
const INSERT_BATCH: &str = "
INSERT INTO entries (id, spiffe_id, parent_id, selectors, similar_digest, expires_at, revision, record)
SELECT t.id, t.spiffe_id, t.parent_id, ARRAY(SELECT jsonb_array_elements_text(t.sels)),
       t.digest, t.expires_at, t.revision, t.record
FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::int8[], $7::int8[], $8::jsonb[])
     WITH ORDINALITY AS t(id, spiffe_id, parent_id, sels, digest, expires_at, revision, record, ord)
ORDER BY t.ord
ON CONFLICT DO NOTHING
RETURNING id, similar_digest";

/// Rows inserted per statement of a batch (all in one transaction).
const CHUNK: usize = 5000;

impl PostgresStore {
    pub(super) async fn create_entries_impl(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        const OP: &str = "create registration entries";
        let _span = tracing::debug_span!("store.create_entries", count = entries.len()).entered();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut results: Vec<Result<(RegistrationEntry, Columns), StoreError>> =
            entries.into_iter().map(prepare).collect();
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(StoreError::pg(OP))?;
        // Entries still to insert; a conflict whose owner vanished before we
        // could name it (deleted concurrently) is simply tried again.
        let mut pending: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        let mut failures: HashMap<usize, StoreError> = HashMap::new();
        while !pending.is_empty() {
            let mut inserted: HashSet<(String, Vec<u8>)> = HashSet::new();
            for chunk in pending.chunks(CHUNK) {
                let rows: Vec<&(RegistrationEntry, Columns)> = chunk
                    .iter()
                    .filter_map(|&i| results[i].as_ref().ok())
                    .collect();
                inserted.extend(insert_rows(&tx, &rows).await?);
            }
            // The first request of each (id, digest) that was inserted is
            // the one that won: rows went in in request order.
            let mut lost = Vec::new();
            for &i in &pending {
                if let Ok((e, c)) = &results[i] {
                    if !inserted.remove(&(e.id.clone(), c.digest.clone())) {
                        lost.push(i);
                    }
                }
            }
            pending = self
                .name_conflicts(&tx, &results, lost, &mut failures)
                .await?;
        }
        tx.commit().await.map_err(StoreError::pg(OP))?;
        for (i, e) in failures {
            results[i] = Err(e);
        }
        let results: Vec<_> = results.into_iter().map(|r| r.map(|(e, _)| e)).collect();
        log_created(&results);
        Ok(results)
    }

    /// Names the entry each of `lost` conflicted with (its id first, as the
    /// sled store checks); returns those whose conflict has gone.
    async fn name_conflicts(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        results: &[Result<(RegistrationEntry, Columns), StoreError>],
        lost: Vec<usize>,
        failures: &mut HashMap<usize, StoreError>,
    ) -> Result<Vec<usize>, StoreError> {
        const OP: &str = "create registration entries";
        if lost.is_empty() {
            return Ok(lost);
        }
        let ids: Vec<&str> = lost
            .iter()
            .filter_map(|&i| results[i].as_ref().ok())
            .map(|(e, _)| e.id.as_str())
            .collect();
        let digests: Vec<&[u8]> = lost
            .iter()
            .filter_map(|&i| results[i].as_ref().ok())
            .map(|(_, c)| c.digest.as_slice())
            .collect();
        let rows = tx
            .query(
                "SELECT id, similar_digest FROM entries WHERE id = ANY($1) OR similar_digest = ANY($2)",
                &[&ids, &digests],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let mut by_id = HashSet::new();
        let mut by_digest = HashMap::new();
        for row in rows {
            let id: String = column(&row, 0, TABLE)?;
            let digest: Vec<u8> = column(&row, 1, TABLE)?;
            by_id.insert(id.clone());
            by_digest.insert(digest, id);
        }
        let mut again = Vec::new();
        for i in lost {
            let Ok((e, c)) = &results[i] else { continue };
            if by_id.contains(&e.id) {
                failures.insert(
                    i,
                    StoreError::AlreadyExists {
                        kind: KIND,
                        id: e.id.clone(),
                    },
                );
            } else if let Some(owner) = by_digest.get(&c.digest) {
                failures.insert(
                    i,
                    StoreError::AlreadyExists {
                        kind: SIMILAR_KIND,
                        id: owner.clone(),
                    },
                );
            } else {
                again.push(i);
            }
        }
        Ok(again)
    }

    pub(super) async fn update_entry_impl(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        const OP: &str = "update a registration entry";
        let _span = tracing::debug_span!("store.update_entry", entry_id = %entry.id).entered();
        entry.validate()?;
        let cols = columns(&entry);
        let mut client = self.client(OP).await?;
        loop {
            let tx = client.transaction().await.map_err(StoreError::pg(OP))?;
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM entries WHERE id = $1 FOR UPDATE",
                    &[&entry.id],
                )
                .await
                .map_err(StoreError::pg(OP))?
            else {
                return Err(StoreError::NotFound {
                    kind: KIND,
                    id: entry.id.clone(),
                });
            };
            let old: RegistrationEntry = record(&row, 0, TABLE, &entry.id)?;
            if let Some(owner) = tx
                .query_opt(
                    "SELECT id FROM entries WHERE similar_digest = $1 AND id <> $2",
                    &[&cols.digest, &entry.id],
                )
                .await
                .map_err(StoreError::pg(OP))?
            {
                return Err(StoreError::AlreadyExists {
                    kind: SIMILAR_KIND,
                    id: column(&owner, 0, TABLE)?,
                });
            }
            let mut new = entry.clone();
            new.revision = old.revision.saturating_add(1);
            new.created_at = old.created_at;
            let written = tx
                .execute(
                    "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors = $4,
                         similar_digest = $5, expires_at = $6, revision = $7, record = $8
                     WHERE id = $1",
                    &[
                        &new.id,
                        &new.spiffe_id.as_str(),
                        &new.parent_id.as_str(),
                        &cols.selectors,
                        &cols.digest,
                        &new.expires_at,
                        &revision(new.revision),
                        &Json(&new),
                    ],
                )
                .await;
            match written {
                // A similar entry committed after our check: look again.
                Err(e) if violates(&e, SIMILAR_CONSTRAINT) => continue,
                Err(e) => return Err(StoreError::pg(OP)(e)),
                Ok(_) => {}
            }
            tx.commit().await.map_err(StoreError::pg(OP))?;
            tracing::debug!(revision = new.revision, "updated registration entry");
            return Ok(new);
        }
    }

    pub(super) async fn delete_entries_impl(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        const OP: &str = "delete registration entries";
        let _span = tracing::debug_span!("store.delete_entries", count = ids.len()).entered();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "DELETE FROM entries WHERE id = ANY($1) RETURNING id, record",
                &[&ids],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let mut deleted: HashMap<String, Result<RegistrationEntry, StoreError>> = HashMap::new();
        for row in rows {
            let id: String = column(&row, 0, TABLE)?;
            let entry = record(&row, 1, TABLE, &id);
            deleted.insert(id, entry);
        }
        // A repeated id is deleted once; its later mentions are NotFound.
        Ok(ids
            .iter()
            .map(|id| {
                deleted.remove(id).unwrap_or_else(|| {
                    Err(StoreError::NotFound {
                        kind: KIND,
                        id: id.clone(),
                    })
                })
            })
            .collect())
    }

    pub(super) async fn prune_expired_entries_impl(
        &self,
        now: i64,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        const OP: &str = "prune expired registration entries";
        let _span = tracing::debug_span!("store.prune_expired_entries", now).entered();
        let client = self.client(OP).await?;
        // `entry_expired`: an expiry of 0 never expires.
        let rows = client
            .query(
                "DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <> 0
                     AND expires_at <= $1 RETURNING id, record",
                &[&now],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let removed = rows
            .iter()
            .map(|row| record(row, 1, TABLE, &column::<String>(row, 0, TABLE)?))
            .collect::<Result<Vec<RegistrationEntry>, _>>()?;
        tracing::debug!(
            removed = removed.len(),
            "pruned expired registration entries"
        );
        Ok(removed)
    }
}

/// Inserts `rows` as they are (revision included) in request order,
/// skipping any that would break a constraint; the (id, digest) of each row
/// inserted.
pub(super) async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[&(RegistrationEntry, Columns)],
) -> Result<HashSet<(String, Vec<u8>)>, StoreError> {
    const OP: &str = "insert registration entries";
    let ids: Vec<&str> = rows.iter().map(|(e, _)| e.id.as_str()).collect();
    let spiffe: Vec<&str> = rows.iter().map(|(e, _)| e.spiffe_id.as_str()).collect();
    let parent: Vec<&str> = rows.iter().map(|(e, _)| e.parent_id.as_str()).collect();
    let sels: Vec<Json<&Vec<String>>> = rows.iter().map(|(_, c)| Json(&c.selectors)).collect();
    let digests: Vec<&[u8]> = rows.iter().map(|(_, c)| c.digest.as_slice()).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|(e, _)| e.expires_at).collect();
    let revisions: Vec<i64> = rows.iter().map(|(e, _)| revision(e.revision)).collect();
    let records: Vec<Json<&RegistrationEntry>> = rows.iter().map(|(e, _)| Json(e)).collect();
    let stmt = tx
        .prepare_cached(INSERT_BATCH)
        .await
        .map_err(StoreError::pg(OP))?;
    let done = tx
        .query(
            &stmt,
            &[
                &ids, &spiffe, &parent, &sels, &digests, &expires, &revisions, &records,
            ],
        )
        .await
        .map_err(StoreError::pg(OP))?;
    done.iter()
        .map(|row| Ok((column(row, 0, TABLE)?, column(row, 1, TABLE)?)))
        .collect()
}

/// A revision as PostgreSQL's `bigint` holds it (revisions stay far below
/// 2^63; a larger one is clamped rather than wrapped).
pub(super) fn revision(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

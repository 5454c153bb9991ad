//! The batch RPCs of the Entries service: create, update and delete many
//! entries in one call. Each item is checked on its own and answers with
//! its own status, in request order; what passes the checks goes to the
//! store in one call (one transaction, one flush), whatever its number.

use tonic::Status;

use super::super::convert::{
    entry_to_proto, item_status, ok_status, store_status, store_status_or,
};
use super::{not_found, EntriesApi};
use crate::clock::now_unix;
use crate::proto::admin;
use crate::registration::RegistrationEntry;
use crate::server::authorized::EntryChanges;
use crate::server::state::ServerEvent;
use crate::server::validate::{validate_entry, ValidationError};
use crate::store::StoreError;

/// One item's outcome: the entry as stored, or the refusal with the entry
/// to show beside it (the one a duplicate duplicates).
type Outcome = Result<RegistrationEntry, (Status, Option<Box<RegistrationEntry>>)>;

impl EntriesApi {
    pub(super) async fn batch_create(
        &self,
        entries: Vec<admin::Entry>,
    ) -> Result<admin::BatchCreateEntryResponse, Status> {
        let now = now_unix();
        let mut checked = self.validated(&entries, false).await?;
        for record in checked.iter_mut().flatten() {
            record.created_at = now;
        }
        let (checked, valid) = split_valid(checked);
        let stored = self
            .state
            .with_store(move |store| {
                let results = store.create_entries(valid)?;
                // A duplicate answers with the entry it duplicates. The
                // entries are committed by now: a failed lookup only leaves
                // the existing entry out.
                Ok(results
                    .into_iter()
                    .map(|result| {
                        result.map_err(|e| {
                            let existing = match &e {
                                StoreError::AlreadyExists { id, .. } => {
                                    store.get_entry(id).ok().flatten().map(Box::new)
                                }
                                _ => None,
                            };
                            (store_status(e), existing)
                        })
                    })
                    .collect::<Vec<Outcome>>())
            })
            .await
            .map_err(store_status)?;
        let outcomes = in_request_order(checked, stored, "entries")?
            .into_iter()
            .map(|o| o.unwrap_or_else(|refused| Err((refused, None))))
            .collect();
        let results = self.entry_results("create", outcomes);
        Ok(admin::BatchCreateEntryResponse { results })
    }

    pub(super) async fn batch_update(
        &self,
        entries: Vec<admin::Entry>,
    ) -> Result<admin::BatchUpdateEntryResponse, Status> {
        let checked = self.validated(&entries, true).await?;
        let outcomes = self
            .state
            .with_store(move |store| {
                Ok(checked
                    .into_iter()
                    .map(|c| {
                        let record = c.map_err(|status| (status, None))?;
                        let id = record.id.clone();
                        store
                            .update_entry(record)
                            .map_err(|e| (store_status_or(e, || not_found(&id)), None))
                    })
                    .collect::<Vec<Outcome>>())
            })
            .await
            .map_err(store_status)?;
        let results = self.entry_results("update", outcomes);
        Ok(admin::BatchUpdateEntryResponse { results })
    }

    pub(super) async fn batch_delete(
        &self,
        ids: Vec<String>,
    ) -> Result<admin::BatchDeleteEntryResponse, Status> {
        let checked = ids
            .iter()
            .map(|id| match id.is_empty() {
                true => Err(Status::invalid_argument(
                    "ids: an entry id must not be empty",
                )),
                false => Ok(id.clone()),
            })
            .collect();
        let (checked, wanted) = split_valid(checked);
        let deleted = self
            .state
            .with_store(move |store| store.delete_entries(&wanted))
            .await
            .map_err(store_status)?;
        let outcomes = in_request_order(checked, deleted, "ids")?;
        let mut count = 0usize;
        let mut changes = EntryChanges::default();
        let results: Vec<_> = ids
            .into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| {
                let status = match outcome {
                    Ok(Ok(deleted)) => {
                        count += 1;
                        changes.record(&deleted);
                        tracing::debug!(entry_id = %id, "deleted entry");
                        Status::ok("")
                    }
                    Ok(Err(StoreError::NotFound { .. })) => not_found(&id),
                    Ok(Err(e)) => store_status(e),
                    Err(refused) => refused,
                };
                admin::DeleteEntryResult {
                    status: Some(item_status(&status)),
                    id,
                }
            })
            .collect();
        self.finish_batch("delete", changes, count, results.len());
        Ok(admin::BatchDeleteEntryResponse { results })
    }

    /// Checks every entry of a batch; `need_id` for updates, which name the
    /// entry they replace.
    async fn validated(
        &self,
        entries: &[admin::Entry],
        need_id: bool,
    ) -> Result<Vec<Result<RegistrationEntry, Status>>, Status> {
        let known = self.known_bundles(entries).await?;
        let td = &self.state.trust_domain;
        Ok(entries
            .iter()
            .map(|entry| {
                if need_id && entry.id.is_empty() {
                    return Err(ValidationError::new(
                        "id",
                        "must not be empty; name the entry to replace",
                    ));
                }
                validate_entry(td, entry, &known)
            })
            .zip(entries)
            .map(|(checked, entry)| {
                checked.map_err(|e| {
                    tracing::debug!(spiffe_id = %entry.spiffe_id, error = %e, "refused entry");
                    Status::from(e)
                })
            })
            .collect())
    }

    /// The per-item results of a create or update batch, counted.
    fn entry_results(&self, op: &str, outcomes: Vec<Outcome>) -> Vec<admin::EntryResult> {
        let mut succeeded = 0usize;
        let mut changes = EntryChanges::default();
        let results: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(entry) => {
                    succeeded += 1;
                    changes.record(&entry);
                    tracing::debug!(
                        entry_id = %entry.id,
                        spiffe_id = %entry.spiffe_id,
                        revision = entry.revision,
                        "{op}d entry"
                    );
                    admin::EntryResult {
                        status: Some(ok_status()),
                        entry: Some(entry_to_proto(&entry)),
                    }
                }
                Err((status, shown)) => admin::EntryResult {
                    status: Some(item_status(&status)),
                    entry: shown.as_deref().map(entry_to_proto),
                },
            })
            .collect();
        self.finish_batch(op, changes, succeeded, results.len());
        results
    }

    /// Tells the agents whose sets the batch touched, and logs its tally.
    fn finish_batch(&self, op: &str, changes: EntryChanges, succeeded: usize, total: usize) {
        if !changes.is_empty() {
            self.state
                .publish(ServerEvent::EntriesWritten(std::sync::Arc::new(changes)));
        }
        tracing::info!(succeeded, failed = total - succeeded, "batch {op} entries");
    }
}

/// The items that passed the checks, apart; the refusals stay in place.
fn split_valid<T>(checked: Vec<Result<T, Status>>) -> (Vec<Option<Status>>, Vec<T>) {
    let mut slots = Vec::with_capacity(checked.len());
    let mut valid = Vec::new();
    for c in checked {
        match c {
            Ok(item) => {
                valid.push(item);
                slots.push(None);
            }
            Err(status) => slots.push(Some(status)),
        }
    }
    (slots, valid)
}

/// The store's answers for the valid items put back among the refusals,
/// in request order.
fn in_request_order<A>(
    slots: Vec<Option<Status>>,
    answers: Vec<A>,
    sent: &str,
) -> Result<Vec<Result<A, Status>>, Status> {
    let mut answers = answers.into_iter();
    slots
        .into_iter()
        .map(|slot| match slot {
            Some(refused) => Ok(Err(refused)),
            None => answers.next().map(Ok).ok_or_else(|| {
                Status::internal(format!(
                    "the datastore answered fewer results than {sent} sent"
                ))
            }),
        })
        .collect()
}

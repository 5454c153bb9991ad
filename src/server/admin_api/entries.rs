//! The Entries service: create, update, delete, get, list and count
//! registration entries.

use crate::clock::now_unix;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::convert::{entry_to_proto, item_status, ok_status, store_status};
use super::page_request;
use crate::proto::admin::{self, entries_server::Entries};
use crate::registration::RegistrationEntry;
use crate::server::state::{ServerEvent, ServerState};
use crate::server::validate::{self, validate_entry, ValidationError};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::store::{EntryFilter, SelectorMatch, StoreError};

/// Serves the Entries service.
pub(super) struct EntriesApi {
    state: Arc<ServerState>,
}

impl EntriesApi {
    pub(super) fn new(state: Arc<ServerState>) -> Self {
        EntriesApi { state }
    }

    /// The trust domains `federates_with` may name; read only when some
    /// entry of the batch names one.
    async fn known_bundles(&self, entries: &[admin::Entry]) -> Result<Vec<TrustDomain>, Status> {
        if entries.iter().all(|e| e.federates_with.is_empty()) {
            return Ok(Vec::new());
        }
        let bundles = self
            .state
            .with_store(|s| s.list_bundles())
            .await
            .map_err(store_status)?;
        Ok(bundles.into_iter().map(|b| b.trust_domain).collect())
    }

    async fn batch_create(
        &self,
        entries: Vec<admin::Entry>,
    ) -> Result<admin::BatchCreateEntryResponse, Status> {
        let known = self.known_bundles(&entries).await?;
        let td = &self.state.trust_domain;
        let now = now_unix();
        // Validate everything first; the valid ones go to the store in one
        // call (one transaction, one flush), whatever their number.
        let mut invalid: Vec<Option<Status>> = Vec::with_capacity(entries.len());
        let mut valid = Vec::new();
        for entry in &entries {
            match validate_entry(td, entry, &known) {
                Ok(mut record) => {
                    record.created_at = now;
                    valid.push(record);
                    invalid.push(None);
                }
                Err(e) => {
                    tracing::debug!(spiffe_id = %entry.spiffe_id, error = %e, "refused entry");
                    invalid.push(Some(e.into()));
                }
            }
        }
        let stored = self
            .state
            .with_store(move |store| {
                let results = store.create_entries(valid)?;
                // A duplicate answers with the entry it duplicates.
                let mut out = Vec::with_capacity(results.len());
                for result in results {
                    out.push(match result {
                        Ok(entry) => Ok(entry),
                        Err(e) => {
                            // The entries are committed by now: a failed
                            // lookup only leaves the existing entry out.
                            let existing = match &e {
                                StoreError::AlreadyExists { id, .. } => {
                                    store.get_entry(id).ok().flatten()
                                }
                                _ => None,
                            };
                            Err((e, existing))
                        }
                    });
                }
                Ok(out)
            })
            .await
            .map_err(store_status)?;

        let mut stored = stored.into_iter();
        let mut created = 0usize;
        let mut results = Vec::with_capacity(entries.len());
        for slot in invalid {
            let result = match slot {
                Some(status) => admin::EntryResult {
                    status: Some(item_status(&status)),
                    entry: None,
                },
                None => match stored.next() {
                    Some(Ok(entry)) => {
                        created += 1;
                        tracing::debug!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, "created entry");
                        admin::EntryResult {
                            status: Some(ok_status()),
                            entry: Some(entry_to_proto(&entry)),
                        }
                    }
                    Some(Err((e, existing))) => admin::EntryResult {
                        status: Some(item_status(&store_status(e))),
                        entry: existing.as_ref().map(entry_to_proto),
                    },
                    None => {
                        return Err(Status::internal(
                            "the datastore answered fewer results than entries sent",
                        ))
                    }
                },
            };
            results.push(result);
        }
        if created > 0 {
            self.state.publish(ServerEvent::EntriesChanged);
        }
        tracing::info!(
            created,
            failed = results.len() - created,
            "batch create entries"
        );
        Ok(admin::BatchCreateEntryResponse { results })
    }

    async fn batch_update(
        &self,
        entries: Vec<admin::Entry>,
    ) -> Result<admin::BatchUpdateEntryResponse, Status> {
        let known = self.known_bundles(&entries).await?;
        let td = &self.state.trust_domain;
        let checked: Vec<Result<RegistrationEntry, Status>> = entries
            .iter()
            .map(|entry| {
                if entry.id.is_empty() {
                    return Err(ValidationError::new(
                        "id",
                        "must not be empty; name the entry to replace",
                    )
                    .into());
                }
                validate_entry(td, entry, &known).map_err(Status::from)
            })
            .collect();
        let results = self
            .state
            .with_store(move |store| {
                Ok(checked
                    .into_iter()
                    .map(|c| {
                        let record = c?;
                        let id = record.id.clone();
                        store.update_entry(record).map_err(|e| match e {
                            StoreError::NotFound { .. } => not_found(&id),
                            e => store_status(e),
                        })
                    })
                    .collect::<Vec<_>>())
            })
            .await
            .map_err(store_status)?;
        let mut updated = 0usize;
        let results: Vec<_> = results
            .into_iter()
            .map(|r| match r {
                Ok(entry) => {
                    updated += 1;
                    tracing::debug!(entry_id = %entry.id, revision = entry.revision, "updated entry");
                    admin::EntryResult {
                        status: Some(ok_status()),
                        entry: Some(entry_to_proto(&entry)),
                    }
                }
                Err(status) => admin::EntryResult {
                    status: Some(item_status(&status)),
                    entry: None,
                },
            })
            .collect();
        if updated > 0 {
            self.state.publish(ServerEvent::EntriesChanged);
        }
        tracing::info!(
            updated,
            failed = results.len() - updated,
            "batch update entries"
        );
        Ok(admin::BatchUpdateEntryResponse { results })
    }

    async fn batch_delete(
        &self,
        ids: Vec<String>,
    ) -> Result<admin::BatchDeleteEntryResponse, Status> {
        let wanted: Vec<String> = ids.iter().filter(|id| !id.is_empty()).cloned().collect();
        let deleted = self
            .state
            .with_store(move |store| store.delete_entries(&wanted))
            .await
            .map_err(store_status)?;
        let mut deleted = deleted.into_iter();
        let mut count = 0usize;
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let status = if id.is_empty() {
                Status::invalid_argument("ids: an entry id must not be empty")
            } else {
                match deleted.next() {
                    Some(Ok(_)) => {
                        count += 1;
                        tracing::debug!(entry_id = %id, "deleted entry");
                        Status::ok("")
                    }
                    Some(Err(StoreError::NotFound { .. })) => not_found(&id),
                    Some(Err(e)) => store_status(e),
                    None => {
                        return Err(Status::internal(
                            "the datastore answered fewer results than ids sent",
                        ))
                    }
                }
            };
            results.push(admin::DeleteEntryResult {
                status: Some(item_status(&status)),
                id,
            });
        }
        if count > 0 {
            self.state.publish(ServerEvent::EntriesChanged);
        }
        tracing::info!(
            deleted = count,
            failed = results.len() - count,
            "batch delete entries"
        );
        Ok(admin::BatchDeleteEntryResponse { results })
    }

    async fn get(&self, id: String) -> Result<admin::Entry, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("id: must not be empty"));
        }
        let lookup = id.clone();
        let entry = self
            .state
            .with_store(move |store| store.get_entry(&lookup))
            .await
            .map_err(store_status)?;
        entry
            .map(|e| entry_to_proto(&e))
            .ok_or_else(|| not_found(&id))
    }

    async fn list(
        &self,
        req: admin::ListEntriesRequest,
    ) -> Result<admin::ListEntriesResponse, Status> {
        let page = page_request(req.page_size, &req.page_token)?;
        let filter = entry_filter(req.filter)?;
        let page = self
            .state
            .with_store(move |store| store.list_entries(&filter, &page))
            .await
            .map_err(store_status)?;
        Ok(admin::ListEntriesResponse {
            entries: page.items.iter().map(entry_to_proto).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        })
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("entry {id} not found"))
}

/// The store filter of a list request; any ID is accepted (a filter on
/// another trust domain simply matches nothing) but must parse.
fn entry_filter(
    filter: Option<admin::list_entries_request::Filter>,
) -> Result<EntryFilter, ValidationError> {
    let Some(f) = filter else {
        return Ok(EntryFilter::default());
    };
    let id = |field: &str, value: &str| -> Result<Option<SpiffeId>, ValidationError> {
        if value.is_empty() {
            return Ok(None);
        }
        SpiffeId::parse(value).map(Some).map_err(|e| {
            ValidationError::new(field, format!("{value:?} is not a valid SPIFFE ID: {e}"))
        })
    };
    let by_selectors = match f.by_selectors {
        None => None,
        Some(m) => {
            if m.selectors.is_empty() {
                return Err(ValidationError::new(
                    "filter.by_selectors.selectors",
                    "must contain at least one selector",
                ));
            }
            let selectors = m
                .selectors
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    validate::validate_selector(&format!("filter.by_selectors.selectors[{i}]"), s)
                })
                .collect::<Result<Vec<_>, _>>()?;
            use admin::selector_match::MatchBehavior;
            let how = match MatchBehavior::try_from(m.r#match) {
                Ok(MatchBehavior::MatchExact) => SelectorMatch::Exact,
                Ok(MatchBehavior::MatchSubset) => SelectorMatch::Subset,
                Ok(MatchBehavior::MatchSuperset) => SelectorMatch::Superset,
                Ok(MatchBehavior::MatchAny) => SelectorMatch::Any,
                Err(_) => {
                    return Err(ValidationError::new(
                        "filter.by_selectors.match",
                        format!("{} is not a known match behavior (0-3)", m.r#match),
                    ))
                }
            };
            Some((selectors, how))
        }
    };
    Ok(EntryFilter {
        by_spiffe_id: id("filter.by_spiffe_id", &f.by_spiffe_id)?,
        by_parent_id: id("filter.by_parent_id", &f.by_parent_id)?,
        by_selectors,
    })
}

#[tonic::async_trait]
impl Entries for EntriesApi {
    async fn batch_create_entry(
        &self,
        request: Request<admin::BatchCreateEntryRequest>,
    ) -> Result<Response<admin::BatchCreateEntryResponse>, Status> {
        let entries = request.into_inner().entries;
        let span = tracing::info_span!(
            "admin.BatchCreateEntry",
            count = entries.len(),
            spiffe_id = entries.first().map(|e| e.spiffe_id.as_str()).unwrap_or("")
        );
        self.batch_create(entries)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn batch_update_entry(
        &self,
        request: Request<admin::BatchUpdateEntryRequest>,
    ) -> Result<Response<admin::BatchUpdateEntryResponse>, Status> {
        let entries = request.into_inner().entries;
        let span = tracing::info_span!(
            "admin.BatchUpdateEntry",
            count = entries.len(),
            entry_id = entries.first().map(|e| e.id.as_str()).unwrap_or("")
        );
        self.batch_update(entries)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn batch_delete_entry(
        &self,
        request: Request<admin::BatchDeleteEntryRequest>,
    ) -> Result<Response<admin::BatchDeleteEntryResponse>, Status> {
        let ids = request.into_inner().ids;
        let span = tracing::info_span!(
            "admin.BatchDeleteEntry",
            count = ids.len(),
            entry_id = ids.first().map(String::as_str).unwrap_or("")
        );
        self.batch_delete(ids)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn get_entry(
        &self,
        request: Request<admin::GetEntryRequest>,
    ) -> Result<Response<admin::Entry>, Status> {
        let id = request.into_inner().id;
        let span = tracing::info_span!("admin.GetEntry", entry_id = %id);
        self.get(id).instrument(span).await.map(Response::new)
    }

    async fn list_entries(
        &self,
        request: Request<admin::ListEntriesRequest>,
    ) -> Result<Response<admin::ListEntriesResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "admin.ListEntries",
            page_size = req.page_size,
            spiffe_id = req
                .filter
                .as_ref()
                .map(|f| f.by_spiffe_id.as_str())
                .unwrap_or(""),
            parent_id = req
                .filter
                .as_ref()
                .map(|f| f.by_parent_id.as_str())
                .unwrap_or("")
        );
        self.list(req).instrument(span).await.map(Response::new)
    }

    async fn count_entries(
        &self,
        _request: Request<admin::CountEntriesRequest>,
    ) -> Result<Response<admin::CountEntriesResponse>, Status> {
        let span = tracing::info_span!("admin.CountEntries");
        let count = self
            .state
            .with_store(|store| store.count_entries())
            .instrument(span)
            .await
            .map_err(store_status)?;
        Ok(Response::new(admin::CountEntriesResponse {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        }))
    }
}

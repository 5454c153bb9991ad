//! The Entries service: create, update, delete, get, list and count
//! registration entries. The batch RPCs are in `entries/batch.rs`, the
//! list filter in `entries/filter.rs`.

mod batch;
mod filter;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{entry_to_proto, store_status};
use super::page_request;
use crate::proto::admin::{self, entries_server::Entries};
use crate::server::state::ServerState;
use crate::spiffe::TrustDomain;

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
        let filter = filter::entry_filter(req.filter)?;
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

    async fn count(&self) -> Result<admin::CountEntriesResponse, Status> {
        let count = self
            .state
            .with_store(|store| store.count_entries())
            .await
            .map_err(store_status)?;
        Ok(admin::CountEntriesResponse {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        })
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("entry {id} not found"))
}

/// The first item of a batch, for the span (a batch is mostly about one).
fn first<'a, T>(items: &'a [T], field: impl Fn(&'a T) -> &'a str) -> &'a str {
    items.first().map(field).unwrap_or("")
}

/// A field of a list request's filter, for the span.
fn filter_field(
    req: &admin::ListEntriesRequest,
    field: impl Fn(&admin::list_entries_request::Filter) -> &str,
) -> &str {
    req.filter.as_ref().map(field).unwrap_or("")
}

#[tonic::async_trait]
impl Entries for EntriesApi {
    #[tracing::instrument(name = "admin.BatchCreateEntry", skip_all, fields(
        count = request.get_ref().entries.len(),
        spiffe_id = first(&request.get_ref().entries, |e| &e.spiffe_id)))]
    async fn batch_create_entry(
        &self,
        request: Request<admin::BatchCreateEntryRequest>,
    ) -> Result<Response<admin::BatchCreateEntryResponse>, Status> {
        let entries = request.into_inner().entries;
        self.batch_create(entries).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.BatchUpdateEntry", skip_all, fields(
        count = request.get_ref().entries.len(),
        entry_id = first(&request.get_ref().entries, |e| &e.id)))]
    async fn batch_update_entry(
        &self,
        request: Request<admin::BatchUpdateEntryRequest>,
    ) -> Result<Response<admin::BatchUpdateEntryResponse>, Status> {
        let entries = request.into_inner().entries;
        self.batch_update(entries).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.BatchDeleteEntry", skip_all, fields(
        count = request.get_ref().ids.len(),
        entry_id = first(&request.get_ref().ids, String::as_str)))]
    async fn batch_delete_entry(
        &self,
        request: Request<admin::BatchDeleteEntryRequest>,
    ) -> Result<Response<admin::BatchDeleteEntryResponse>, Status> {
        let ids = request.into_inner().ids;
        self.batch_delete(ids).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.GetEntry", skip_all, fields(
        entry_id = %request.get_ref().id))]
    async fn get_entry(
        &self,
        request: Request<admin::GetEntryRequest>,
    ) -> Result<Response<admin::Entry>, Status> {
        self.get(request.into_inner().id).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.ListEntries", skip_all, fields(
        page_size = request.get_ref().page_size,
        spiffe_id = filter_field(request.get_ref(), |f| &f.by_spiffe_id),
        parent_id = filter_field(request.get_ref(), |f| &f.by_parent_id)))]
    async fn list_entries(
        &self,
        request: Request<admin::ListEntriesRequest>,
    ) -> Result<Response<admin::ListEntriesResponse>, Status> {
        self.list(request.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.CountEntries", skip_all)]
    async fn count_entries(
        &self,
        _request: Request<admin::CountEntriesRequest>,
    ) -> Result<Response<admin::CountEntriesResponse>, Status> {
        self.count().await.map(Response::new)
    }
}

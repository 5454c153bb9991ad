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
use crate::proto::admin::{
    BatchCreateEntryRequest as CreateBatch, BatchCreateEntryResponse as CreateResults,
    BatchDeleteEntryRequest as DeleteBatch, BatchDeleteEntryResponse as DeleteResults,
    BatchUpdateEntryRequest as UpdateBatch, BatchUpdateEntryResponse as UpdateResults,
    CountEntriesRequest as CountReq, CountEntriesResponse, Entry, GetEntryRequest,
    ListEntriesRequest, ListEntriesResponse,
};
use crate::server::state::ServerState;
use crate::server::Rpc;
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
    async fn known_bundles(&self, entries: &[Entry]) -> Result<Vec<TrustDomain>, Status> {
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

    async fn get(&self, id: String) -> Result<Entry, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("id: must not be empty"));
        }
        let entry = self.state.lookup(&id, |s, id| s.get_entry(id)).await;
        let entry = entry.map_err(store_status)?;
        entry
            .map(|e| entry_to_proto(&e))
            .ok_or_else(|| not_found(&id))
    }

    async fn list(&self, req: ListEntriesRequest) -> Result<ListEntriesResponse, Status> {
        let page = page_request(req.page_size, &req.page_token)?;
        let filter = filter::entry_filter(req.filter)?;
        let page = self
            .state
            .with_store(move |store| store.list_entries(&filter, &page))
            .await
            .map_err(store_status)?;
        Ok(ListEntriesResponse {
            entries: page.items.iter().map(entry_to_proto).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        })
    }

    async fn count(&self) -> Result<CountEntriesResponse, Status> {
        let count = self
            .state
            .with_store(|store| store.count_entries())
            .await
            .map_err(store_status)?;
        Ok(CountEntriesResponse {
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
    req: &ListEntriesRequest,
    field: impl Fn(&admin::list_entries_request::Filter) -> &str,
) -> &str {
    req.filter.as_ref().map(field).unwrap_or("")
}

#[tonic::async_trait]
impl Entries for EntriesApi {
    #[tracing::instrument(name = "admin.BatchCreateEntry", skip_all, fields(
        count = req.get_ref().entries.len(),
        spiffe_id = first(&req.get_ref().entries, |e| &e.spiffe_id)))]
    async fn batch_create_entry(&self, req: Request<CreateBatch>) -> Rpc<CreateResults> {
        self.batch_create(req.into_inner().entries)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "admin.BatchUpdateEntry", skip_all, fields(
        count = req.get_ref().entries.len(),
        entry_id = first(&req.get_ref().entries, |e| &e.id)))]
    async fn batch_update_entry(&self, req: Request<UpdateBatch>) -> Rpc<UpdateResults> {
        self.batch_update(req.into_inner().entries)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "admin.BatchDeleteEntry", skip_all, fields(
        count = req.get_ref().ids.len(),
        entry_id = first(&req.get_ref().ids, String::as_str)))]
    async fn batch_delete_entry(&self, req: Request<DeleteBatch>) -> Rpc<DeleteResults> {
        let ids = req.into_inner().ids;
        self.batch_delete(ids).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.GetEntry", skip_all, fields(
        entry_id = %req.get_ref().id))]
    async fn get_entry(&self, req: Request<GetEntryRequest>) -> Rpc<Entry> {
        self.get(req.into_inner().id).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.ListEntries", skip_all, fields(
        page_size = req.get_ref().page_size,
        spiffe_id = filter_field(req.get_ref(), |f| &f.by_spiffe_id),
        parent_id = filter_field(req.get_ref(), |f| &f.by_parent_id)))]
    async fn list_entries(&self, req: Request<ListEntriesRequest>) -> Rpc<ListEntriesResponse> {
        self.list(req.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.CountEntries", skip_all)]
    async fn count_entries(&self, _req: Request<CountReq>) -> Rpc<CountEntriesResponse> {
        self.count().await.map(Response::new)
    }
}

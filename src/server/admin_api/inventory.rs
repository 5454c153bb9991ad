//! Everything the server holds, as its admin API lists it, taken
//! in-process: the same [`Inventory`] `herald check --socket` fetches over
//! the admin socket (`cli/check_live.rs`), for the dashboard, so that the
//! page and the CLI show the same records and the same findings.

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Status};

use super::agents::AgentsApi;
use super::authorities::AuthoritiesApi;
use super::entries::EntriesApi;
use crate::proto::admin::agents_server::Agents as _;
use crate::proto::admin::entries_server::Entries as _;
use crate::proto::admin::local_authority_server::LocalAuthority as _;
use crate::proto::admin::{ListAgentsRequest, ListEntriesRequest, ShowAuthoritiesRequest};
use crate::server::federation::RefresherHandle;
use crate::server::state::ServerState;
use crate::store::MAX_PAGE_SIZE;
use crate::vet::Inventory;

/// The page size of in-process lists: the largest the API allows.
pub(crate) const PAGE: i32 = MAX_PAGE_SIZE as i32;

/// Follows a paged list to its end: `page` gets the page at a token and
/// returns its items and the next token (empty at the end).
pub(crate) async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// Takes the inventory now (`now` is its time).
pub(crate) async fn inventory(
    state: &Arc<ServerState>,
    refresher: &RefresherHandle,
    now: i64,
) -> Result<Inventory, Status> {
    let entries_api = &EntriesApi::new(state.clone());
    let entries = all_pages(|page_token| async move {
        let req = ListEntriesRequest {
            filter: None,
            page_size: PAGE,
            page_token,
        };
        let page = entries_api.list_entries(Request::new(req)).await?;
        let page = page.into_inner();
        Ok((page.entries, page.next_page_token))
    })
    .await?;
    let agents_api = &AgentsApi::new(state.clone());
    let agents = all_pages(|page_token| async move {
        let req = ListAgentsRequest {
            page_size: PAGE,
            page_token,
        };
        let page = agents_api
            .list_agents(Request::new(req))
            .await?
            .into_inner();
        Ok((page.agents, page.next_page_token))
    })
    .await?;
    let authorities = AuthoritiesApi::new(state.clone())
        .show_authorities(Request::new(ShowAuthoritiesRequest {}))
        .await?
        .into_inner();
    let (relationships, federated_bundles) =
        crate::server::federation::admin::list_all(state, refresher).await?;
    Ok(Inventory {
        trust_domain: state.trust_domain.to_string(),
        entries,
        agents,
        federated_bundles,
        relationships,
        authorities,
        now,
    })
}

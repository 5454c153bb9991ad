//! The admin API of federation (`proto/herald/admin/v1/federation.proto`):
//! the `Federation` service manages relationships ([`relationships`]),
//! `FederatedBundles` the foreign bundles themselves ([`bundles`]). Like the
//! other admin services, this layer validates and translates (with the
//! admin API's shared conversions): every refusal is a status whose message
//! starts with the field at fault, and store calls run on the blocking pool.
//!
//! Writes take the refresher's write lock, so a refresh finishing at the
//! same moment cannot resurrect a bundle an operator just deleted. Every
//! change to relationships wakes the refresher; every change to a bundle
//! publishes [`crate::server::state::ServerEvent::BundleChanged`] for
//! agents.

mod bundles;
mod relationships;
mod validate;

use std::sync::Arc;

use tonic::service::Routes;
use tonic::Status;
use tracing::Instrument as _;

use super::refresher::RefresherHandle;
use crate::proto::admin;
use crate::proto::admin::federated_bundles_server::FederatedBundlesServer;
use crate::proto::admin::federation_server::FederationServer;
use crate::server::admin_api::convert::{item_status, ok_status};
use crate::server::state::ServerState;
use crate::spiffe::TrustDomain;
use crate::store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// The `Federation` and `FederatedBundles` services, to serve on the admin
/// socket beside the others (see [`add_federation_services`]).
pub fn federation_routes(state: Arc<ServerState>, refresher: RefresherHandle) -> Routes {
    add_services(None, state, refresher)
}

/// Adds the `Federation` and `FederatedBundles` services to `routes` (for
/// example the admin API's `admin_routes(state)`).
pub fn add_federation_services(
    routes: Routes,
    state: Arc<ServerState>,
    refresher: RefresherHandle,
) -> Routes {
    add_services(Some(routes), state, refresher)
}

fn add_services(
    routes: Option<Routes>,
    state: Arc<ServerState>,
    refresher: RefresherHandle,
) -> Routes {
    let federation = FederationServer::new(relationships::FederationApi::new(
        state.clone(),
        refresher.clone(),
    ));
    let routes = match routes {
        Some(routes) => routes.add_service(federation),
        None => Routes::new(federation),
    };
    routes.add_service(FederatedBundlesServer::new(
        bundles::FederatedBundlesApi::new(state, refresher),
    ))
}

/// Every relationship (with how its refreshes go) and every federated
/// bundle, as the two services list them: for the dashboard's in-process
/// inventory (`admin_api::inventory`).
pub(crate) async fn list_all(
    state: &Arc<ServerState>,
    refresher: &RefresherHandle,
) -> Result<(Vec<admin::FederationRelationship>, Vec<admin::Bundle>), Status> {
    use crate::proto::admin::federated_bundles_server::FederatedBundles as _;
    use crate::proto::admin::federation_server::Federation as _;
    use crate::server::admin_api::inventory::{all_pages, PAGE};
    use tonic::Request;

    let relationships_api = &relationships::FederationApi::new(state.clone(), refresher.clone());
    let relationships = all_pages(|page_token| async move {
        let req = admin::ListFederationRelationshipsRequest {
            page_size: PAGE,
            page_token,
        };
        let page = relationships_api
            .list_federation_relationships(Request::new(req))
            .await?
            .into_inner();
        Ok((page.federation_relationships, page.next_page_token))
    })
    .await?;
    let bundles_api = &bundles::FederatedBundlesApi::new(state.clone(), refresher.clone());
    let bundles = all_pages(|page_token| async move {
        let req = admin::ListFederatedBundlesRequest {
            page_size: PAGE,
            page_token,
        };
        let page = bundles_api
            .list_federated_bundles(Request::new(req))
            .await?
            .into_inner();
        Ok((page.bundles, page.next_page_token))
    })
    .await?;
    Ok((relationships, bundles))
}

/// A trust domain name from a request; the error names `field`.
fn parse_trust_domain(field: &str, name: &str) -> Result<TrustDomain, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: required")));
    }
    TrustDomain::new(name).map_err(|e| Status::invalid_argument(format!("{field}: {name:?}: {e}")))
}

/// The span of one item of a batch, inside the RPC's span.
fn item_span(trust_domain: &str) -> tracing::Span {
    tracing::info_span!("item", trust_domain = %trust_domain)
}

/// The per-name result of a batch delete.
trait DeleteResult {
    fn new(trust_domain: String, status: admin::Status) -> Self;
}

impl DeleteResult for admin::DeleteFederatedBundleResult {
    fn new(trust_domain: String, status: admin::Status) -> Self {
        Self {
            status: Some(status),
            trust_domain,
        }
    }
}

impl DeleteResult for admin::DeleteFederationRelationshipResult {
    fn new(trust_domain: String, status: admin::Status) -> Self {
        Self {
            status: Some(status),
            trust_domain,
        }
    }
}

/// Runs `delete` on each trust domain named in a batch, each in its own
/// span and all under the refresher's write lock; answers per name in
/// request order, and whether any was deleted.
async fn delete_each<R, F, Fut>(
    refresher: &RefresherHandle,
    names: Vec<String>,
    delete: F,
) -> (Vec<R>, bool)
where
    R: DeleteResult,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let _writes = refresher.lock_writes().await;
    let mut results = Vec::with_capacity(names.len());
    let mut deleted_any = false;
    for name in names {
        let deleted = delete(name.clone()).instrument(item_span(&name)).await;
        deleted_any |= deleted.is_ok();
        let status = deleted.map_or_else(|s| item_status(&s), |()| ok_status());
        results.push(R::new(name, status));
    }
    (results, deleted_any)
}

/// Whether any item of a batch succeeded (so that something changed).
fn any_ok<'a>(statuses: impl IntoIterator<Item = &'a Option<admin::Status>>) -> bool {
    statuses
        .into_iter()
        .flatten()
        .any(|s| s.code == tonic::Code::Ok as i32)
}

/// One page of `items` (sorted by `key`), after `token` (the last key of
/// the previous page). Returns the page and the next token, empty at the end.
fn page_of<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    page_size: i32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    let size = match usize::try_from(page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(n) if n <= MAX_PAGE_SIZE => n,
        _ => {
            return Err(Status::invalid_argument(format!(
                "page_size: {page_size} is out of range; use 0 (the default, {DEFAULT_PAGE_SIZE}) to {MAX_PAGE_SIZE}"
            )))
        }
    };
    if !token.is_empty() && TrustDomain::new(token).is_err() {
        return Err(Status::invalid_argument(
            "page_token: not a token this server returned",
        ));
    }
    items.sort_by_key(|i| key(i));
    let mut page: Vec<T> = items
        .into_iter()
        .filter(|i| token.is_empty() || key(i).as_str() > token)
        .take(size + 1)
        .collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(key).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((page, next))
}

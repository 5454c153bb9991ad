//! The `FederatedBundles` service: foreign trust domains' bundles, listed,
//! shown, set by hand and deleted. A bundle set by hand counts as the
//! latest until the next successful refresh of its relationship, if any
//! (SPIFFE.md §6). This server's own bundle is not managed here.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::{any_ok, delete_each, item_span, page_of, parse_trust_domain};
use crate::proto::admin::{self, federated_bundles_server::FederatedBundles};
use crate::proto::admin::{
    BatchDeleteFederatedBundleRequest as DeleteBatch,
    BatchDeleteFederatedBundleResponse as DeleteResults,
    BatchSetFederatedBundleRequest as SetBatch, BatchSetFederatedBundleResponse as SetResults,
    GetFederatedBundleRequest as GetReq, ListFederatedBundlesRequest as ListReq,
    ListFederatedBundlesResponse as ListResp,
};
use crate::server::admin_api::convert::{bundle_to_proto, item_status, ok_status, store_status};
use crate::server::federation::bundle_trust_domain_check;
use crate::server::federation::refresher::RefresherHandle;
use crate::server::state::{ServerEvent, ServerState};
use crate::server::Rpc;
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::StoreError;

/// Serves the `FederatedBundles` service.
pub(super) struct FederatedBundlesApi {
    state: Arc<ServerState>,
    refresher: RefresherHandle,
}

impl FederatedBundlesApi {
    pub(super) fn new(state: Arc<ServerState>, refresher: RefresherHandle) -> Self {
        FederatedBundlesApi { state, refresher }
    }

    /// A foreign trust domain from a request: valid and not our own.
    fn foreign(&self, field: &str, name: &str) -> Result<TrustDomain, Status> {
        let td = parse_trust_domain(field, name)?;
        if td == self.state.trust_domain {
            return Err(Status::invalid_argument(format!(
                "{field}: {td} is this server's own trust domain; its bundle is managed by the CA (`herald bundle show`)"
            )));
        }
        Ok(td)
    }

    async fn set_one(&self, item: &admin::Bundle) -> Result<Bundle, Status> {
        let td = self.foreign("trust_domain", &item.trust_domain)?;
        let bundle = Bundle::from_spiffe_json(td, item.spiffe_json.as_bytes()).map_err(|e| {
            Status::invalid_argument(format!("spiffe_json: not a SPIFFE bundle: {e}"))
        })?;
        bundle_trust_domain_check(&bundle)
            .map_err(|e| Status::invalid_argument(format!("spiffe_json: {e}")))?;
        let stored = bundle.clone();
        self.state
            .with_store(move |s| s.set_bundle(&stored))
            .await
            .map_err(store_status)?;
        tracing::info!(sequence = bundle.sequence, "federated bundle set by hand");
        Ok(bundle)
    }

    async fn delete_one(&self, name: &str) -> Result<(), Status> {
        let td = self.foreign("trust_domain", name)?;
        let lookup = td.clone();
        let outcome = self
            .state
            .with_store(move |s| {
                if s.get_federation_relationship(&lookup)?.is_some() {
                    return Ok(false);
                }
                s.delete_bundle(&lookup).map(|_| true)
            })
            .await;
        match outcome {
            Ok(true) => {
                tracing::info!("federated bundle deleted");
                Ok(())
            }
            Ok(false) => Err(Status::failed_precondition(format!(
                "trust_domain: {td} has a federation relationship that would fetch the bundle again; delete the relationship instead (`herald federation delete`)"
            ))),
            Err(StoreError::NotFound { .. }) => Err(no_bundle(&td)),
            Err(e) => Err(store_status(e)),
        }
    }
}

#[tonic::async_trait]
impl FederatedBundles for FederatedBundlesApi {
    #[tracing::instrument(name = "admin.ListFederatedBundles", skip_all)]
    async fn list_federated_bundles(&self, req: Request<ListReq>) -> Rpc<ListResp> {
        let req = req.into_inner();
        let own = self.state.trust_domain.clone();
        let all = self
            .state
            .with_store(|s| s.list_bundles())
            .await
            .map_err(store_status)?;
        let foreign: Vec<Bundle> = all.into_iter().filter(|b| b.trust_domain != own).collect();
        let key = |b: &Bundle| b.trust_domain.name().to_string();
        let (page, next_page_token) = page_of(foreign, key, req.page_size, &req.page_token)?;
        Ok(Response::new(admin::ListFederatedBundlesResponse {
            bundles: page.iter().map(bundle_to_proto).collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    #[tracing::instrument(name = "admin.GetFederatedBundle", skip_all, fields(
        trust_domain = %req.get_ref().trust_domain))]
    async fn get_federated_bundle(&self, req: Request<GetReq>) -> Rpc<admin::Bundle> {
        let td = self.foreign("trust_domain", &req.into_inner().trust_domain)?;
        let bundle = self.state.lookup(&td, |s, td| s.get_bundle(td)).await;
        let bundle = bundle
            .map_err(store_status)?
            .ok_or_else(|| no_bundle(&td))?;
        Ok(Response::new(bundle_to_proto(&bundle)?))
    }

    #[tracing::instrument(name = "admin.BatchSetFederatedBundle", skip_all, fields(
        count = req.get_ref().bundle.len()))]
    async fn batch_set_federated_bundle(&self, req: Request<SetBatch>) -> Rpc<SetResults> {
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::new();
        for item in req.into_inner().bundle {
            let set = self
                .set_one(&item)
                .instrument(item_span(&item.trust_domain));
            results.push(match set.await {
                Ok(bundle) => admin::BundleResult {
                    status: Some(ok_status()),
                    bundle: Some(bundle_to_proto(&bundle)?),
                },
                Err(status) => admin::BundleResult {
                    status: Some(item_status(&status)),
                    bundle: Some(admin::Bundle {
                        trust_domain: item.trust_domain,
                        spiffe_json: String::new(),
                        sequence_number: 0,
                    }),
                },
            });
        }
        if any_ok(results.iter().map(|r| &r.status)) {
            self.state.publish(ServerEvent::BundleChanged);
        }
        Ok(Response::new(admin::BatchSetFederatedBundleResponse {
            results,
        }))
    }

    #[tracing::instrument(name = "admin.BatchDeleteFederatedBundle", skip_all, fields(
        count = req.get_ref().trust_domains.len()))]
    async fn batch_delete_federated_bundle(&self, req: Request<DeleteBatch>) -> Rpc<DeleteResults> {
        let names = req.into_inner().trust_domains;
        let delete = |name: String| async move { self.delete_one(&name).await };
        let (results, deleted) = delete_each(&self.refresher, names, delete).await;
        if deleted {
            self.state.publish(ServerEvent::BundleChanged);
        }
        Ok(Response::new(admin::BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}

fn no_bundle(td: &TrustDomain) -> Status {
    Status::not_found(format!("trust_domain: no bundle of {td} is stored"))
}

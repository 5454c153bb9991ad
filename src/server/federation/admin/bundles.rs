//! The `FederatedBundles` service: foreign trust domains' bundles, listed,
//! shown, set by hand and deleted. A bundle set by hand counts as the
//! latest until the next successful refresh of its relationship, if any
//! (SPIFFE.md §6). This server's own bundle is not managed here.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::{page_of, parse_trust_domain};
use crate::proto::admin::{self, federated_bundles_server::FederatedBundles};
use crate::server::admin_api::convert::{bundle_to_proto, item_status, ok_status, store_status};
use crate::server::federation::bundle_trust_domain_check;
use crate::server::federation::refresher::RefresherHandle;
use crate::server::state::{ServerEvent, ServerState};
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
            Ok(true) => Ok(()),
            Ok(false) => Err(Status::failed_precondition(format!(
                "trust_domain: {td} has a federation relationship that would fetch the bundle again; delete the relationship instead (`herald federation delete`)"
            ))),
            Err(StoreError::NotFound { .. }) => Err(Status::not_found(format!(
                "trust_domain: no bundle of {td} is stored"
            ))),
            Err(e) => Err(store_status(e)),
        }
    }
}

#[tonic::async_trait]
impl FederatedBundles for FederatedBundlesApi {
    async fn list_federated_bundles(
        &self,
        request: Request<admin::ListFederatedBundlesRequest>,
    ) -> Result<Response<admin::ListFederatedBundlesResponse>, Status> {
        let req = request.into_inner();
        let own = self.state.trust_domain.clone();
        let all = self
            .state
            .with_store(|s| s.list_bundles())
            .instrument(tracing::info_span!("admin.ListFederatedBundles"))
            .await
            .map_err(store_status)?;
        let foreign: Vec<Bundle> = all.into_iter().filter(|b| b.trust_domain != own).collect();
        let (page, next_page_token) = page_of(
            foreign,
            |b| b.trust_domain.name(),
            req.page_size,
            &req.page_token,
        )?;
        Ok(Response::new(admin::ListFederatedBundlesResponse {
            bundles: page.iter().map(bundle_to_proto).collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    async fn get_federated_bundle(
        &self,
        request: Request<admin::GetFederatedBundleRequest>,
    ) -> Result<Response<admin::Bundle>, Status> {
        let td = self.foreign("trust_domain", &request.into_inner().trust_domain)?;
        let lookup = td.clone();
        let bundle = self
            .state
            .with_store(move |s| s.get_bundle(&lookup))
            .instrument(tracing::info_span!("admin.GetFederatedBundle", trust_domain = %td))
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!("trust_domain: no bundle of {td} is stored"))
            })?;
        Ok(Response::new(bundle_to_proto(&bundle)?))
    }

    async fn batch_set_federated_bundle(
        &self,
        request: Request<admin::BatchSetFederatedBundleRequest>,
    ) -> Result<Response<admin::BatchSetFederatedBundleResponse>, Status> {
        let items = request.into_inner().bundle;
        let span = tracing::info_span!("admin.BatchSetFederatedBundle", count = items.len());
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::with_capacity(items.len());
        let mut changed = false;
        for item in items {
            let item_span =
                tracing::info_span!(parent: &span, "item", trust_domain = %item.trust_domain);
            match self.set_one(&item).instrument(item_span.clone()).await {
                Ok(bundle) => {
                    changed = true;
                    item_span.in_scope(|| {
                        tracing::info!(sequence = bundle.sequence, "federated bundle set by hand")
                    });
                    results.push(admin::BundleResult {
                        status: Some(ok_status()),
                        bundle: Some(bundle_to_proto(&bundle)?),
                    });
                }
                Err(status) => results.push(admin::BundleResult {
                    status: Some(item_status(&status)),
                    bundle: Some(admin::Bundle {
                        trust_domain: item.trust_domain,
                        spiffe_json: String::new(),
                        sequence_number: 0,
                    }),
                }),
            }
        }
        if changed {
            self.state.publish(ServerEvent::BundleChanged);
        }
        Ok(Response::new(admin::BatchSetFederatedBundleResponse {
            results,
        }))
    }

    async fn batch_delete_federated_bundle(
        &self,
        request: Request<admin::BatchDeleteFederatedBundleRequest>,
    ) -> Result<Response<admin::BatchDeleteFederatedBundleResponse>, Status> {
        let names = request.into_inner().trust_domains;
        let span = tracing::info_span!("admin.BatchDeleteFederatedBundle", count = names.len());
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::with_capacity(names.len());
        let mut changed = false;
        for name in names {
            let item_span = tracing::info_span!(parent: &span, "item", trust_domain = %name);
            let status = match self.delete_one(&name).instrument(item_span.clone()).await {
                Ok(()) => {
                    changed = true;
                    item_span.in_scope(|| tracing::info!("federated bundle deleted"));
                    ok_status()
                }
                Err(status) => item_status(&status),
            };
            results.push(admin::DeleteFederatedBundleResult {
                status: Some(status),
                trust_domain: name,
            });
        }
        if changed {
            self.state.publish(ServerEvent::BundleChanged);
        }
        Ok(Response::new(admin::BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}

//! The `Federation` service: relationships with foreign trust domains,
//! created, listed, shown, updated, deleted and refreshed on demand.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::validate::{check_endpoint_trust, validate};
use super::{delete_each, item_span, page_of, parse_trust_domain};
use crate::errors::Chain;
use crate::proto::admin;
use crate::proto::admin::federation_server::Federation;
use crate::proto::admin::{
    BatchCreateFederationRelationshipRequest as Creates,
    BatchCreateFederationRelationshipResponse as Created,
    BatchDeleteFederationRelationshipRequest as Deletes,
    BatchDeleteFederationRelationshipResponse as Deleted,
    BatchUpdateFederationRelationshipRequest as Updates,
    BatchUpdateFederationRelationshipResponse as Updated,
    FederationRelationship as ApiRelationship, GetFederationRelationshipRequest as GetReq,
    ListFederationRelationshipsRequest as ListReq, ListFederationRelationshipsResponse as ListResp,
    RefreshBundleRequest as RefreshReq, RefreshBundleResponse,
};
use crate::server::admin_api::convert::{
    bundle_to_proto, item_status, relationship_to_proto, store_status, store_status_or,
};
use crate::server::federation::refresher::{RefreshError, RefresherHandle};
use crate::server::state::{ServerEvent, ServerState};
use crate::server::Rpc;
use crate::spiffe::TrustDomain;
use crate::store::{FederationRelationship, StoreError};

/// Serves the `Federation` service.
pub(super) struct FederationApi {
    state: Arc<ServerState>,
    refresher: RefresherHandle,
}

/// Which write a batch does.
#[derive(Clone, Copy)]
enum Write {
    Create,
    Update,
}

#[tonic::async_trait]
impl Federation for FederationApi {
    #[tracing::instrument(name = "admin.BatchCreateFederationRelationship", skip_all, fields(
        count = req.get_ref().federation_relationships.len()))]
    async fn batch_create_federation_relationship(&self, req: Request<Creates>) -> Rpc<Created> {
        let items = req.into_inner().federation_relationships;
        let results = self.write_batch(items, Write::Create).await;
        Ok(Response::new(
            admin::BatchCreateFederationRelationshipResponse { results },
        ))
    }

    #[tracing::instrument(name = "admin.ListFederationRelationships", skip_all)]
    async fn list_federation_relationships(&self, req: Request<ListReq>) -> Rpc<ListResp> {
        let req = req.into_inner();
        let all = self
            .state
            .with_store(|s| s.list_federation_relationships())
            .await
            .map_err(store_status)?;
        let key = |r: &FederationRelationship| r.trust_domain.name().to_string();
        let (page, next_page_token) = page_of(all, key, req.page_size, &req.page_token)?;
        let mut out = Vec::with_capacity(page.len());
        for rel in &page {
            out.push(self.to_proto(rel).await);
        }
        Ok(Response::new(admin::ListFederationRelationshipsResponse {
            federation_relationships: out,
            next_page_token,
        }))
    }

    #[tracing::instrument(name = "admin.GetFederationRelationship", skip_all, fields(
        trust_domain = %req.get_ref().trust_domain))]
    async fn get_federation_relationship(&self, req: Request<GetReq>) -> Rpc<ApiRelationship> {
        let td = parse_trust_domain("trust_domain", &req.into_inner().trust_domain)?;
        let rel = self.get(&td).await?;
        Ok(Response::new(self.to_proto(&rel).await))
    }

    #[tracing::instrument(name = "admin.BatchUpdateFederationRelationship", skip_all, fields(
        count = req.get_ref().federation_relationships.len()))]
    async fn batch_update_federation_relationship(&self, req: Request<Updates>) -> Rpc<Updated> {
        let items = req.into_inner().federation_relationships;
        let results = self.write_batch(items, Write::Update).await;
        Ok(Response::new(
            admin::BatchUpdateFederationRelationshipResponse { results },
        ))
    }

    #[tracing::instrument(name = "admin.BatchDeleteFederationRelationship", skip_all, fields(
        count = req.get_ref().trust_domains.len()))]
    async fn batch_delete_federation_relationship(&self, req: Request<Deletes>) -> Rpc<Deleted> {
        let names = req.into_inner().trust_domains;
        let delete = |name: String| async move { self.delete_one(&name).await };
        let (results, deleted) = delete_each(&self.refresher, names, delete).await;
        if deleted {
            self.state.publish(ServerEvent::BundleChanged);
            self.refresher.relationships_changed();
        }
        Ok(Response::new(
            admin::BatchDeleteFederationRelationshipResponse { results },
        ))
    }

    #[tracing::instrument(name = "admin.RefreshBundle", skip_all, fields(
        trust_domain = %req.get_ref().trust_domain))]
    async fn refresh_bundle(&self, req: Request<RefreshReq>) -> Rpc<RefreshBundleResponse> {
        let td = parse_trust_domain("trust_domain", &req.into_inner().trust_domain)?;
        self.get(&td).await?;
        match self.refresher.refresh_now(&td).await {
            Ok(outcome) => Ok(Response::new(RefreshBundleResponse {
                bundle: Some(bundle_to_proto(&outcome.bundle)?),
                changed: outcome.changed,
            })),
            Err(RefreshError::NoRelationship(_)) => Err(no_relationship(&td)),
            Err(RefreshError::NotRunning) => Err(Status::unavailable(
                "the federation refresher is not running",
            )),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "requested bundle refresh failed");
                Err(Status::aborted(format!(
                    "{e}; the last good bundle stays in use"
                )))
            }
        }
    }
}

impl FederationApi {
    pub(super) fn new(state: Arc<ServerState>, refresher: RefresherHandle) -> Self {
        FederationApi { state, refresher }
    }

    async fn get(&self, td: &TrustDomain) -> Result<FederationRelationship, Status> {
        let rel = self
            .state
            .lookup(td, |s, td| s.get_federation_relationship(td));
        rel.await
            .map_err(store_status)?
            .ok_or_else(|| no_relationship(td))
    }

    /// Deletes one relationship of a batch, and the bundle it fetched.
    async fn delete_one(&self, name: &str) -> Result<(), Status> {
        let td = parse_trust_domain("trust_domain", name)?;
        let lookup = td.clone();
        self.state
            .with_store(move |s| {
                s.delete_federation_relationship(&lookup)?;
                // Terminating a relationship drops its bundle (SPIFFE.md
                // §6); it may already be gone.
                match s.delete_bundle(&lookup) {
                    Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| store_status_or(e, || no_relationship(&td)))?;
        tracing::info!("federation relationship and its bundle deleted");
        Ok(())
    }

    /// Creates or updates each relationship of a batch (per-item results in
    /// request order), then tells agents and the refresher once.
    async fn write_batch(
        &self,
        items: Vec<admin::FederationRelationship>,
        write: Write,
    ) -> Vec<admin::FederationRelationshipResult> {
        let verb = match write {
            Write::Create => "created",
            Write::Update => "updated",
        };
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::with_capacity(items.len());
        let (mut written, mut bundles_changed) = (false, false);
        for item in items {
            let span = item_span(&item.trust_domain);
            let outcome = self.write_one(&item, write).instrument(span).await;
            match outcome {
                Ok((rel, stored_bundle)) => {
                    written = true;
                    bundles_changed |= stored_bundle;
                    tracing::info!(trust_domain = %rel.trust_domain, url = %rel.bundle_endpoint_url, "federation relationship {verb}");
                    results.push(self.result(Status::ok(""), Some(&rel)).await);
                }
                Err(status) => results.push(admin::FederationRelationshipResult {
                    status: Some(item_status(&status)),
                    federation_relationship: Some(strip_bundle(item)),
                }),
            }
        }
        if bundles_changed {
            self.state.publish(ServerEvent::BundleChanged);
        }
        if written {
            self.refresher.relationships_changed();
        }
        results
    }

    /// Validates and writes one relationship; returns it and whether a
    /// bundle was stored. Create stores a bootstrap bundle only where none
    /// is stored yet; on update, a bundle given replaces the stored one.
    async fn write_one(
        &self,
        item: &admin::FederationRelationship,
        write: Write,
    ) -> Result<(FederationRelationship, bool), Status> {
        let v = validate(&self.state.trust_domain, item)?;
        let own = self.state.trust_domain.clone();
        self.state
            .with_store(move |s| {
                let td = &v.rel.trust_domain;
                let exists = s.get_federation_relationship(td)?.is_some();
                match (write, exists) {
                    (Write::Create, true) => {
                        return Ok(Err(Status::already_exists(format!(
                            "trust_domain: a federation relationship with {td} exists; use update"
                        ))))
                    }
                    (Write::Update, false) => {
                        let status = no_relationship(td);
                        let message = format!("{}; use create", status.message());
                        return Ok(Err(Status::not_found(message)));
                    }
                    _ => {}
                }
                if let Err(status) = check_endpoint_trust(s, &own, &v) {
                    return Ok(Err(status));
                }
                s.put_federation_relationship(&v.rel)?;
                let stored = match &v.bundle {
                    Some(b) if matches!(write, Write::Update) || s.get_bundle(td)?.is_none() => {
                        s.set_bundle(b)?;
                        true
                    }
                    _ => false,
                };
                Ok(Ok((v.rel, stored)))
            })
            .await
            .map_err(store_status)?
    }

    async fn result(
        &self,
        status: Status,
        rel: Option<&FederationRelationship>,
    ) -> admin::FederationRelationshipResult {
        let federation_relationship = match rel {
            Some(rel) => Some(self.to_proto(rel).await),
            None => None,
        };
        admin::FederationRelationshipResult {
            status: Some(item_status(&status)),
            federation_relationship,
        }
    }

    /// A stored relationship as the API shows it, with its refresh status.
    async fn to_proto(&self, rel: &FederationRelationship) -> admin::FederationRelationship {
        let sequence = self
            .state
            .lookup(&rel.trust_domain, |s, td| s.get_bundle(td))
            .await
            .ok()
            .flatten()
            .map(|b| b.sequence)
            .unwrap_or(0);
        let status = self.refresher.status(&rel.trust_domain).unwrap_or_default();
        relationship_to_proto(rel, status, sequence)
    }
}

/// Echoes a refused item without the (possibly large) bundle it carried.
fn strip_bundle(mut item: admin::FederationRelationship) -> admin::FederationRelationship {
    item.trust_domain_bundle = String::new();
    item
}

fn no_relationship(td: &TrustDomain) -> Status {
    Status::not_found(format!(
        "trust_domain: there is no federation relationship with {td}"
    ))
}

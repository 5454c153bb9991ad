//! The admin API of federation (`proto/herald/admin/v1/federation.proto`):
//! the `Federation` service manages relationships, `FederatedBundles` the
//! foreign bundles themselves. Like the other admin services, this layer
//! validates and translates: every refusal is a status whose message starts
//! with the field at fault, and store calls run on the blocking pool.
//!
//! Writes take the refresher's write lock, so a refresh finishing at the
//! same moment cannot resurrect a bundle an operator just deleted. Every
//! change to relationships wakes the refresher; every change to a bundle
//! publishes [`ServerEvent::BundleChanged`] for agents.

mod bundles;

use std::sync::Arc;

use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::bundle_trust_domain_check;
use super::http::EndpointUrl;
use super::refresher::{RefreshError, RefresherHandle};
use crate::proto::admin::federated_bundles_server::FederatedBundlesServer;
use crate::proto::admin::federation_relationship::BundleEndpointProfile as ProtoProfile;
use crate::proto::admin::federation_server::{Federation, FederationServer};
use crate::proto::admin::{self, HttpsWebProfile, HttpsspiffeProfile};
use crate::server::state::{ServerEvent, ServerState};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};
use crate::store::{
    BundleEndpointProfile, DataStore, FederationRelationship, StoreError, DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
};

/// The `Federation` and `FederatedBundles` services, to serve on the admin
/// socket beside the others (see [`add_federation_services`]).
pub fn federation_routes(state: Arc<ServerState>, refresher: RefresherHandle) -> Routes {
    Routes::new(FederationServer::new(FederationApi {
        state: state.clone(),
        refresher: refresher.clone(),
    }))
    .add_service(FederatedBundlesServer::new(
        bundles::FederatedBundlesApi::new(state, refresher),
    ))
}

/// Adds the `Federation` and `FederatedBundles` services to `routes` (for
/// example the admin API's `admin_routes(state)`).
pub fn add_federation_services(
    routes: Routes,
    state: Arc<ServerState>,
    refresher: RefresherHandle,
) -> Routes {
    routes
        .add_service(FederationServer::new(FederationApi {
            state: state.clone(),
            refresher: refresher.clone(),
        }))
        .add_service(FederatedBundlesServer::new(
            bundles::FederatedBundlesApi::new(state, refresher),
        ))
}

/// Serves the `Federation` service.
struct FederationApi {
    state: Arc<ServerState>,
    refresher: RefresherHandle,
}

/// A relationship from a request, checked.
/// Which write a batch does.
#[derive(Clone, Copy)]
enum Write {
    Create,
    Update,
}

struct Validated {
    rel: FederationRelationship,
    bundle: Option<Bundle>,
}

#[tonic::async_trait]
impl Federation for FederationApi {
    async fn batch_create_federation_relationship(
        &self,
        request: Request<admin::BatchCreateFederationRelationshipRequest>,
    ) -> Result<Response<admin::BatchCreateFederationRelationshipResponse>, Status> {
        let items = request.into_inner().federation_relationships;
        let results = self.write_batch(items, Write::Create).await;
        Ok(Response::new(
            admin::BatchCreateFederationRelationshipResponse { results },
        ))
    }

    async fn list_federation_relationships(
        &self,
        request: Request<admin::ListFederationRelationshipsRequest>,
    ) -> Result<Response<admin::ListFederationRelationshipsResponse>, Status> {
        let req = request.into_inner();
        let all = self
            .state
            .with_store(|s| s.list_federation_relationships())
            .instrument(tracing::info_span!("admin.ListFederationRelationships"))
            .await
            .map_err(store_status)?;
        let (page, next_page_token) = page_of(
            all,
            |r| r.trust_domain.name(),
            req.page_size,
            &req.page_token,
        )?;
        let mut out = Vec::with_capacity(page.len());
        for rel in &page {
            out.push(self.to_proto(rel).await);
        }
        Ok(Response::new(admin::ListFederationRelationshipsResponse {
            federation_relationships: out,
            next_page_token,
        }))
    }

    async fn get_federation_relationship(
        &self,
        request: Request<admin::GetFederationRelationshipRequest>,
    ) -> Result<Response<admin::FederationRelationship>, Status> {
        let td = parse_trust_domain("trust_domain", &request.into_inner().trust_domain)?;
        let span = tracing::info_span!("admin.GetFederationRelationship", trust_domain = %td);
        async {
            let rel = self.get(&td).await?;
            Ok(Response::new(self.to_proto(&rel).await))
        }
        .instrument(span)
        .await
    }

    async fn batch_update_federation_relationship(
        &self,
        request: Request<admin::BatchUpdateFederationRelationshipRequest>,
    ) -> Result<Response<admin::BatchUpdateFederationRelationshipResponse>, Status> {
        let items = request.into_inner().federation_relationships;
        let results = self.write_batch(items, Write::Update).await;
        Ok(Response::new(
            admin::BatchUpdateFederationRelationshipResponse { results },
        ))
    }

    async fn batch_delete_federation_relationship(
        &self,
        request: Request<admin::BatchDeleteFederationRelationshipRequest>,
    ) -> Result<Response<admin::BatchDeleteFederationRelationshipResponse>, Status> {
        let names = request.into_inner().trust_domains;
        let span = tracing::info_span!(
            "admin.BatchDeleteFederationRelationship",
            count = names.len()
        );
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::with_capacity(names.len());
        let mut deleted = false;
        for name in names {
            let outcome = match parse_trust_domain("trust_domain", &name) {
                Ok(td) => {
                    let lookup = td.clone();
                    self.state
                        .with_store(move |s| {
                            let rel = s.delete_federation_relationship(&lookup)?;
                            // Terminating a relationship drops its bundle
                            // (SPIFFE.md §6); it may already be gone.
                            match s.delete_bundle(&lookup) {
                                Ok(_) | Err(StoreError::NotFound { .. }) => Ok(rel),
                                Err(e) => Err(e),
                            }
                        })
                        .await
                        .map_err(|e| match e {
                            StoreError::NotFound { .. } => Status::not_found(format!(
                                "trust_domain: there is no federation relationship with {td}"
                            )),
                            other => store_status(other),
                        })
                }
                Err(status) => Err(status),
            };
            let status = match outcome {
                Ok(rel) => {
                    deleted = true;
                    span.in_scope(|| {
                        tracing::info!(trust_domain = %rel.trust_domain, "federation relationship and its bundle deleted")
                    });
                    ok_status()
                }
                Err(status) => item_status(&status),
            };
            results.push(admin::DeleteFederationRelationshipResult {
                status: Some(status),
                trust_domain: name,
            });
        }
        if deleted {
            self.state.publish(ServerEvent::BundleChanged);
            self.refresher.relationships_changed();
        }
        Ok(Response::new(
            admin::BatchDeleteFederationRelationshipResponse { results },
        ))
    }

    async fn refresh_bundle(
        &self,
        request: Request<admin::RefreshBundleRequest>,
    ) -> Result<Response<admin::RefreshBundleResponse>, Status> {
        let td = parse_trust_domain("trust_domain", &request.into_inner().trust_domain)?;
        let span = tracing::info_span!("admin.RefreshBundle", trust_domain = %td);
        self.get(&td).instrument(span.clone()).await?;
        match self
            .refresher
            .refresh_now(&td)
            .instrument(span.clone())
            .await
        {
            Ok(outcome) => Ok(Response::new(admin::RefreshBundleResponse {
                bundle: Some(bundle_to_proto(&outcome.bundle)?),
                changed: outcome.changed,
            })),
            Err(RefreshError::NoRelationship(_)) => Err(Status::not_found(format!(
                "trust_domain: there is no federation relationship with {td}"
            ))),
            Err(RefreshError::NotRunning) => Err(Status::unavailable(
                "the federation refresher is not running",
            )),
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "requested bundle refresh failed"));
                Err(Status::aborted(format!(
                    "{e}; the last good bundle stays in use"
                )))
            }
        }
    }
}

// === impl FederationApi ===

impl FederationApi {
    async fn get(&self, td: &TrustDomain) -> Result<FederationRelationship, Status> {
        let lookup = td.clone();
        self.state
            .with_store(move |s| s.get_federation_relationship(&lookup))
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "trust_domain: there is no federation relationship with {td}"
                ))
            })
    }

    /// Creates or updates each relationship of a batch (per-item results in
    /// request order), then tells agents and the refresher once.
    async fn write_batch(
        &self,
        items: Vec<admin::FederationRelationship>,
        write: Write,
    ) -> Vec<admin::FederationRelationshipResult> {
        let (name, verb) = match write {
            Write::Create => ("admin.BatchCreateFederationRelationship", "created"),
            Write::Update => ("admin.BatchUpdateFederationRelationship", "updated"),
        };
        let span = tracing::info_span!("admin.batch", rpc = name, count = items.len());
        let _writes = self.refresher.lock_writes().await;
        let mut results = Vec::with_capacity(items.len());
        let (mut written, mut bundles_changed) = (false, false);
        for item in items {
            let item_span =
                tracing::info_span!(parent: &span, "item", trust_domain = %item.trust_domain);
            let outcome = match write {
                Write::Create => self.create_one(&item).instrument(item_span).await,
                Write::Update => self.update_one(&item).instrument(item_span).await,
            };
            match outcome {
                Ok((rel, stored_bundle)) => {
                    written = true;
                    bundles_changed |= stored_bundle;
                    span.in_scope(|| {
                        tracing::info!(trust_domain = %rel.trust_domain, url = %rel.bundle_endpoint_url, "federation relationship {verb}")
                    });
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

    /// Validates and stores one new relationship; returns it and whether a
    /// bootstrap bundle was stored.
    async fn create_one(
        &self,
        item: &admin::FederationRelationship,
    ) -> Result<(FederationRelationship, bool), Status> {
        let v = validate(&self.state.trust_domain, item)?;
        let own = self.state.trust_domain.clone();
        self.state
            .with_store(move |s| {
                let td = &v.rel.trust_domain;
                if s.get_federation_relationship(td)?.is_some() {
                    return Ok(Err(Status::already_exists(format!(
                        "trust_domain: a federation relationship with {td} exists; use update"
                    ))));
                }
                if let Err(status) = check_endpoint_trust(s, &own, &v) {
                    return Ok(Err(status));
                }
                s.put_federation_relationship(&v.rel)?;
                let mut stored = false;
                if let Some(b) = &v.bundle {
                    if s.get_bundle(td)?.is_none() {
                        s.set_bundle(b)?;
                        stored = true;
                    }
                }
                Ok(Ok((v.rel, stored)))
            })
            .await
            .map_err(store_status)?
    }

    /// Validates and replaces one relationship; a bundle given replaces the
    /// stored one.
    async fn update_one(
        &self,
        item: &admin::FederationRelationship,
    ) -> Result<(FederationRelationship, bool), Status> {
        let v = validate(&self.state.trust_domain, item)?;
        let own = self.state.trust_domain.clone();
        self.state
            .with_store(move |s| {
                let td = &v.rel.trust_domain;
                if s.get_federation_relationship(td)?.is_none() {
                    return Ok(Err(Status::not_found(format!(
                        "trust_domain: there is no federation relationship with {td}; use create"
                    ))));
                }
                if let Err(status) = check_endpoint_trust(s, &own, &v) {
                    return Ok(Err(status));
                }
                s.put_federation_relationship(&v.rel)?;
                if let Some(b) = &v.bundle {
                    s.set_bundle(b)?;
                }
                Ok(Ok((v.rel, v.bundle.is_some())))
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
        let lookup = rel.trust_domain.clone();
        let sequence = self
            .state
            .with_store(move |s| s.get_bundle(&lookup))
            .await
            .ok()
            .flatten()
            .map(|b| b.sequence)
            .unwrap_or(0);
        let status = self.refresher.status(&rel.trust_domain).unwrap_or_default();
        let refresh_status = admin::FederationRefreshStatus {
            last_attempt_at: status.last_attempt_at.unwrap_or(0),
            last_success_at: status.last_success_at.unwrap_or(0),
            last_error: status.last_error.unwrap_or_default(),
            consecutive_failures: status.consecutive_failures,
            next_refresh_at: status.next_refresh_at.unwrap_or(0),
            bundle_sequence: sequence,
        };
        admin::FederationRelationship {
            trust_domain: rel.trust_domain.to_string(),
            bundle_endpoint_url: rel.bundle_endpoint_url.clone(),
            bundle_endpoint_profile: Some(match &rel.profile {
                BundleEndpointProfile::HttpsWeb => ProtoProfile::HttpsWeb(HttpsWebProfile {}),
                BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                    ProtoProfile::HttpsSpiffe(HttpsspiffeProfile {
                        endpoint_spiffe_id: endpoint_spiffe_id.to_string(),
                    })
                }
            }),
            trust_domain_bundle: String::new(),
            refresh_status: Some(refresh_status),
        }
    }
}

/// Checks every field of a relationship from a request.
fn validate(own: &TrustDomain, p: &admin::FederationRelationship) -> Result<Validated, Status> {
    let td = parse_trust_domain("trust_domain", &p.trust_domain)?;
    if &td == own {
        return Err(Status::invalid_argument(format!(
            "trust_domain: {td} is this server's own trust domain; federate with other trust domains"
        )));
    }
    EndpointUrl::parse(&p.bundle_endpoint_url)
        .map_err(|e| Status::invalid_argument(format!("bundle_endpoint_url: {e}")))?;
    let profile = match &p.bundle_endpoint_profile {
        None => {
            return Err(Status::invalid_argument(
                "bundle_endpoint_profile: required: https_web or https_spiffe",
            ))
        }
        Some(ProtoProfile::HttpsWeb(_)) => BundleEndpointProfile::HttpsWeb,
        Some(ProtoProfile::HttpsSpiffe(s)) => {
            if s.endpoint_spiffe_id.is_empty() {
                return Err(Status::invalid_argument(
                    "https_spiffe.endpoint_spiffe_id: required for the https_spiffe profile",
                ));
            }
            let id = SpiffeId::parse(&s.endpoint_spiffe_id).map_err(|e| {
                Status::invalid_argument(format!(
                    "https_spiffe.endpoint_spiffe_id: {:?}: {e}",
                    s.endpoint_spiffe_id
                ))
            })?;
            if id.is_trust_domain_id() {
                return Err(Status::invalid_argument(format!(
                    "https_spiffe.endpoint_spiffe_id: {id} has no path; name the endpoint's workload (e.g. {id}/herald/server)"
                )));
            }
            BundleEndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: id,
            }
        }
    };
    let bundle = match p.trust_domain_bundle.trim() {
        "" => None,
        json => {
            let bundle = Bundle::from_spiffe_json(td.clone(), json.as_bytes()).map_err(|e| {
                Status::invalid_argument(format!("trust_domain_bundle: not a SPIFFE bundle: {e}"))
            })?;
            bundle_trust_domain_check(&bundle)
                .map_err(|e| Status::invalid_argument(format!("trust_domain_bundle: {e}")))?;
            Some(bundle)
        }
    };
    Ok(Validated {
        rel: FederationRelationship {
            trust_domain: td,
            bundle_endpoint_url: p.bundle_endpoint_url.clone(),
            profile,
        },
        bundle,
    })
}

/// `https_spiffe` needs roots to authenticate the endpoint: for a
/// self-serving endpoint, a bundle given now or already stored; otherwise
/// the stored bundle of the endpoint ID's trust domain (or our own).
fn check_endpoint_trust(s: &dyn DataStore, own: &TrustDomain, v: &Validated) -> Result<(), Status> {
    let BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } = &v.rel.profile else {
        return Ok(());
    };
    let etd = endpoint_spiffe_id.trust_domain();
    if etd == own {
        return Ok(());
    }
    let stored = s.get_bundle(etd).map_err(store_status)?.is_some();
    if etd == &v.rel.trust_domain {
        if v.bundle.is_none() && !stored {
            return Err(Status::invalid_argument(format!(
                "trust_domain_bundle: required: no bundle of {etd} is stored, and the https_spiffe endpoint can only be authenticated with one the first time"
            )));
        }
    } else if !stored {
        return Err(Status::failed_precondition(format!(
            "https_spiffe.endpoint_spiffe_id: no bundle of {etd} is stored to authenticate the endpoint; federate with {etd} or set its bundle first"
        )));
    }
    Ok(())
}

/// Echoes a refused item without the (possibly large) bundle it carried.
fn strip_bundle(mut item: admin::FederationRelationship) -> admin::FederationRelationship {
    item.trust_domain_bundle = String::new();
    item
}

// === shared helpers ===

/// A trust domain name from a request; the error names `field`.
fn parse_trust_domain(field: &str, name: &str) -> Result<TrustDomain, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: required")));
    }
    TrustDomain::new(name).map_err(|e| Status::invalid_argument(format!("{field}: {name:?}: {e}")))
}

/// A bundle as the API shows it.
fn bundle_to_proto(b: &Bundle) -> Result<admin::Bundle, Status> {
    let spiffe_json = b.to_spiffe_json().map_err(|e| {
        tracing::error!(trust_domain = %b.trust_domain, error = %e, "cannot encode a stored bundle");
        Status::internal(format!("cannot encode the bundle of {}: {e}", b.trust_domain))
    })?;
    Ok(admin::Bundle {
        trust_domain: b.trust_domain.to_string(),
        spiffe_json,
        sequence_number: b.sequence,
    })
}

/// One page of `items` (sorted by `key`), after `token` (the last key of
/// the previous page). Returns the page and the next token, empty at the end.
fn page_of<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
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
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let mut page: Vec<T> = items
        .into_iter()
        .filter(|i| token.is_empty() || key(i) > token)
        .take(size + 1)
        .collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(|i| key(i).to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((page, next))
}

fn item_status(status: &Status) -> admin::Status {
    admin::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
    }
}

fn ok_status() -> admin::Status {
    admin::Status {
        code: tonic::Code::Ok as i32,
        message: String::new(),
    }
}

/// What a caller can act on: missing, taken or malformed; else our failure.
fn store_status(e: StoreError) -> Status {
    match &e {
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        StoreError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        _ => {
            tracing::error!(error = %e, "datastore failure in the federation admin API");
            Status::internal(format!("datastore failure: {e}"))
        }
    }
}

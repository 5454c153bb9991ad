//! Envoy's Secret Discovery Service (SDS v3,
//! `envoy.service.secret.v3.SecretDiscoveryService`), served on the
//! Workload API socket as SPIRE does (SPIFFE.md §7): an Envoy pointed at
//! the socket gets its SVID, its trust bundle and the federated bundles
//! its entries allow, and follows every rotation without a restart.
//!
//! The caller is identified exactly as on the Workload API (SO_PEERCRED,
//! then the Unix attestor), and is entitled to the same identities; SDS
//! needs no `workload.spiffe.io` header. All three methods are served:
//! StreamSecrets and FetchSecrets (state of the world, `sotw`) and
//! DeltaSecrets (incremental, `delta`), which SPIRE leaves unimplemented.
//! `resources` names and builds the secrets; `stream` drives a stream.
//!
//! Where Herald departs from SPIRE, and why:
//! - A name the caller may not have is left out of a stream's responses
//!   (Delta: named in `removed_resources`) instead of failing the stream
//!   with InvalidArgument, so that a federated bundle withdrawn while
//!   subscribed to does not break the stream (SPIRE #1816). FetchSecrets,
//!   which has no later response to wait for, refuses such a request with
//!   PermissionDenied.
//! - `ALL` is also served with flat `trusted_ca` validation contexts (all
//!   roots in one PEM), where SPIRE answers Internal.
//! - A node that states no Envoy build version gets the SPIFFE validator
//!   (SPIRE falls back to `trusted_ca`); the validator is the default of
//!   SPIFFE.md §7, and an old Envoy states its version.
//! - FetchSecrets answers with a version and a nonce like any response
//!   (SPIRE leaves both empty).

mod delta;
#[cfg(test)]
mod fixture;
mod resources;
mod sotw;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use self::delta::Delta;
use self::sotw::Sotw;
use self::stream::{Due, Protocol, ResponseStream, Subscriber};
use crate::agent::attestor::WorkloadAttestor;
use crate::agent::cache::Cache;
use crate::agent::workload_api::{caller, ready, responses};
use crate::config::SdsSettings;

/// What an SDS method answers.
type Rpc<T> = Result<Response<T>, Status>;

/// The largest request accepted. An Envoy's requests are a node
/// description and a few names (Istio's node metadata runs to some KiB);
/// any local user can connect, so gRPC's 4 MiB default is not kept.
pub const MAX_REQUEST_SIZE: usize = 256 * 1024;

/// The SDS endpoint of an agent, on the Workload API's socket.
#[derive(Clone)]
pub struct Sds {
    cache: Cache,
    attestor: Arc<WorkloadAttestor>,
    ready_timeout: Duration,
    settings: Arc<SdsSettings>,
    stop: watch::Receiver<bool>,
}

// === impl Sds ===

impl Sds {
    /// SDS over `cache`, identifying callers with `attestor`, waiting up to
    /// `ready_timeout` for the first sync (as the Workload API does); its
    /// streams end once `stop` turns true.
    pub fn new(
        cache: Cache,
        attestor: Arc<WorkloadAttestor>,
        ready_timeout: Duration,
        settings: SdsSettings,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Sds {
            cache,
            attestor,
            ready_timeout,
            settings: Arc::new(settings),
            stop,
        }
    }

    /// The gRPC service, with its request size bound.
    pub fn into_service(self) -> SecretDiscoveryServiceServer<Sds> {
        SecretDiscoveryServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_SIZE)
    }

    /// Identifies and attests the caller, waits for the cache, and checks
    /// that the caller is entitled to something (PermissionDenied `no
    /// identity issued` otherwise, as on the Workload API).
    async fn open<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
    ) -> Result<(Subscriber, tracing::Span), Status> {
        let span = caller::call_span("sds", method);
        let caller = caller::identify(request, &span);
        async move {
            let selectors = caller::attest(&self.attestor, caller?).await?;
            let (snapshots, snap) =
                ready::wait(&self.cache, self.ready_timeout, Some(&selectors)).await?;
            responses::entitled(&snap, &selectors).inspect_err(|s| {
                tracing::debug!(code = ?s.code(), message = s.message(), "refused");
            })?;
            let sub = Subscriber {
                snapshots,
                snap,
                selectors,
                settings: self.settings.clone(),
                stop: self.stop.clone(),
            };
            Ok(sub)
        }
        .instrument(span.clone())
        .await
        .map(|sub| (sub, span))
    }

    /// A stream of either flavour: the caller attested, then `P` served
    /// over its requests until it leaves or the agent stops.
    async fn serve<P: Protocol + Default>(
        &self,
        request: Request<Streaming<P::Request>>,
        method: &'static str,
    ) -> Rpc<ResponseStream<P::Response>>
    where
        Streaming<P::Request>: Send,
    {
        let (sub, span) = self.open(&request, method).await?;
        let requests = request.into_inner();
        Ok(Response::new(stream::serve(
            P::default(),
            requests,
            sub,
            span,
        )))
    }

    /// FetchSecrets: one state-of-the-world answer. Every name asked for
    /// must be available to the caller (PermissionDenied naming the others).
    async fn fetch(&self, request: Request<DiscoveryRequest>) -> Result<DiscoveryResponse, Status> {
        let (sub, span) = self.open(&request, "FetchSecrets").await?;
        let _entered = span.enter();
        let mut sotw = Sotw::default();
        sotw.on_request(request.into_inner())?;
        let cat = sub.catalogue(sotw.node())?;
        let missing = sotw.missing(&cat);
        if !missing.is_empty() {
            tracing::debug!(?missing, "refused");
            return Err(Status::permission_denied(format!(
                "the caller is not entitled to the secrets {missing:?}"
            )));
        }
        sotw.respond(&cat, Due::Now)
            .ok_or_else(|| Status::internal("no response to a new subscription"))
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Rpc<Self::DeltaSecretsStream> {
        self.serve::<Delta>(request, "DeltaSecrets").await
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Rpc<Self::StreamSecretsStream> {
        self.serve::<Sotw>(request, "StreamSecrets").await
    }

    async fn fetch_secrets(&self, request: Request<DiscoveryRequest>) -> Rpc<DiscoveryResponse> {
        self.fetch(request).await.map(Response::new)
    }
}

//! The node API (`herald.node.v1.Node`): agents attest, renew, sync and
//! ask for signatures here.
//!
//! Every call but `Attest` is authenticated by the agent SVID the TLS layer
//! already validated against our bundle; here we only read the SPIFFE ID
//! from it and check that the agent is still attested and not banned.
//! Entries and bundles are pushed on `Sync` (see `sync.rs`): a snapshot in
//! chunks (resumed, `resume.rs`, for an agent that says what it holds),
//! then a message for each change.

mod agent_svid;
mod attest;
mod attest_k8s_psat;
mod attest_x509pop;
mod downstream;
mod federated;
mod reattestable;
mod resume;
mod svids;
mod sync;
mod sync_route;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod x509pop_tests;

pub use self::downstream::DownstreamPolicy;
pub use self::federated::{FederatedCache, FederatedWire};
pub use self::sync_route::SharedSync;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::authorities::Authorities;
use super::authorized::{agent_selectors, authorized_under};
use super::state::ServerState;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::node::wire::bundle_to_wire;
use crate::proto::node::node_server::Node;
use crate::proto::node::{
    self, AckBundleRequest, AckBundleResponse, AttestRequest, AttestResponse,
    BatchNewX509svidRequest as X509Batch, BatchNewX509svidResponse as X509BatchResponse,
    ChallengeRequest, ChallengeResponse, NewDownstreamX509caRequest as DownstreamRequest,
    NewDownstreamX509caResponse as DownstreamCa, NewJwtsvidRequest as JwtRequest,
    NewJwtsvidResponse as JwtResponse, RenewAgentRequest, RenewAgentResponse,
};
use crate::registration::RegistrationEntry;
use crate::server::run::{NodeConnectInfo, PeerSvid, PeerSvidError};
use crate::server::Rpc;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, DataStore, IssuanceRecord, StoreError};

/// The node API service.
#[derive(Clone)]
pub struct NodeApi {
    state: Arc<ServerState>,
    /// Sync streams end when this turns true, so that a graceful shutdown
    /// (which waits for every connection) is not held open by agents.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// How downstream CAs are signed.
    downstream: DownstreamPolicy,
    /// The x509pop node attestor, if configured.
    x509pop: Option<Arc<crate::x509pop::X509PopVerifier>>,
    /// The k8s_psat node attestor, if configured.
    k8s_psat: Option<Arc<crate::server::k8s_psat::PsatAttestor>>,
}

impl NodeApi {
    /// A service over `state` that ends its streams at `shutdown`.
    pub fn new(state: Arc<ServerState>, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        NodeApi {
            state,
            shutdown,
            downstream: DownstreamPolicy::default(),
            x509pop: None,
            k8s_psat: None,
        }
    }

    /// The same service, also attesting agents by x509pop with `verifier`.
    pub fn with_x509pop(mut self, verifier: Option<Arc<crate::x509pop::X509PopVerifier>>) -> Self {
        self.x509pop = verifier;
        self
    }

    /// The same service, also attesting agents by k8s_psat with `attestor`.
    pub fn with_k8s_psat(
        mut self,
        attestor: Option<Arc<crate::server::k8s_psat::PsatAttestor>>,
    ) -> Self {
        self.k8s_psat = attestor;
        self
    }

    /// The same service, signing downstream CAs with `policy`.
    pub fn with_downstream_policy(mut self, policy: DownstreamPolicy) -> Self {
        self.downstream = policy;
        self
    }

    /// The agent behind an mTLS call, if it is attested and not banned. Its
    /// ID goes into the current span's `agent` field.
    async fn authenticate<T>(&self, req: &Request<T>) -> Result<AttestedAgent, Status> {
        let peer = presented(req)?;
        self.as_agent(peer, |_, agent| Ok(agent)).await
    }

    /// Checks that `peer` is an attested agent's current SVID, then runs
    /// `then` with the agent's record: both in one trip to the blocking
    /// pool, which on the one-CSR path is a thread wake-up saved per call.
    async fn as_agent<T, F>(&self, peer: PeerSvid, then: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn DataStore, AttestedAgent) -> Result<T, Status> + Send + 'static,
    {
        let outcome = self
            .state
            .with_store(move |store| Ok(attested(store, &peer).and_then(|a| then(store, a))))
            .await;
        outcome.map_err(internal)?
    }

    /// The entries `agent` is authorized for now, with the node aliases
    /// as the server last loaded them (reloaded after every entry change)
    /// and the agent's selectors as its record holds them now.
    async fn authorized(
        &self,
        agent: &SpiffeId,
    ) -> Result<BTreeMap<String, RegistrationEntry>, Status> {
        let aliases = self.state.node_aliases().await.map_err(internal)?;
        let agent = agent.clone();
        self.state
            .with_store(move |s| {
                let now = now_unix();
                let naming = match aliases.is_empty() {
                    true => Vec::new(),
                    false => aliases.matching(&agent_selectors(s, &agent)?, now),
                };
                authorized_under(s, &agent, &naming, now)
            })
            .await
            .map_err(internal)
    }
}

/// The own bundle as pushed to agents, with the taint lists.
fn own_bundle_wire(authorities: &Authorities) -> node::Bundle {
    let mut b = bundle_to_wire(authorities.bundle());
    b.tainted_x509_authorities = authorities.tainted_x509();
    b.tainted_jwt_key_ids = authorities.tainted_jwt();
    b
}

/// A signing failure is ours, never the caller's: logged with its chain,
/// and Internal on the wire, naming what was being signed.
fn signing_failed<E: std::error::Error>(what: &'static str) -> impl FnOnce(E) -> Status {
    move |e| {
        tracing::error!(error = %Chain(&e), "signing {what} failed");
        Status::internal(format!("signing {what} failed: {e}"))
    }
}

impl NodeApi {
    /// Makes the issuance log durable before anything it lists leaves the
    /// server: no certificate goes out without a trace.
    async fn record_issuances(&self, records: Vec<IssuanceRecord>) -> Result<(), Status> {
        if records.is_empty() {
            return Ok(());
        }
        self.state
            .with_store(move |s| s.append_issuances(&records))
            .await
            .map_err(internal)
    }
}

/// The SVID the caller presented as its TLS client certificate, read
/// once per connection (no store read yet). Its ID goes into the current
/// span's `agent` field.
fn presented<T>(req: &Request<T>) -> Result<PeerSvid, Status> {
    let info = req
        .extensions()
        .get::<NodeConnectInfo>()
        .ok_or_else(|| Status::unauthenticated(PeerSvidError::NoCertificate.to_string()))?;
    let peer = info
        .client_svid()
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    tracing::Span::current().record("agent", tracing::field::display(&peer.id));
    Ok(peer.clone())
}

/// The agent record behind `peer`, if the agent is attested, not banned,
/// and `peer` is its current SVID.
fn attested(store: &dyn DataStore, peer: &PeerSvid) -> Result<AttestedAgent, Status> {
    let id = &peer.id;
    let agent = store.get_agent(id).map_err(internal)?.ok_or_else(|| {
        Status::permission_denied(format!(
            "agent {id} is not attested (evicted?); attest again with a new join token"
        ))
    })?;
    if agent.banned {
        return Err(attest::banned(id));
    }
    // Only the agent's current SVID authenticates it: a copied or
    // superseded SVID (one renewal ago, or from before an eviction and
    // re-attestation) chains to the CA but is refused here.
    if peer.serial != agent.serial {
        return Err(Status::permission_denied(format!(
            "agent {id}: this SVID (serial {}) is not the agent's current one",
            peer.serial
        )));
    }
    Ok(agent)
}

fn internal(e: StoreError) -> Status {
    tracing::error!(error = %Chain(&e), "datastore failure in the node API");
    Status::internal(format!("datastore: {e}"))
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<node::SyncUpdate, Status>> + Send>>;

/// Every RPC runs in a span named after it; `agent` is filled in once the
/// caller's certificate is read.
#[tonic::async_trait]
impl Node for NodeApi {
    // Never the token itself in the span: it is a secret.
    #[tracing::instrument(name = "node.attest", skip_all, fields(token_prefix = %token_prefix(&req), agent))]
    async fn attest(&self, req: Request<AttestRequest>) -> Rpc<AttestResponse> {
        let mut req = req.into_inner();
        let methods = [
            !req.join_token.is_empty(),
            req.x509pop.is_some(),
            req.k8s_psat.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(Status::invalid_argument(
                "set exactly one of join_token, x509pop and k8s_psat",
            ));
        }
        if let Some(psat) = req.k8s_psat.take() {
            return self.attest_k8s_psat(req.csr, psat).await.map(Response::new);
        }
        match req.x509pop.take() {
            Some(proof) => self.attest_x509pop(req.csr, proof).await,
            None => self.attest_join_token(req).await,
        }
        .map(Response::new)
    }

    #[tracing::instrument(name = "node.challenge", skip_all)]
    async fn challenge(&self, _req: Request<ChallengeRequest>) -> Rpc<ChallengeResponse> {
        self.x509pop_challenge().map(Response::new)
    }

    #[tracing::instrument(name = "node.renew_agent", skip_all, fields(agent))]
    async fn renew_agent(&self, req: Request<RenewAgentRequest>) -> Rpc<RenewAgentResponse> {
        let agent = self.authenticate(&req).await?;
        self.renew(agent, &req.get_ref().csr)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "node.new_downstream_x509_ca", skip_all, fields(agent))]
    async fn new_downstream_x509ca(&self, req: Request<DownstreamRequest>) -> Rpc<DownstreamCa> {
        let agent = self.authenticate(&req).await?;
        let signed = self.downstream_ca(&agent, req.get_ref()).await;
        signed.map(Response::new)
    }

    #[tracing::instrument(name = "node.ack_bundle", skip_all, fields(agent))]
    async fn ack_bundle(&self, req: Request<AckBundleRequest>) -> Rpc<AckBundleResponse> {
        let agent = self.authenticate(&req).await?;
        let sequence = req.get_ref().sequence;
        tracing::debug!(sequence, "bundle acknowledged");
        self.state.agent_acked(&agent.spiffe_id, sequence);
        Ok(Response::new(AckBundleResponse {}))
    }

    type SyncStream = SyncStream;

    /// Served by [`SharedSync`] on the node listener; this is tonic's
    /// path to the same stream, its messages encoded by tonic.
    async fn sync(&self, req: Request<node::SyncRequest>) -> Rpc<Self::SyncStream> {
        let request = req.get_ref().clone();
        let rx = self.start_sync(&req, async { Ok(request) }).await?;
        let updates = ReceiverStream::new(rx).map(|part| part.map(sync::SyncPart::into_update));
        Ok(Response::new(Box::pin(updates)))
    }

    #[tracing::instrument(name = "node.batch_new_x509_svid", skip_all, fields(
        agent, count = req.get_ref().params.len()))]
    async fn batch_new_x509svid(&self, req: Request<X509Batch>) -> Rpc<X509BatchResponse> {
        let peer = presented(&req)?;
        let params = req.into_inner().params;
        let signed = self.sign_x509_batch(peer, params).await;
        signed.map(Response::new)
    }

    #[tracing::instrument(name = "node.new_jwt_svid", skip_all, fields(
        agent, entry = %req.get_ref().entry_id))]
    async fn new_jwtsvid(&self, req: Request<JwtRequest>) -> Rpc<JwtResponse> {
        let peer = presented(&req)?;
        let jwt = self.sign_jwt(peer, req.into_inner()).await;
        jwt.map(Response::new)
    }
}

/// The first characters of a join token, enough to tell tokens apart in
/// logs without revealing one.
fn token_prefix(req: &Request<AttestRequest>) -> String {
    req.get_ref().join_token.chars().take(4).collect()
}

impl NodeApi {
    /// Authenticates a Sync call, then reads its request (`request`: only
    /// an authenticated agent gets its body read) and starts its stream.
    #[tracing::instrument(name = "node.sync", skip_all, fields(agent))]
    async fn start_sync<T>(
        &self,
        req: &Request<T>,
        request: impl std::future::Future<Output = Result<node::SyncRequest, Status>>,
    ) -> Result<mpsc::Receiver<Result<sync::SyncPart, Status>>, Status> {
        let agent = self.authenticate(req).await?;
        let request = request.await?;
        self.open_sync(agent.spiffe_id, request).await
    }

    /// Starts an agent's Sync stream: subscribes to changes, reads the
    /// snapshot, and pushes both from a task of its own (in the current
    /// span) until the agent goes away.
    async fn open_sync(
        &self,
        agent: SpiffeId,
        request: node::SyncRequest,
    ) -> Result<mpsc::Receiver<Result<sync::SyncPart, Status>>, Status> {
        // Subscribe before reading the snapshot, so no change falls between.
        let events = self.state.subscribe();
        let entries = self.authorized(&agent).await?;
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(
            async move {
                if let Err(status) = api.run_sync(agent, entries, events, &tx, request).await {
                    let _ = tx.send(Err(status)).await;
                }
            }
            .in_current_span(),
        );
        Ok(rx)
    }
}

//! The node API (`herald.node.v1.Node`): agents attest, renew, sync and
//! ask for signatures here.
//!
//! Every call but `Attest` is authenticated by the agent SVID the TLS layer
//! already validated against our bundle; here we only read the SPIFFE ID
//! from it and check that the agent is still attested and not banned.
//! Entries and bundles are pushed on `Sync` (see `sync.rs`): a snapshot in
//! chunks, then a message for each change.

mod sync;

use crate::clock::now_unix;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::authorized::authorized_entries;
use super::state::ServerState;
use crate::ca::{verify_csr, SvidRequest};
use crate::node::wire::bundle_to_wire;
use crate::proto::node::{self, node_server::Node};
use crate::registration::RegistrationEntry;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, IssuanceRecord, StoreError};

/// The node API service.
#[derive(Clone)]
pub struct NodeApi {
    state: Arc<ServerState>,
    /// Sync streams end when this turns true, so that a graceful shutdown
    /// (which waits for every connection) is not held open by agents.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl NodeApi {
    /// A service over `state` that ends its streams at `shutdown`.
    pub fn new(state: Arc<ServerState>, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        NodeApi { state, shutdown }
    }

    /// The agent behind an mTLS call, if it is attested and not banned.
    async fn authenticate<T>(&self, req: &Request<T>) -> Result<AttestedAgent, Status> {
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "this call needs the agent's X509-SVID as TLS client certificate",
                )
            })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let id =
            crate::tls::spiffe_id_of(leaf).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let presented = crate::ca::x509::cert_facts(leaf)
            .map_err(|e| Status::unauthenticated(e.to_string()))?
            .serial;
        let lookup = id.clone();
        let agent = self
            .state
            .with_store(move |s| s.get_agent(&lookup))
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "agent {id} is not attested (evicted?); attest again with a new join token"
                ))
            })?;
        if agent.banned {
            return Err(Status::permission_denied(format!("agent {id} is banned")));
        }
        // Only the agent's current SVID authenticates it: a copied or
        // superseded SVID (one renewal ago, or from before an eviction and
        // re-attestation) chains to the CA but is refused here.
        if presented != agent.serial {
            return Err(Status::permission_denied(format!(
                "agent {id}: this SVID (serial {presented}) is not the agent's current one"
            )));
        }
        Ok(agent)
    }

    /// The agent's authorized entries as its Sync stream last computed them
    /// (kept current on every entry change), or from the store when it has
    /// no stream open. The cache can trail an entry deletion by one event;
    /// the agent drops SVIDs of deleted entries when the change reaches it.
    async fn authorized_cached(
        &self,
        agent: &SpiffeId,
    ) -> Result<Arc<BTreeMap<String, RegistrationEntry>>, Status> {
        match self.state.authorized_for(agent) {
            Some(a) => Ok(a),
            None => Ok(Arc::new(self.authorized(agent).await?)),
        }
    }

    async fn authorized(
        &self,
        agent: &SpiffeId,
    ) -> Result<BTreeMap<String, RegistrationEntry>, Status> {
        let agent = agent.clone();
        self.state
            .with_store(move |s| authorized_entries(s, &agent, now_unix()))
            .await
            .map_err(internal)
    }

    /// Signs an agent SVID for `agent_id` over the CSR's key and records it.
    async fn sign_agent_svid(
        &self,
        agent_id: &SpiffeId,
        csr: &[u8],
    ) -> Result<(Vec<Vec<u8>>, String, i64), Status> {
        let csr = verify_csr(csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let authorities = self.state.authorities();
        let now = now_unix();
        let cert = authorities
            .x509()
            .sign_svid(
                &SvidRequest {
                    spiffe_id: agent_id,
                    public_key_spki: &csr.public_key_spki,
                    ttl_secs: self.state.settings.agent_svid_ttl,
                    dns_names: &[],
                },
                now,
            )
            .map_err(|e| Status::internal(format!("signing the agent SVID failed: {e}")))?;
        let record = IssuanceRecord {
            serial: cert.serial.clone(),
            spiffe_id: agent_id.clone(),
            agent_id: Some(agent_id.clone()),
            entry_id: None,
            not_after: cert.not_after,
            issued_at: now,
        };
        self.state
            .with_store(move |s| s.append_issuances(&[record]))
            .await
            .map_err(internal)?;
        Ok((cert.chain, cert.serial, cert.not_after))
    }
}

/// The own bundle as pushed to agents, with the taint lists.
fn own_bundle_wire(authorities: &super::authorities::Authorities) -> node::Bundle {
    let mut b = bundle_to_wire(authorities.bundle());
    b.tainted_x509_authorities = authorities.tainted_x509();
    b.tainted_jwt_key_ids = authorities.tainted_jwt();
    b
}

/// Signs one CSR of a batch for an entry the agent is authorized for.
fn sign_one(
    authorities: &super::authorities::Authorities,
    authorized: &BTreeMap<String, RegistrationEntry>,
    agent: &SpiffeId,
    p: &node::NewX509svidParams,
    default_ttl: i64,
    now: i64,
) -> (node::X509svidResult, Option<IssuanceRecord>) {
    let fail = |code: tonic::Code, message: String| {
        let result = node::X509svidResult {
            entry_id: p.entry_id.clone(),
            code: code as i32,
            message,
            ..Default::default()
        };
        (result, None)
    };
    let Some(entry) = authorized.get(&p.entry_id) else {
        return fail(
            tonic::Code::PermissionDenied,
            format!("entry {:?} is not authorized for this agent", p.entry_id),
        );
    };
    let csr = match verify_csr(&p.csr) {
        Ok(c) => c,
        Err(e) => return fail(tonic::Code::InvalidArgument, format!("csr: {e}")),
    };
    let ttl = if entry.x509_svid_ttl == 0 {
        default_ttl
    } else {
        i64::from(entry.x509_svid_ttl)
    };
    let req = SvidRequest {
        spiffe_id: &entry.spiffe_id,
        public_key_spki: &csr.public_key_spki,
        ttl_secs: ttl,
        dns_names: &entry.dns_names,
    };
    match authorities.x509().sign_svid(&req, now) {
        Ok(cert) => {
            let record = IssuanceRecord {
                serial: cert.serial.clone(),
                spiffe_id: entry.spiffe_id.clone(),
                agent_id: Some(agent.clone()),
                entry_id: Some(entry.id.clone()),
                not_after: cert.not_after,
                issued_at: now,
            };
            let result = node::X509svidResult {
                entry_id: entry.id.clone(),
                cert_chain: cert.chain,
                expires_at: cert.not_after,
                code: 0,
                message: String::new(),
            };
            (result, Some(record))
        }
        Err(e) => fail(tonic::Code::Internal, format!("signing failed: {e}")),
    }
}

fn internal(e: StoreError) -> Status {
    Status::internal(format!("datastore: {e}"))
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<node::SyncUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl Node for NodeApi {
    async fn attest(
        &self,
        request: Request<node::AttestRequest>,
    ) -> Result<Response<node::AttestResponse>, Status> {
        let req = request.into_inner();
        let prefix: String = req.join_token.chars().take(4).collect();
        let span = tracing::info_span!("node.attest", token_prefix = %prefix);
        async move {
            if req.join_token.is_empty() {
                return Err(Status::invalid_argument("join_token: must not be empty"));
            }
            // Check the CSR before spending the token, so a bad CSR does not burn it.
            verify_csr(&req.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
            let token = req.join_token.clone();
            let consumed = self
                .state
                .with_store(move |s| s.consume_join_token(&token, now_unix()))
                .await;
            let token = match consumed {
                Ok(t) => t,
                Err(StoreError::NotFound { .. }) => {
                    return Err(Status::permission_denied(
                        "join token is unknown or was already used",
                    ))
                }
                Err(StoreError::TokenExpired { .. }) => {
                    return Err(Status::permission_denied("join token has expired"))
                }
                Err(e) => return Err(internal(e)),
            };
            let td = &self.state.trust_domain;
            let agent_id = match token.agent_id {
                Some(id) => id,
                None => SpiffeId::new(td, &format!("/herald/agent/join_token/{}", token.token))
                    .map_err(|e| Status::internal(format!("agent ID: {e}")))?,
            };
            let lookup = agent_id.clone();
            let existing = self
                .state
                .with_store(move |s| s.get_agent(&lookup))
                .await
                .map_err(internal)?;
            if existing.as_ref().is_some_and(|a| a.banned) {
                return Err(Status::permission_denied(format!(
                    "agent {agent_id} is banned"
                )));
            }
            let (chain, serial, not_after) = self.sign_agent_svid(&agent_id, &req.csr).await?;
            let now = now_unix();
            let record = AttestedAgent {
                spiffe_id: agent_id.clone(),
                attestation_type: "join_token".into(),
                serial,
                expires_at: not_after,
                banned: false,
                selectors: vec![],
                created_at: existing.map(|a| a.created_at).unwrap_or(now),
                updated_at: now,
            };
            self.state
                .with_store(move |s| s.attest_agent(&record))
                .await
                .map_err(|e| match e {
                    StoreError::AgentBanned { .. } | StoreError::AlreadyExists { .. } => {
                        Status::permission_denied(e.to_string())
                    }
                    e => internal(e),
                })?;
            tracing::info!(agent = %agent_id, "agent attested");
            Ok(Response::new(node::AttestResponse {
                svid_chain: chain,
                spiffe_id: agent_id.to_string(),
                bundle: Some(own_bundle_wire(&self.state.authorities())),
            }))
        }
        .instrument(span)
        .await
    }

    async fn renew_agent(
        &self,
        request: Request<node::RenewAgentRequest>,
    ) -> Result<Response<node::RenewAgentResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let span = tracing::info_span!("node.renew_agent", agent = %agent.spiffe_id);
        async move {
            let (chain, serial, not_after) = self
                .sign_agent_svid(&agent.spiffe_id, &request.get_ref().csr)
                .await?;
            // Compare-and-swap against the serial the caller authenticated
            // with: of two holders of one SVID only the first renews, and a
            // ban or eviction that landed meanwhile is never written away.
            let (id, presented) = (agent.spiffe_id.clone(), agent.serial.clone());
            self.state
                .with_store(move |s| {
                    s.update_agent(&id, &mut |current| {
                        if current.serial != presented {
                            return Err(StoreError::Conflict {
                                what: "the agent SVID was renewed by another caller",
                            });
                        }
                        Ok(AttestedAgent {
                            serial: serial.clone(),
                            expires_at: not_after,
                            updated_at: now_unix(),
                            ..current.clone()
                        })
                    })
                })
                .await
                .map_err(|e| match e {
                    StoreError::AgentBanned { .. }
                    | StoreError::NotFound { .. }
                    | StoreError::Conflict { .. } => Status::permission_denied(e.to_string()),
                    e => internal(e),
                })?;
            Ok(Response::new(node::RenewAgentResponse {
                svid_chain: chain,
            }))
        }
        .instrument(span)
        .await
    }

    async fn new_downstream_x509ca(
        &self,
        request: Request<node::NewDownstreamX509caRequest>,
    ) -> Result<Response<node::NewDownstreamX509caResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let span = tracing::info_span!("node.new_downstream_x509_ca", caller = %agent.spiffe_id);
        async move {
            // Deny unless an entry marked `downstream` authorizes the caller.
            let authorized = self.authorized(&agent.spiffe_id).await?;
            if !authorized.values().any(|e| e.downstream) {
                return Err(Status::permission_denied(format!(
                    "no entry marked downstream authorizes {}; create one with --downstream and this parent",
                    agent.spiffe_id
                )));
            }
            let req = request.get_ref();
            let csr = verify_csr(&req.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
            if req.preferred_ttl < 0 {
                return Err(Status::invalid_argument("preferred_ttl: must not be negative"));
            }
            let authorities = self.state.authorities();
            let ca = authorities.x509();
            let ttl = if req.preferred_ttl == 0 {
                authorities.settings().ca_ttl_secs
            } else {
                req.preferred_ttl
            };
            let signed = ca
                .sign_ca(&self.state.trust_domain, &csr.public_key_spki, ttl, now_unix())
                .map_err(|e| Status::internal(format!("signing the downstream CA failed: {e}")))?;
            tracing::info!(serial = %signed.serial, not_after = signed.not_after, "signed a downstream CA");
            Ok(Response::new(node::NewDownstreamX509caResponse {
                ca_cert_chain: signed.chain,
                x509_authorities: authorities.bundle().x509_authorities.clone(),
            }))
        }
        .instrument(span)
        .await
    }

    async fn ack_bundle(
        &self,
        request: Request<node::AckBundleRequest>,
    ) -> Result<Response<node::AckBundleResponse>, Status> {
        self.ack(request).await
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<node::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let agent = self.authenticate(&request).await?;
        // Subscribe before reading the snapshot, so no change falls between.
        let events = self.state.subscribe();
        let entries = self.authorized(&agent.spiffe_id).await?;
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        let span = tracing::info_span!("node.sync", agent = %agent.spiffe_id);
        tokio::spawn(
            async move {
                if let Err(status) = api.run_sync(agent.spiffe_id, entries, events, &tx).await {
                    let _ = tx.send(Err(status)).await;
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn batch_new_x509svid(
        &self,
        request: Request<node::BatchNewX509svidRequest>,
    ) -> Result<Response<node::BatchNewX509svidResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let span = tracing::info_span!("node.batch_new_x509_svid", agent = %agent.spiffe_id, count = request.get_ref().params.len());
        async move {
            let authorized = self.authorized_cached(&agent.spiffe_id).await?;
            let authorities = self.state.authorities();
            let now = now_unix();
            let default_ttl = self.state.settings.default_x509_svid_ttl;
            let params = request.into_inner().params;
            // Verify and sign on the blocking pool, one chunk per core: it is
            // pure CPU, and one agent's batch should use the whole machine.
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let total = params.len();
            let chunk_len = total.div_ceil(cores).max(1);
            let mut tasks = Vec::new();
            let mut rest = params;
            while !rest.is_empty() {
                let tail = rest.split_off(chunk_len.min(rest.len()));
                let chunk = std::mem::replace(&mut rest, tail);
                let (authorities, authorized) = (authorities.clone(), authorized.clone());
                let agent_id = agent.spiffe_id.clone();
                tasks.push(tokio::task::spawn_blocking(move || {
                    chunk
                        .iter()
                        .map(|p| {
                            sign_one(&authorities, &authorized, &agent_id, p, default_ttl, now)
                        })
                        .collect::<Vec<_>>()
                }));
            }
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(total);
            for task in tasks {
                let signed = task
                    .await
                    .map_err(|e| Status::internal(format!("signing task failed: {e}")))?;
                for (result, record) in signed {
                    results.push(result);
                    records.extend(record);
                }
            }
            // One durable write for the whole batch, before any SVID leaves.
            if !records.is_empty() {
                self.state
                    .with_store(move |s| s.append_issuances(&records))
                    .await
                    .map_err(internal)?;
            }
            Ok(Response::new(node::BatchNewX509svidResponse { results }))
        }
        .instrument(span)
        .await
    }

    async fn new_jwtsvid(
        &self,
        request: Request<node::NewJwtsvidRequest>,
    ) -> Result<Response<node::NewJwtsvidResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        let span = tracing::info_span!("node.new_jwt_svid", agent = %agent.spiffe_id, entry = %req.entry_id);
        async move {
            if req.audience.iter().all(|a| a.is_empty()) {
                return Err(Status::invalid_argument(
                    "audience: must name at least one audience",
                ));
            }
            let authorized = self.authorized_cached(&agent.spiffe_id).await?;
            let entry = authorized.get(&req.entry_id).ok_or_else(|| {
                Status::permission_denied(format!(
                    "entry {:?} is not authorized for this agent",
                    req.entry_id
                ))
            })?;
            let ttl = if entry.jwt_svid_ttl == 0 {
                self.state.settings.default_jwt_svid_ttl
            } else {
                i64::from(entry.jwt_svid_ttl)
            };
            let now = now_unix();
            let authorities = self.state.authorities();
            let token = authorities
                .jwt()
                .sign(&entry.spiffe_id, &req.audience, ttl, now)
                .map_err(|e| Status::internal(format!("signing the JWT-SVID failed: {e}")))?;
            Ok(Response::new(node::NewJwtsvidResponse {
                token,
                expires_at: (now + ttl).min(authorities.jwt().not_after()),
            }))
        }
        .instrument(span)
        .await
    }
}

impl NodeApi {
    async fn ack(
        &self,
        request: Request<node::AckBundleRequest>,
    ) -> Result<Response<node::AckBundleResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let sequence = request.get_ref().sequence;
        tracing::debug!(agent = %agent.spiffe_id, sequence, "bundle acknowledged");
        self.state.agent_acked(&agent.spiffe_id, sequence);
        Ok(Response::new(node::AckBundleResponse {}))
    }
}

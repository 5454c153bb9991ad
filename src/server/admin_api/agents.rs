//! The Agents service: join tokens, and the attested agents (list, show,
//! evict, ban).

use crate::clock::now_unix;
use std::sync::Arc;

use ring::rand::SecureRandom as _;
use tonic::{Request, Response, Status};

use super::convert::{agent_to_proto, store_status, store_status_or};
use super::{page_request, ttl_or_default};
use crate::proto::admin::{self, agents_server::Agents};
use crate::proto::admin::{
    Agent, AgentIdRequest, CreateJoinTokenRequest as CreateTokenReq, Empty, ListAgentsRequest,
    ListAgentsResponse,
};
use crate::server::state::{ServerEvent, ServerState};
use crate::server::validate::{check_len, member_id, ValidationError};
use crate::server::Rpc;
use crate::spiffe::id::is_path_segment;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, JoinToken, StoreError};

/// Longest join token an administrator may choose.
const MAX_TOKEN_LEN: usize = 255;

/// Serves the Agents service.
pub(super) struct AgentsApi {
    state: Arc<ServerState>,
}

impl AgentsApi {
    pub(super) fn new(state: Arc<ServerState>) -> Self {
        AgentsApi { state }
    }

    /// An agent's record as the API shows it, with whether it is connected
    /// now, what it acknowledged, and when it was last seen.
    fn shown(&self, a: &AttestedAgent) -> Agent {
        let live = self.state.connected_acked(&a.spiffe_id);
        Agent {
            connected: live.is_some(),
            acked_bundle_sequence: live.unwrap_or(0),
            last_seen_at: if live.is_some() {
                now_unix()
            } else {
                a.updated_at
            },
            ..agent_to_proto(a)
        }
    }

    fn agent_id(&self, value: &str) -> Result<SpiffeId, Status> {
        Ok(member_id(&self.state.trust_domain, "id", value)?)
    }

    async fn create_join_token(
        &self,
        req: admin::CreateJoinTokenRequest,
    ) -> Result<admin::JoinToken, Status> {
        let ttl = ttl_or_default("ttl", req.ttl, self.state.settings.default_join_token_ttl)?;
        let token = if req.token.is_empty() {
            new_token()?
        } else {
            check_token(&req.token)?;
            req.token
        };
        let agent_id = if req.agent_id.is_empty() {
            None
        } else {
            let id = member_id(&self.state.trust_domain, "agent_id", &req.agent_id)?;
            check_claimable_agent_id(&id)?;
            // A live agent's ID may be named (for after its eviction), but
            // attestation refuses it while the agent's record exists.
            Some(id)
        };
        let shown_id = match &agent_id {
            Some(id) => id.to_string(),
            None => format!(
                "{}/herald/agent/join_token/{token}",
                self.state.trust_domain.id_string()
            ),
        };
        let expires_at = now_unix().saturating_add(ttl);
        let record = JoinToken {
            token: token.clone(),
            expires_at,
            agent_id,
        };
        self.state
            .with_store(move |store| store.create_join_token(record))
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists { .. } => {
                    Status::already_exists("token: a join token with this value already exists")
                }
                e => store_status(e),
            })?;
        tracing::info!(agent_id = %shown_id, expires_at, "created a join token");
        Ok(admin::JoinToken {
            value: token,
            expires_at,
            agent_id: shown_id,
        })
    }

    async fn list(&self, req: ListAgentsRequest) -> Result<ListAgentsResponse, Status> {
        let page = page_request(req.page_size, &req.page_token)?;
        let page = self
            .state
            .with_store(move |store| store.list_agents(&page))
            .await
            .map_err(store_status)?;
        Ok(ListAgentsResponse {
            agents: page.items.iter().map(|a| self.shown(a)).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        })
    }

    async fn get(&self, id: SpiffeId) -> Result<Agent, Status> {
        let agent = self.state.lookup(&id, |s, id| s.get_agent(id)).await;
        let agent = agent.map_err(store_status)?;
        agent.map(|a| self.shown(&a)).ok_or_else(|| not_found(&id))
    }

    async fn evict(&self, id: SpiffeId) -> Result<(), Status> {
        let target = id.clone();
        self.state
            .with_store(move |store| store.delete_agent(&target))
            .await
            .map_err(|e| store_status_or(e, || not_found(&id)))?;
        tracing::info!("evicted agent");
        self.state.publish(ServerEvent::AgentRevoked(id));
        Ok(())
    }

    async fn ban(&self, id: SpiffeId) -> Result<(), Status> {
        let target = id.clone();
        let found = self
            .state
            .with_store(move |store| {
                let banned = store.update_agent(&target, &mut |agent| {
                    Ok(AttestedAgent {
                        banned: true,
                        updated_at: now_unix(),
                        ..agent.clone()
                    })
                });
                match banned {
                    Ok(_) => Ok(true),
                    Err(StoreError::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(store_status)?;
        if !found {
            return Err(not_found(&id));
        }
        tracing::info!("banned agent");
        self.state.publish(ServerEvent::AgentRevoked(id));
        Ok(())
    }
}

fn not_found(id: &SpiffeId) -> Status {
    Status::not_found(format!("agent {id} not found"))
}

/// 32 random hex characters (128 bits) from the system's CSPRNG.
fn new_token() -> Result<String, Status> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Status::internal("the system random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A chosen token becomes a path segment of the agent's default ID, so it
/// must be one: `[A-Za-z0-9._-]`, not `.` or `..`.
fn check_token(token: &str) -> Result<(), ValidationError> {
    check_len("token", token, MAX_TOKEN_LEN)?;
    if is_path_segment(token) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "token",
            "may only contain A-Z, a-z, 0-9, '.', '_' and '-' (and is not '.' or '..')",
        ))
    }
}

#[tonic::async_trait]
impl Agents for AgentsApi {
    // Never the token itself in the span: it is a secret.
    #[tracing::instrument(name = "admin.CreateJoinToken", skip_all, fields(
        agent_id = %req.get_ref().agent_id, ttl = req.get_ref().ttl))]
    async fn create_join_token(&self, req: Request<CreateTokenReq>) -> Rpc<admin::JoinToken> {
        self.create_join_token(req.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "admin.ListAgents", skip_all, fields(
        page_size = req.get_ref().page_size))]
    async fn list_agents(&self, req: Request<ListAgentsRequest>) -> Rpc<ListAgentsResponse> {
        self.list(req.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.GetAgent", skip_all, fields(
        agent_id = %req.get_ref().id))]
    async fn get_agent(&self, req: Request<AgentIdRequest>) -> Rpc<Agent> {
        let id = self.agent_id(&req.into_inner().id)?;
        self.get(id).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.DeleteAgent", skip_all, fields(
        agent_id = %req.get_ref().id))]
    async fn delete_agent(&self, req: Request<AgentIdRequest>) -> Rpc<Empty> {
        let id = self.agent_id(&req.into_inner().id)?;
        self.evict(id).await.map(empty)
    }

    #[tracing::instrument(name = "admin.BanAgent", skip_all, fields(
        agent_id = %req.get_ref().id))]
    async fn ban_agent(&self, req: Request<AgentIdRequest>) -> Rpc<Empty> {
        let id = self.agent_id(&req.into_inner().id)?;
        self.ban(id).await.map(empty)
    }
}

/// The path under which a join token may name its agent: the server's own
/// ID and workloads' IDs lie elsewhere.
const AGENT_PREFIX: &str = "/herald/agent/";

/// Refuses an `agent_id` a token must not grant: anything outside the agent
/// prefix, such as the server's own identity or a workload's.
fn check_claimable_agent_id(id: &SpiffeId) -> Result<(), Status> {
    match id.path().strip_prefix(AGENT_PREFIX) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "agent_id: {id} is not under {AGENT_PREFIX}; a join token can only grant an agent ID"
        ))),
    }
}

fn empty(_: ()) -> Response<Empty> {
    Response::new(Empty {})
}

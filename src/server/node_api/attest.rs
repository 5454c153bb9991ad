//! Attestation with a join token: the token is spent once, and the agent
//! gets its first SVID and the bundle.

use tonic::Status;

use super::{internal, own_bundle_wire, NodeApi};
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, JoinToken, StoreError};

impl NodeApi {
    pub(super) async fn attest_join_token(
        &self,
        req: node::AttestRequest,
    ) -> Result<node::AttestResponse, Status> {
        if req.join_token.is_empty() {
            return Err(Status::invalid_argument("join_token: must not be empty"));
        }
        // Check the CSR before spending the token, so a bad CSR does not burn it.
        verify_csr(&req.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let token = self.consume(req.join_token).await?;
        let agent_id = match token.agent_id {
            Some(id) => id,
            None => default_agent_id(&self.state.trust_domain, &token.token)?,
        };
        let existing = self.state.lookup(&agent_id, |s, id| s.get_agent(id)).await;
        let existing = existing.map_err(internal)?;
        if existing.as_ref().is_some_and(|a| a.banned) {
            return Err(banned(&agent_id));
        }
        let svid = self.sign_agent_svid(&agent_id, &req.csr).await?;
        let now = now_unix();
        let record = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: "join_token".into(),
            serial: svid.serial,
            expires_at: svid.not_after,
            banned: false,
            selectors: vec![],
            created_at: existing.map(|a| a.created_at).unwrap_or(now),
            updated_at: now,
        };
        self.state
            .with_store(move |s| s.attest_agent(&record))
            .await
            .map_err(|e| match e {
                // A ban or another node's attestation landed meanwhile, or
                // the token names a live agent: never take its identity.
                StoreError::AgentBanned { .. } | StoreError::AlreadyExists { .. } => {
                    Status::permission_denied(e.to_string())
                }
                e => internal(e),
            })?;
        tracing::info!(agent = %agent_id, "agent attested");
        Ok(node::AttestResponse {
            svid_chain: svid.chain,
            spiffe_id: agent_id.to_string(),
            bundle: Some(own_bundle_wire(&self.state.authorities())),
        })
    }

    /// Spends a join token: unknown, used and expired tokens are refused
    /// alike as `PermissionDenied`.
    async fn consume(&self, token: String) -> Result<JoinToken, Status> {
        let consumed = self
            .state
            .with_store(move |s| s.consume_join_token(&token, now_unix()))
            .await;
        match consumed {
            Ok(t) => Ok(t),
            Err(StoreError::NotFound { .. }) => Err(Status::permission_denied(
                "join token is unknown or was already used",
            )),
            Err(StoreError::TokenExpired { .. }) => {
                Err(Status::permission_denied("join token has expired"))
            }
            Err(e) => Err(internal(e)),
        }
    }
}

/// The agent ID of a token that names none: derived from the token.
fn default_agent_id(td: &crate::spiffe::TrustDomain, token: &str) -> Result<SpiffeId, Status> {
    SpiffeId::new(td, &format!("/herald/agent/join_token/{token}")).map_err(|e| {
        tracing::error!(error = %crate::errors::Chain(&e), "cannot derive the agent ID");
        Status::internal(format!("agent ID: {e}"))
    })
}

pub(super) fn banned(agent: &SpiffeId) -> Status {
    Status::permission_denied(format!("agent {agent} is banned"))
}

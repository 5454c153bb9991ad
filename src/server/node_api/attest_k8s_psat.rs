//! k8s_psat attestation (see [`crate::server::k8s_psat`]): the agent's
//! projected service-account token, vouched for by its cluster. A token
//! is not single-use (the kubelet hands the pod a fresh one as it nears
//! expiry), so, as in SPIRE, the same node may attest again under its ID:
//! its record is replaced through the store's compare-and-swap, never if
//! banned, and a record made by another attestor is never taken over. A
//! token past `exp` is refused. The token is never logged.

use tonic::Status;

use super::attest::banned;
use super::attest_x509pop::record_attestation;
use super::{internal, own_bundle_wire, NodeApi};
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::k8s_psat::ATTESTATION_TYPE;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, StoreError};

fn not_enabled() -> Status {
    Status::failed_precondition(
        "k8s_psat attestation is not enabled on this server ([node_attestors.k8s_psat] in server.toml)",
    )
}

fn taken(id: &SpiffeId, attestation_type: &str) -> Status {
    Status::permission_denied(format!(
        "agent {id} was attested by {attestation_type}; k8s_psat cannot take over its identity"
    ))
}

impl NodeApi {
    pub(super) async fn attest_k8s_psat(
        &self,
        csr: Vec<u8>,
        psat: node::K8sPsatToken,
    ) -> Result<node::AttestResponse, Status> {
        let attestor = self.k8s_psat.as_ref().ok_or_else(not_enabled)?;
        if psat.cluster.is_empty() || psat.token.is_empty() {
            return Err(Status::invalid_argument(
                "k8s_psat: cluster and token must not be empty",
            ));
        }
        verify_csr(&csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let verified = attestor
            .verify(&psat.cluster, &psat.token, now_unix())
            .await
            .map_err(|e| {
                let msg = Chain(&e).to_string();
                tracing::warn!(cluster = %psat.cluster.chars().take(64).collect::<String>(), error = %msg, "k8s_psat attestation refused");
                if e.is_unavailable() {
                    Status::unavailable(msg)
                } else {
                    Status::permission_denied(msg)
                }
            })?;
        let agent_id = verified.agent_id;
        tracing::Span::current().record("agent", tracing::field::display(&agent_id));
        let existing = self.state.lookup(&agent_id, |s, id| s.get_agent(id)).await;
        match existing.map_err(internal)? {
            Some(a) if a.banned => return Err(banned(&agent_id)),
            Some(a) if a.attestation_type != ATTESTATION_TYPE => {
                return Err(taken(&agent_id, &a.attestation_type))
            }
            _ => {}
        }
        let svid = self.sign_agent_svid(&agent_id, &csr).await?;
        let now = now_unix();
        let record = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: ATTESTATION_TYPE.into(),
            serial: svid.serial,
            expires_at: svid.not_after,
            banned: false,
            selectors: verified.selectors,
            created_at: now,
            updated_at: now,
        };
        self.state
            .with_store(move |s| record_attestation(s, record))
            .await
            .map_err(|e| match e {
                StoreError::AgentBanned { .. } => banned(&agent_id),
                StoreError::AlreadyExists { .. } => taken(&agent_id, "another attestor"),
                e => internal(e),
            })?;
        tracing::info!(agent = %agent_id, "agent attested by k8s_psat");
        Ok(node::AttestResponse {
            svid_chain: svid.chain,
            spiffe_id: agent_id.to_string(),
            bundle: Some(own_bundle_wire(&self.state.authorities())),
        })
    }
}

//! The agent's own SVID: signed at attestation and renewed by the agent
//! over mTLS before it expires. Each one is recorded in the issuance log.

use crate::server::metrics::SvidKind;
use tonic::Status;

use super::{internal, signing_failed, NodeApi};
use crate::ca::{verify_csr, SvidRequest};
use crate::clock::now_unix;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, IssuanceRecord, StoreError};

/// A freshly signed agent SVID.
pub(super) struct AgentSvid {
    pub(super) chain: Vec<Vec<u8>>,
    pub(super) serial: String,
    pub(super) not_after: i64,
}

impl NodeApi {
    /// Signs an agent SVID for `agent_id` over the CSR's key and records it.
    pub(super) async fn sign_agent_svid(
        &self,
        agent_id: &SpiffeId,
        csr: &[u8],
    ) -> Result<AgentSvid, Status> {
        let csr = verify_csr(csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let authorities = self.state.authorities();
        let now = now_unix();
        let request = SvidRequest {
            spiffe_id: agent_id,
            public_key_spki: &csr.public_key_spki,
            ttl_secs: self.state.settings.agent_svid_ttl,
            dns_names: &[],
        };
        let cert = self
            .state
            .metrics
            .sign(SvidKind::Agent, || {
                authorities.x509().sign_svid(&request, now)
            })
            .map_err(signing_failed("the agent SVID"))?;
        self.record_issuances(vec![IssuanceRecord {
            serial: cert.serial.clone(),
            spiffe_id: agent_id.clone(),
            agent_id: Some(agent_id.clone()),
            entry_id: None,
            not_after: cert.not_after,
            issued_at: now,
        }])
        .await?;
        Ok(AgentSvid {
            chain: cert.chain,
            serial: cert.serial,
            not_after: cert.not_after,
        })
    }

    /// A new SVID for an authenticated agent; its record follows by
    /// compare-and-swap against the serial the caller authenticated with:
    /// of two holders of one SVID only the first renews, and a ban or an
    /// eviction that landed meanwhile is never written away.
    pub(super) async fn renew(
        &self,
        agent: AttestedAgent,
        csr: &[u8],
    ) -> Result<node::RenewAgentResponse, Status> {
        let svid = self.sign_agent_svid(&agent.spiffe_id, csr).await?;
        let (id, presented) = (agent.spiffe_id, agent.serial);
        let (serial, not_after) = (svid.serial, svid.not_after);
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
        Ok(node::RenewAgentResponse {
            svid_chain: svid.chain,
        })
    }
}

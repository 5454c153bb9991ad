//! The agent's own SVID: signed at attestation and renewed by the agent
//! over mTLS before it expires. Each one is recorded in the issuance log.

use tonic::Status;

use super::{internal, NodeApi};
use crate::ca::{verify_csr, SvidRequest};
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, IssuanceRecord};

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
            .map_err(|e| {
                tracing::error!(error = %Chain(&e), "signing the agent SVID failed");
                Status::internal(format!("signing the agent SVID failed: {e}"))
            })?;
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
        Ok(AgentSvid {
            chain: cert.chain,
            serial: cert.serial,
            not_after: cert.not_after,
        })
    }

    /// A new SVID for an authenticated agent; its record follows.
    pub(super) async fn renew(
        &self,
        mut agent: AttestedAgent,
        csr: &[u8],
    ) -> Result<node::RenewAgentResponse, Status> {
        let svid = self.sign_agent_svid(&agent.spiffe_id, csr).await?;
        agent.serial = svid.serial;
        agent.expires_at = svid.not_after;
        agent.updated_at = now_unix();
        self.state
            .with_store(move |s| s.put_agent(&agent))
            .await
            .map_err(internal)?;
        Ok(node::RenewAgentResponse {
            svid_chain: svid.chain,
        })
    }
}

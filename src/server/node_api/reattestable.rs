//! What the re-attestable node attestors (x509pop, k8s_psat) share once an
//! agent's proof checked out. Unlike a join token, such a proof can be made
//! again, so the agent may attest again under the same ID (as in SPIRE):
//! its record is replaced through the store's compare-and-swap, never if
//! banned, and a record made by another attestor (a join token's, say) is
//! never taken over.

use tonic::Status;

use super::attest::banned;
use super::{internal, own_bundle_wire, NodeApi};
use crate::clock::now_unix;
use crate::proto::node;
use crate::registration::Selector;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, StoreError};

fn taken(id: &SpiffeId, attestation_type: &str, by: &str) -> Status {
    Status::permission_denied(format!(
        "agent {id} was attested by {by}; {attestation_type} cannot take over its identity"
    ))
}

impl NodeApi {
    /// Signs the agent SVID of `agent_id` for `csr` (already checked) and
    /// records the agent as attested by `attestation_type` with
    /// `selectors`. The agent ID goes into the current span.
    pub(super) async fn admit_reattestable(
        &self,
        agent_id: SpiffeId,
        attestation_type: &'static str,
        csr: &[u8],
        selectors: Vec<Selector>,
    ) -> Result<node::AttestResponse, Status> {
        tracing::Span::current().record("agent", tracing::field::display(&agent_id));
        let existing = self.state.lookup(&agent_id, |s, id| s.get_agent(id)).await;
        match existing.map_err(internal)? {
            Some(a) if a.banned => return Err(banned(&agent_id)),
            Some(a) if a.attestation_type != attestation_type => {
                return Err(taken(&agent_id, attestation_type, &a.attestation_type))
            }
            _ => {}
        }
        let svid = self.sign_agent_svid(&agent_id, csr).await?;
        let now = now_unix();
        let record = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: attestation_type.into(),
            serial: svid.serial,
            expires_at: svid.not_after,
            banned: false,
            selectors,
            created_at: now,
            updated_at: now,
        };
        self.state
            .with_store(move |s| record_attestation(s, record))
            .await
            .map_err(|e| match e {
                StoreError::AgentBanned { .. } => banned(&agent_id),
                StoreError::AlreadyExists { .. } => {
                    taken(&agent_id, attestation_type, "another attestor")
                }
                e => internal(e),
            })?;
        tracing::info!(agent = %agent_id, "agent attested by {attestation_type}");
        Ok(node::AttestResponse {
            svid_chain: svid.chain,
            spiffe_id: agent_id.to_string(),
            bundle: Some(own_bundle_wire(&self.state.authorities())),
        })
    }
}

/// Creates the record, or replaces a record of the same attestation type
/// by compare-and-swap: the ban and the attestation type are checked
/// against the record as it is at the swap, so a ban landing meanwhile
/// wins. A record deleted between the two steps is created again
/// (re-attestation after eviction is allowed).
fn record_attestation(
    s: &dyn crate::store::DataStore,
    record: AttestedAgent,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        match s.attest_agent(&record) {
            Err(StoreError::AlreadyExists { .. }) => {}
            other => return other,
        }
        let updated = s.update_agent(&record.spiffe_id, &mut |cur| {
            if cur.banned {
                return Err(StoreError::AgentBanned {
                    id: cur.spiffe_id.to_string(),
                });
            }
            if cur.attestation_type != record.attestation_type {
                return Err(StoreError::AlreadyExists {
                    kind: "agent",
                    id: cur.spiffe_id.to_string(),
                });
            }
            Ok(AttestedAgent {
                created_at: cur.created_at,
                ..record.clone()
            })
        });
        match updated {
            Err(StoreError::NotFound { .. }) => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(StoreError::AlreadyExists {
        kind: "agent",
        id: record.spiffe_id.to_string(),
    })
}

//! x509pop attestation (see [`crate::x509pop`]): a stateless challenge,
//! then an attestation whose proof is checked against the configured CA
//! bundle. Unlike a join token, the proof can be made again, so an x509pop
//! agent may re-attest under the same ID (as in SPIRE): its record is
//! replaced through the store's compare-and-swap, never if banned, and a
//! record made by another attestor (a join token's) is never taken over.

use tonic::Status;

use super::attest::banned;
use super::{internal, own_bundle_wire, NodeApi};
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, StoreError};
use crate::x509pop::verify::Proof;
use crate::x509pop::ATTESTATION_TYPE;

fn not_enabled() -> Status {
    Status::failed_precondition(
        "x509pop attestation is not enabled on this server ([node_attestors.x509pop] in server.toml)",
    )
}

fn taken(id: &SpiffeId, attestation_type: &str) -> Status {
    Status::permission_denied(format!(
        "agent {id} was attested by {attestation_type}; x509pop cannot take over its identity"
    ))
}

impl NodeApi {
    pub(super) fn x509pop_challenge(&self) -> Result<node::ChallengeResponse, Status> {
        let verifier = self.x509pop.as_ref().ok_or_else(not_enabled)?;
        let (challenge, expires_at) = verifier.challenge(now_unix()).map_err(|e| {
            tracing::error!(error = %Chain(&e), "cannot issue an x509pop challenge");
            Status::internal(e.to_string())
        })?;
        Ok(node::ChallengeResponse {
            challenge,
            expires_at,
        })
    }

    pub(super) async fn attest_x509pop(
        &self,
        csr: Vec<u8>,
        proof: node::X509PopProof,
    ) -> Result<node::AttestResponse, Status> {
        let verifier = self.x509pop.as_ref().ok_or_else(not_enabled)?;
        verify_csr(&csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        let proof = Proof {
            chain: &proof.chain,
            challenge: &proof.challenge,
            signature: &proof.signature,
            csr: &csr,
        };
        let verified = verifier.verify(&proof, now_unix()).map_err(|e| {
            let msg = Chain(&e).to_string();
            tracing::warn!(error = %msg, "x509pop attestation refused");
            Status::permission_denied(msg)
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
        tracing::info!(agent = %agent_id, "agent attested by x509pop");
        Ok(node::AttestResponse {
            svid_chain: svid.chain,
            spiffe_id: agent_id.to_string(),
            bundle: Some(own_bundle_wire(&self.state.authorities())),
        })
    }
}

/// Creates the record, or replaces a record of the same attestation type
/// (x509pop, k8s_psat: re-attestable methods) by compare-and-swap:
/// the ban and the attestation type are checked against the record as it
/// is at the swap, so a ban landing meanwhile wins. A record deleted
/// between the two steps is created again (re-attestation after eviction
/// is allowed for x509pop).
pub(super) fn record_attestation(
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

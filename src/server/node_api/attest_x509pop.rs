//! x509pop attestation (see [`crate::x509pop`]): a stateless challenge,
//! then an attestation whose proof is checked against the configured CA
//! bundle. Unlike a join token, the proof can be made again, so an x509pop
//! agent may re-attest under the same ID (as in SPIRE; see
//! [`super::reattestable`]).

use tonic::Status;

use super::NodeApi;
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::x509pop::verify::Proof;
use crate::x509pop::ATTESTATION_TYPE;

fn not_enabled() -> Status {
    Status::failed_precondition(
        "x509pop attestation is not enabled on this server ([node_attestors.x509pop] in server.toml)",
    )
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
        self.admit_reattestable(
            verified.agent_id,
            ATTESTATION_TYPE,
            &csr,
            verified.selectors,
        )
        .await
    }
}

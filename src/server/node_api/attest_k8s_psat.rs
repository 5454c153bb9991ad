//! k8s_psat attestation (see [`crate::server::k8s_psat`]): the agent's
//! projected service-account token, vouched for by its cluster. A token
//! is not single-use (the kubelet hands the pod a fresh one as it nears
//! expiry), so, as in SPIRE, the same node may attest again under its ID
//! (see [`super::reattestable`]). A token past `exp` is refused. The token
//! is never logged.

use tonic::Status;

use super::NodeApi;
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::k8s_psat::ATTESTATION_TYPE;
use crate::proto::node;

fn not_enabled() -> Status {
    Status::failed_precondition(
        "k8s_psat attestation is not enabled on this server ([node_attestors.k8s_psat] in server.toml)",
    )
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
        self.admit_reattestable(
            verified.agent_id,
            ATTESTATION_TYPE,
            &csr,
            verified.selectors,
        )
        .await
    }
}

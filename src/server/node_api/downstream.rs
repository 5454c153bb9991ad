//! Downstream CAs: an intermediate CA for a nested Herald server, signed
//! only for an agent that an entry marked `downstream` authorizes.

use tonic::Status;

use super::NodeApi;
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::store::AttestedAgent;

impl NodeApi {
    pub(super) async fn downstream_ca(
        &self,
        agent: &AttestedAgent,
        req: &node::NewDownstreamX509caRequest,
    ) -> Result<node::NewDownstreamX509caResponse, Status> {
        // Deny unless an entry marked `downstream` authorizes the caller.
        let authorized = self.authorized(&agent.spiffe_id).await?;
        if !authorized.values().any(|e| e.downstream) {
            return Err(Status::permission_denied(format!(
                "no entry marked downstream authorizes {}; create one with --downstream and this parent",
                agent.spiffe_id
            )));
        }
        let csr =
            verify_csr(&req.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        if req.preferred_ttl < 0 {
            return Err(Status::invalid_argument(
                "preferred_ttl: must not be negative",
            ));
        }
        let authorities = self.state.authorities();
        let ttl = match req.preferred_ttl {
            0 => authorities.settings().ca_ttl_secs,
            ttl => ttl,
        };
        let signed = authorities
            .x509()
            .sign_ca(
                &self.state.trust_domain,
                &csr.public_key_spki,
                ttl,
                now_unix(),
            )
            .map_err(|e| {
                tracing::error!(error = %Chain(&e), "signing the downstream CA failed");
                Status::internal(format!("signing the downstream CA failed: {e}"))
            })?;
        tracing::info!(serial = %signed.serial, not_after = signed.not_after, "signed a downstream CA");
        Ok(node::NewDownstreamX509caResponse {
            ca_cert_chain: signed.chain,
            x509_authorities: authorities.bundle().x509_authorities.clone(),
        })
    }
}

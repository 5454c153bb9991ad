//! Downstream CAs: an intermediate CA for a nested Herald server, signed
//! only for an agent that an entry marked `downstream` authorizes. Its
//! pathLenConstraint (0 unless `downstream_ca_path_len` says otherwise)
//! keeps a downstream from minting further CAs, its lifetime is capped at
//! `downstream_ca_max_ttl`, and each one is recorded in the issuance log
//! like an SVID, so that an operator can see every CA the domain has.

use crate::server::metrics::SvidKind;
use tonic::Status;

use super::NodeApi;
use crate::ca::verify_csr;
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, IssuanceRecord};

/// What the node API signs downstream CAs with.
/// The default caps the lifetime at `ca_ttl` and allows no further CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DownstreamPolicy {
    /// The longest lifetime of a downstream CA, seconds; `None` caps it at
    /// this server's own `ca_ttl`.
    pub max_ttl: Option<i64>,
    /// The pathLenConstraint put in every downstream CA.
    pub path_len: u8,
}

impl NodeApi {
    pub(super) async fn downstream_ca(
        &self,
        agent: &AttestedAgent,
        req: &node::NewDownstreamX509caRequest,
    ) -> Result<node::NewDownstreamX509caResponse, Status> {
        // Deny unless an entry marked `downstream` authorizes the caller.
        let authorized = self.authorized(&agent.spiffe_id).await?;
        let Some(entry) = authorized.values().find(|e| e.downstream) else {
            return Err(Status::permission_denied(format!(
                "no entry marked downstream authorizes {}; create one with --downstream and this parent",
                agent.spiffe_id
            )));
        };
        let entry_id = entry.id.clone();
        let csr =
            verify_csr(&req.csr).map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        if req.preferred_ttl < 0 {
            return Err(Status::invalid_argument(
                "preferred_ttl: must not be negative",
            ));
        }
        let authorities = self.state.authorities();
        let max_ttl = self
            .downstream
            .max_ttl
            .unwrap_or(authorities.settings().ca_ttl_secs);
        let ttl = match req.preferred_ttl {
            0 => max_ttl,
            ttl => ttl.min(max_ttl),
        };
        let now = now_unix();
        let signed = self
            .state
            .metrics
            .sign(SvidKind::DownstreamCa, || {
                authorities.x509().sign_downstream_ca(
                    &self.state.trust_domain,
                    &csr.public_key_spki,
                    ttl,
                    self.downstream.path_len,
                    now,
                )
            })
            .map_err(super::signing_failed("the downstream CA"))?;
        // Recorded before it is returned, as every SVID: no CA leaves this
        // server without a trace.
        let ca_id = SpiffeId::new(&self.state.trust_domain, "")
            .map_err(|e| Status::internal(format!("the trust domain ID: {}", Chain(&e))))?;
        self.record_issuances(vec![IssuanceRecord {
            serial: signed.serial.clone(),
            // A CA certifies the trust domain's own ID.
            spiffe_id: ca_id,
            agent_id: Some(agent.spiffe_id.clone()),
            entry_id: Some(entry_id),
            not_after: signed.not_after,
            issued_at: now,
        }])
        .await?;
        tracing::info!(
            serial = %signed.serial,
            not_after = signed.not_after,
            path_len = self.downstream.path_len,
            "signed a downstream CA"
        );
        Ok(node::NewDownstreamX509caResponse {
            ca_cert_chain: signed.chain,
            x509_authorities: authorities.bundle().x509_authorities.clone(),
        })
    }
}

//! The Bundles service: this trust domain's bundle.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::admin::{self, bundles_server::Bundles};
use crate::server::state::ServerState;

/// Serves the Bundles service.
pub(super) struct BundlesApi {
    state: Arc<ServerState>,
}

impl BundlesApi {
    pub(super) fn new(state: Arc<ServerState>) -> Self {
        BundlesApi { state }
    }
}

#[tonic::async_trait]
impl Bundles for BundlesApi {
    async fn get_bundle(
        &self,
        _request: Request<admin::GetBundleRequest>,
    ) -> Result<Response<admin::Bundle>, Status> {
        let span = tracing::info_span!("admin.GetBundle", trust_domain = %self.state.trust_domain);
        let _entered = span.enter();
        let authorities = self.state.authorities();
        let bundle = authorities.bundle();
        let spiffe_json = bundle.to_spiffe_json().map_err(|e| {
            tracing::error!(error = %e, "cannot encode the trust bundle");
            Status::internal(format!("cannot encode the trust bundle: {e}"))
        })?;
        Ok(Response::new(admin::Bundle {
            trust_domain: bundle.trust_domain.to_string(),
            spiffe_json,
            sequence_number: bundle.sequence,
        }))
    }
}

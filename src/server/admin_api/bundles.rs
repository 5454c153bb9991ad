//! The Bundles service: this trust domain's bundle.

use std::sync::Arc;

use tonic::{Request, Response};

use super::convert::bundle_to_proto;
use crate::proto::admin::bundles_server::Bundles;
use crate::proto::admin::{Bundle, GetBundleRequest};
use crate::server::state::ServerState;
use crate::server::Rpc;

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
    #[tracing::instrument(name = "admin.GetBundle", skip_all, fields(
        trust_domain = %self.state.trust_domain))]
    async fn get_bundle(&self, _req: Request<GetBundleRequest>) -> Rpc<Bundle> {
        bundle_to_proto(self.state.authorities().bundle()).map(Response::new)
    }
}

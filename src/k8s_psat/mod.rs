//! k8s_psat node attestation (SPIRE's "Kubernetes projected service account
//! token" attestor): the agent, running as a pod of a DaemonSet, presents
//! the service-account token the kubelet projected into its pod with the
//! server's audience; the server has Kubernetes vouch for it and names the
//! agent after the node it runs on,
//! `spiffe://<td>/herald/agent/k8s_psat/<cluster>/<node uid>`.
//!
//! Kubernetes vouches in one of two ways, per cluster:
//!
//! - the TokenReview API (`POST /apis/authentication.k8s.io/v1/tokenreviews`),
//!   which also refuses tokens of deleted pods; node and pod labels are then
//!   read from the same API;
//! - offline, against the cluster's OIDC signing keys (its JWKS), where the
//!   API server is not reachable from the Herald server.
//!
//! This module holds what both ends and both ways share, with no I/O (the
//! token, the review and the API objects are all decoders of untrusted
//! input, fuzzed in `fuzz/`):
//!
//! - [`claims`]: a projected token taken apart (header, registered claims,
//!   the private `kubernetes.io` claim);
//! - [`jwks`]: a cluster's key set and the offline verification;
//! - [`review`]: the TokenReview request and the reading of its answer;
//! - [`objects`]: the Pod and Node objects of the API (UIDs and labels);
//! - [`selectors`]: the agent ID and the `k8s_psat:*` selectors.
//!
//! The I/O (the API client, fetching the JWKS) is the server's, in
//! `server::k8s_psat`; the agent only reads its token file.

pub mod claims;
pub mod jwks;
pub mod objects;
pub mod review;
pub mod selectors;
#[doc(hidden)]
pub mod test_tokens;
#[cfg(test)]
mod tests;

pub use claims::{parse_token, ClaimsError, ParsedToken, TokenClaims};
pub use jwks::{JwksError, KeySet, OfflineError, RuleError, Rules};
pub use objects::{ApiObject, ObjectError};
pub use review::ReviewError;

/// The attestation type recorded on agents, and the selector kind.
pub const ATTESTATION_TYPE: &str = "k8s_psat";

/// The audience tokens are projected with unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "herald-server";

/// Where the agent's DaemonSet projects its token (agent `token_path`).
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/tokens/herald-agent";

/// Who presented a token, as Kubernetes states it: from the token's
/// `kubernetes.io` claim (offline) or from a TokenReview's user info.
/// The pod and node parts are absent from tokens not bound to a pod, and
/// the node part from tokens of clusters older than 1.32 (1.30 and 1.31
/// behind the `ServiceAccountTokenPodNodeInfo` gate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// The pod the token is bound to.
    pub pod_name: Option<String>,
    /// Its UID.
    pub pod_uid: Option<String>,
    /// The node the pod is scheduled to.
    pub node_name: Option<String>,
    /// Its UID.
    pub node_uid: Option<String>,
}

impl PodIdentity {
    /// `namespace:name`, the form of `service_account_allow_list`.
    pub fn service_account_key(&self) -> String {
        format!("{}:{}", self.namespace, self.service_account)
    }
}

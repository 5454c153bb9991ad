//! The TokenReview API (`authentication.k8s.io/v1`): the request the
//! server POSTs to `/apis/authentication.k8s.io/v1/tokenreviews`, and the
//! reading of the answer. Shapes as Kubernetes documents them ("Verifying
//! and inspecting private claims", service-accounts-admin; samples in
//! `tests/fixtures/k8s/`):
//!
//! ```json
//! {"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
//!  "spec":{"token":"…","audiences":["herald-server"]},
//!  "status":{"authenticated":true,"audiences":["herald-server"],
//!   "user":{"username":"system:serviceaccount:herald:herald-agent","uid":"…",
//!    "groups":["system:serviceaccounts","system:serviceaccounts:herald","system:authenticated"],
//!    "extra":{"authentication.kubernetes.io/pod-name":["…"],
//!             "authentication.kubernetes.io/pod-uid":["…"],
//!             "authentication.kubernetes.io/node-name":["…"],
//!             "authentication.kubernetes.io/node-uid":["…"],
//!             "authentication.kubernetes.io/credential-id":["JTI=…"]}}}}
//! ```
//!
//! The node entries of `extra` come with Kubernetes 1.32 (the
//! `ServiceAccountTokenPodNodeInfo` feature); older clusters give the pod
//! only, and the node is then looked up through the pod.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::claims::optional;
use super::PodIdentity;

/// `status.user.extra` keys (k8s.io/apiserver `serviceaccount` package).
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// The pod's UID.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
/// The node's name (Kubernetes 1.32+).
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
/// The node's UID (Kubernetes 1.32+).
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";

/// The API path of the review.
pub const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

const SA_PREFIX: &str = "system:serviceaccount:";

/// Why a review does not admit the token. Safe to send back (the API
/// server's own reason is quoted, cut at 200 characters).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not a TokenReview.
    #[error("the API server's answer is not a TokenReview: {0}")]
    Shape(String),
    /// `status.authenticated` is not true.
    #[error("the TokenReview API did not authenticate the token: {0}")]
    Unauthenticated(String),
    /// `status.audiences` does not confirm the configured audience.
    #[error("the TokenReview API did not confirm the audience {expected:?} (status.audiences {found:?}); the token was projected for another audience")]
    Audience {
        /// The configured audience.
        expected: String,
        /// `status.audiences`.
        found: Vec<String>,
    },
    /// The user is not a service account.
    #[error("the token authenticates {0:?}, not a service account (system:serviceaccount:<namespace>:<name>)")]
    NotServiceAccount(String),
    /// A name in the answer is not a Kubernetes name.
    #[error("the TokenReview answer holds a bad {0}")]
    BadName(&'static str),
}

/// The request body for `token` and `audience`.
pub fn request_body(token: &str, audience: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": { "token": token, "audiences": [audience] },
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct RawReview {
    kind: Option<String>,
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    authenticated: bool,
    error: Option<String>,
    user: Option<RawUser>,
    #[serde(default)]
    audiences: Vec<String>,
}

#[derive(Deserialize)]
struct RawUser {
    username: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

/// The identity a review's answer vouches for, if it authenticated the
/// token for `audience`.
pub fn interpret(body: &[u8], audience: &str) -> Result<PodIdentity, ReviewError> {
    let review: RawReview = crate::spiffe::json::from_slice(body)
        .and_then(serde_json::from_value)
        .map_err(|e| ReviewError::Shape(e.to_string()))?;
    if let Some(kind) = review.kind.filter(|k| k != "TokenReview") {
        return Err(ReviewError::Shape(format!("kind {kind:?}")));
    }
    let status = review
        .status
        .ok_or_else(|| ReviewError::Shape("no status".into()))?;
    if !status.authenticated {
        let reason = status.error.unwrap_or_else(|| "no reason given".into());
        return Err(ReviewError::Unauthenticated(
            reason.chars().take(200).collect(),
        ));
    }
    if !status.audiences.iter().any(|a| a == audience) {
        return Err(ReviewError::Audience {
            expected: audience.to_string(),
            found: status.audiences,
        });
    }
    let user = status
        .user
        .ok_or_else(|| ReviewError::Shape("no status.user".into()))?;
    let username = user.username.unwrap_or_default();
    let (namespace, service_account) = username
        .strip_prefix(SA_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
        .ok_or_else(|| ReviewError::NotServiceAccount(username.clone()))?;
    let extra = |key: &str, what: &'static str| {
        optional(user.extra.get(key).and_then(|v| v.first()).cloned(), what)
            .map_err(|_| ReviewError::BadName(what))
    };
    let name = |v: &str, what| {
        optional(Some(v.to_string()), what)
            .map_err(|_| ReviewError::BadName(what))?
            .ok_or(ReviewError::BadName(what))
    };
    Ok(PodIdentity {
        namespace: name(namespace, "namespace")?,
        service_account: name(service_account, "service account")?,
        pod_name: extra(EXTRA_POD_NAME, "pod name")?,
        pod_uid: extra(EXTRA_POD_UID, "pod UID")?,
        node_name: extra(EXTRA_NODE_NAME, "node name")?,
        node_uid: extra(EXTRA_NODE_UID, "node UID")?,
    })
}

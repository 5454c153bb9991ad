//! One k8s_psat attestation: the token's shape and times are checked here
//! first (a token past `exp` is refused whatever Kubernetes would say, and
//! without asking it), then the cluster vouches for it, then the allow
//! list, the node's UID, the labels, and the agent ID.
//!
//! With the API configured the node and pod are read only when needed:
//! the pod for its labels or, on clusters before 1.32 whose tokens and
//! reviews carry no node, for `spec.nodeName`; the node for its labels or
//! its UID. What the API says must agree with what the token says (the
//! same pod and node UIDs): a pod or node replaced under the same name is
//! refused.

use std::collections::BTreeMap;

use super::api::ApiError;
use super::keys::LoadError;
use super::{Backend, Cluster, PsatAttestor};
use crate::k8s_psat::jwks::{check_expiry, OfflineError, RuleError, Rules};
use crate::k8s_psat::objects::{parse_node, parse_pod, ObjectError};
use crate::k8s_psat::selectors::{agent_id, allowed_labels, selectors, AgentIdError};
use crate::k8s_psat::{parse_token, review, ClaimsError, PodIdentity, ReviewError};
use crate::registration::Selector;
use crate::spiffe::SpiffeId;

/// Why an attestation was refused (or could not be decided). Every message
/// is safe to send back: none quotes the token.
#[derive(Debug, thiserror::Error)]
pub enum PsatError {
    /// No such cluster in the configuration.
    #[error("k8s_psat: cluster {0:?} is not configured on this server ([node_attestors.k8s_psat.clusters.<name>] in server.toml)")]
    UnknownCluster(String),
    /// The token does not parse.
    #[error("k8s_psat")]
    Token(#[from] ClaimsError),
    /// A time, audience or issuer rule failed.
    #[error("k8s_psat")]
    Rule(#[from] RuleError),
    /// Offline verification failed.
    #[error("k8s_psat")]
    Offline(#[source] OfflineError),
    /// The TokenReview refused.
    #[error("k8s_psat")]
    Review(#[from] ReviewError),
    /// The service account is not allowed.
    #[error("k8s_psat: service account {service_account} is not in service_account_allow_list of cluster {cluster:?}")]
    NotAllowed {
        /// `namespace:name`.
        service_account: String,
        /// The cluster.
        cluster: String,
    },
    /// The token is not bound to a pod, and the pod was needed.
    #[error("k8s_psat: the token is not bound to a pod (project it into the agent pod with a serviceAccountToken volume)")]
    NoPod,
    /// No node UID from the token, the review or the API.
    #[error("k8s_psat: the token names no node UID, so no agent ID can be made (Kubernetes 1.32+ puts the node in pod-bound tokens; for older clusters set kube_api_url so the node is read through the pod)")]
    NoNodeUid,
    /// The API's object is another than the token's.
    #[error("k8s_psat: the {what}'s UID in the API ({api}) is not the token's ({token}): it was replaced")]
    Replaced {
        /// `pod` or `node`.
        what: &'static str,
        /// The API's UID.
        api: String,
        /// The token's UID.
        token: String,
    },
    /// A name the API would be asked about is not a Kubernetes name.
    #[error("k8s_psat: the {what} {name:?} is not a Kubernetes name")]
    BadName {
        /// `namespace`, `pod name` or `node name`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The agent ID cannot be made.
    #[error("k8s_psat")]
    AgentId(#[from] AgentIdError),
    /// The API answered nonsense.
    #[error("k8s_psat")]
    Object(#[from] ObjectError),
    /// The API server could not be asked.
    #[error("k8s_psat: asking the Kubernetes API failed")]
    Api(#[source] ApiError),
    /// The JWKS could not be loaded.
    #[error("k8s_psat: loading the cluster's JWKS failed")]
    Keys(#[source] LoadError),
}

impl PsatError {
    /// Whether the failure is ours or the cluster's (retry later) rather
    /// than the agent's.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PsatError::Keys(_) => true,
            PsatError::Api(e) => e.status().is_none_or(|s| s >= 500 || s == 429),
            _ => false,
        }
    }
}

/// An attested agent.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `spiffe://<td>/herald/agent/k8s_psat/<cluster>/<node uid>`.
    pub agent_id: SpiffeId,
    /// The `k8s_psat:*` selectors.
    pub selectors: Vec<Selector>,
}

/// The labels read from the API, already filtered by the allowed keys.
type Labels = BTreeMap<String, String>;

impl PsatAttestor {
    /// Attests the agent presenting `token` for `cluster` at `now`.
    pub async fn verify(
        &self,
        cluster: &str,
        token: &str,
        now: i64,
    ) -> Result<Verified, PsatError> {
        let c = self
            .clusters
            .get(cluster)
            .ok_or_else(|| PsatError::UnknownCluster(cluster.chars().take(64).collect()))?;
        let settings = &c.settings;
        let rules = Rules {
            audience: &settings.audience,
            issuer: settings.issuer.as_deref(),
            leeway: crate::ca::DEFAULT_JWT_LEEWAY_SECS,
        };
        let claims = parse_token(token)?.claims;
        check_expiry(&claims, now)?;
        let mut identity = match &c.backend {
            Backend::Api(api) => {
                // The token's own claims are checked before the API is
                // asked (they cannot admit anything, only refuse early);
                // the review then vouches for the same token.
                rules.check(&claims, now)?;
                let body = api
                    .token_review(token, &settings.audience)
                    .await
                    .map_err(PsatError::Api)?;
                review::interpret(&body, &settings.audience)?
            }
            Backend::Jwks(cache) => {
                let kid = parse_token(token)?.kid;
                let keys = cache.keys(kid.as_deref()).await.map_err(PsatError::Keys)?;
                keys.verify(token, &rules, now)
                    .map_err(PsatError::Offline)?
                    .identity
            }
        };
        let service_account = identity.service_account_key();
        if !settings
            .service_account_allow_list
            .contains(&service_account)
        {
            return Err(PsatError::NotAllowed {
                service_account,
                cluster: cluster.to_string(),
            });
        }
        let (node_labels, pod_labels) = match &c.backend {
            Backend::Api(api) => c.lookup(api, &mut identity).await?,
            Backend::Jwks(_) => Default::default(),
        };
        let node_uid = identity.node_uid.as_deref().ok_or(PsatError::NoNodeUid)?;
        let agent_id = agent_id(&self.trust_domain, cluster, node_uid)?;
        Ok(Verified {
            agent_id,
            selectors: selectors(cluster, &identity, &node_labels, &pod_labels),
        })
    }
}

impl Cluster {
    /// Reads the pod and the node from the API where needed; completes
    /// `identity` with the node's name and UID; returns the allowed labels.
    async fn lookup(
        &self,
        api: &super::api::HttpsClient,
        identity: &mut PodIdentity,
    ) -> Result<(Labels, Labels), PsatError> {
        let s = &self.settings;
        let mut pod_labels = Labels::new();
        if !s.allowed_pod_label_keys.is_empty() || identity.node_name.is_none() {
            let name = segment(
                "pod name",
                identity.pod_name.as_deref().ok_or(PsatError::NoPod)?,
            )?;
            let ns = segment("namespace", &identity.namespace)?;
            let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
            let pod = parse_pod(&api.get(&path).await.map_err(PsatError::Api)?)?;
            same("pod", &pod.uid, identity.pod_uid.as_deref())?;
            identity.node_name = identity.node_name.take().or(pod.node_name);
            pod_labels = allowed_labels(&pod.labels, &s.allowed_pod_label_keys);
        }
        let mut node_labels = Labels::new();
        if !s.allowed_node_label_keys.is_empty() || identity.node_uid.is_none() {
            let Some(name) = identity.node_name.as_deref() else {
                return Err(PsatError::NoNodeUid);
            };
            let path = format!("/api/v1/nodes/{}", segment("node name", name)?);
            let node = parse_node(&api.get(&path).await.map_err(PsatError::Api)?)?;
            same("node", &node.uid, identity.node_uid.as_deref())?;
            identity.node_uid = Some(node.uid);
            node_labels = allowed_labels(&node.labels, &s.allowed_node_label_keys);
        }
        Ok((node_labels, pod_labels))
    }
}

/// A name that can be one segment of an API path as it is (Kubernetes
/// names are DNS labels and subdomains).
fn segment<'a>(what: &'static str, name: &'a str) -> Result<&'a str, PsatError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
        && name != "."
        && name != "..";
    if ok {
        Ok(name)
    } else {
        Err(PsatError::BadName {
            what,
            name: name.chars().take(64).collect(),
        })
    }
}

/// The API's UID agrees with the token's, if the token has one.
fn same(what: &'static str, api: &str, token: Option<&str>) -> Result<(), PsatError> {
    match token {
        Some(t) if t != api => Err(PsatError::Replaced {
            what,
            api: api.to_string(),
            token: t.to_string(),
        }),
        _ => Ok(()),
    }
}

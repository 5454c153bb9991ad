//! The agent ID and the node selectors of a k8s_psat agent, named as
//! SPIRE's k8s_psat server plugin names them (kind `k8s_psat`):
//!
//! - `cluster:<name>`: the cluster's name in the server's configuration
//! - `agent_ns:<namespace>`, `agent_sa:<service account>`
//! - `agent_pod_name:<name>`, `agent_pod_uid:<uid>`
//! - `agent_node_name:<name>`, `agent_node_uid:<uid>`
//! - `agent_node_label:<key>:<value>`, `agent_pod_label:<key>:<value>`:
//!   only keys in the cluster's `allowed_node_label_keys` /
//!   `allowed_pod_label_keys`, read from the API (never from the token,
//!   which carries no labels).

use std::collections::BTreeMap;

use super::{PodIdentity, ATTESTATION_TYPE};
use crate::registration::Selector;
use crate::spiffe::{IdError, SpiffeId, TrustDomain};

/// A cluster name or node UID that cannot be one segment of an agent ID.
#[derive(Debug, thiserror::Error)]
#[error("the {what} {value:?} cannot be a SPIFFE ID path segment (letters, digits, '.', '-', '_')")]
pub struct AgentIdError {
    /// `cluster name` or `node UID`.
    pub what: &'static str,
    /// The value.
    pub value: String,
    /// The ID parser's finding, if it got that far.
    #[source]
    pub source: Option<IdError>,
}

/// `spiffe://<td>/herald/agent/k8s_psat/<cluster>/<node uid>`, each of
/// `cluster` and `node_uid` one path segment.
pub fn agent_id(td: &TrustDomain, cluster: &str, node_uid: &str) -> Result<SpiffeId, AgentIdError> {
    for (what, value) in [("cluster name", cluster), ("node UID", node_uid)] {
        let segment = SpiffeId::new(td, &format!("/{value}"));
        if value.contains('/') || segment.is_err() {
            return Err(AgentIdError {
                what,
                value: value.to_string(),
                source: segment.err(),
            });
        }
    }
    let path = format!("/herald/agent/{ATTESTATION_TYPE}/{cluster}/{node_uid}");
    SpiffeId::new(td, &path).map_err(|e| AgentIdError {
        what: "node UID",
        value: node_uid.to_string(),
        source: Some(e),
    })
}

/// The labels whose keys are allowed.
pub fn allowed_labels(
    labels: &BTreeMap<String, String>,
    allowed: &[String],
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| allowed.iter().any(|a| a == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The selectors of an agent of `cluster` with `identity`, and the
/// (already allowed) labels of its node and pod. Values a selector cannot
/// hold (NUL, empty) are left out.
pub fn selectors(
    cluster: &str,
    identity: &PodIdentity,
    node_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> Vec<Selector> {
    let mut values = vec![
        format!("cluster:{cluster}"),
        format!("agent_ns:{}", identity.namespace),
        format!("agent_sa:{}", identity.service_account),
    ];
    let optional = [
        ("agent_pod_name", &identity.pod_name),
        ("agent_pod_uid", &identity.pod_uid),
        ("agent_node_name", &identity.node_name),
        ("agent_node_uid", &identity.node_uid),
    ];
    values.extend(
        optional
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}:{v}"))),
    );
    values.extend(
        node_labels
            .iter()
            .map(|(k, v)| format!("agent_node_label:{k}:{v}")),
    );
    values.extend(
        pod_labels
            .iter()
            .map(|(k, v)| format!("agent_pod_label:{k}:{v}")),
    );
    Selector::set_of(ATTESTATION_TYPE, values)
}

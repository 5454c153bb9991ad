//! The two API objects the server reads for an agent's selectors, when the
//! cluster's API is configured: its pod (`GET /api/v1/namespaces/{ns}/pods/{name}`)
//! and its node (`GET /api/v1/nodes/{name}`). Of each only the UID, the
//! labels and, for the pod, `spec.nodeName` are read (samples of the full
//! objects in `tests/fixtures/k8s/`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::claims::optional;

/// Why an API object is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not the JSON of the expected kind.
    #[error("the API server's answer is not a {kind}: {reason}")]
    Shape {
        /// `Pod` or `Node`.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What is read of a pod or a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiObject {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName` (pods only; absent before scheduling).
    pub node_name: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    kind: Option<String>,
    metadata: Option<RawMeta>,
    spec: Option<RawSpec>,
}

#[derive(Deserialize)]
struct RawMeta {
    name: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

/// A `Pod`.
pub fn parse_pod(body: &[u8]) -> Result<ApiObject, ObjectError> {
    parse(body, "Pod")
}

/// A `Node`.
pub fn parse_node(body: &[u8]) -> Result<ApiObject, ObjectError> {
    parse(body, "Node")
}

fn parse(body: &[u8], kind: &'static str) -> Result<ApiObject, ObjectError> {
    let shape = |reason: String| ObjectError::Shape { kind, reason };
    let raw: Raw = crate::spiffe::json::from_slice(body)
        .and_then(serde_json::from_value)
        .map_err(|e| shape(e.to_string()))?;
    if raw.kind.as_deref().is_some_and(|k| k != kind) {
        return Err(shape(format!("kind {:?}", raw.kind.unwrap_or_default())));
    }
    let meta = raw.metadata.ok_or_else(|| shape("no metadata".into()))?;
    let field = |v: Option<String>, what: &'static str| {
        optional(v, what)
            .ok()
            .flatten()
            .ok_or_else(|| shape(format!("no usable {what}")))
    };
    Ok(ApiObject {
        name: field(meta.name, "metadata.name")?,
        uid: field(meta.uid, "metadata.uid")?,
        labels: meta.labels,
        node_name: raw.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()),
    })
}

//! The kubelet's pod list (`GET /pods`, a `v1.PodList`), the few fields of
//! it the attestor reads, and the `k8s` selectors of a pod and container.
//!
//! The selectors are exactly SPIRE's k8s workload attestor's
//! (`doc/plugin_agent_workloadattestor_k8s.md`): from the pod `sa`, `ns`,
//! `node-name`, `pod-uid`, `pod-name`, `pod-image-count`,
//! `pod-init-image-count`, `pod-image` and `pod-init-image` (each image
//! both by name and by image ID), `pod-label:<key>:<value>`,
//! `pod-owner:<kind>:<name>` and `pod-owner-uid:<kind>:<uid>`; from the
//! caller's container `container-name` and `container-image` (by name and by
//! image ID). An empty image or image ID (a container not started yet) gives
//! no selector.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

/// `v1.PodList`: only `items` matters.
#[derive(Debug, Deserialize)]
pub struct PodList {
    #[serde(default, deserialize_with = "nullable")]
    items: Vec<Pod>,
}

/// `v1.Pod`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    metadata: ObjectMeta,
    spec: PodSpec,
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ObjectMeta {
    name: String,
    namespace: String,
    uid: String,
    #[serde(deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnerReference {
    kind: String,
    name: String,
    uid: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    service_account_name: String,
    node_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    #[serde(deserialize_with = "nullable")]
    container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// `v1.ContainerStatus`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContainerStatus {
    name: String,
    image: String,
    #[serde(rename = "imageID")]
    image_id: String,
    /// `<runtime>://<id>`; absent until the container is created.
    #[serde(rename = "containerID")]
    container_id: String,
}

/// `null` read as the type's default (Kubernetes' JSON may write `null`
/// for an empty list or map).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// === impl PodList ===

impl PodList {
    /// The pod whose UID is `uid`.
    pub fn pod(&self, uid: &str) -> Option<&Pod> {
        self.items.iter().find(|p| p.metadata.uid == uid)
    }
}

// === impl Pod ===

impl Pod {
    /// `namespace/name`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// The status of the container whose runtime ID is `container_id`,
    /// among the regular, init and ephemeral containers. The kubelet writes
    /// `containerID` as `containerd://<id>`, `cri-o://<id>` or `docker://<id>`.
    pub fn container(&self, container_id: &str) -> Option<&ContainerStatus> {
        let s = &self.status;
        s.container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .chain(&s.ephemeral_container_statuses)
            .find(|c| {
                c.container_id
                    .split_once("://")
                    .is_some_and(|(_, id)| id == container_id)
            })
    }

    /// The pod's selector values (without the `k8s:` kind), in SPIRE's order.
    pub fn selector_values(&self) -> Vec<String> {
        let (m, s) = (&self.metadata, &self.status);
        let mut out = vec![
            format!("sa:{}", self.spec.service_account_name),
            format!("ns:{}", m.namespace),
            format!("node-name:{}", self.spec.node_name),
            format!("pod-uid:{}", m.uid),
            format!("pod-name:{}", m.name),
            format!("pod-image-count:{}", s.container_statuses.len()),
            format!("pod-init-image-count:{}", s.init_container_statuses.len()),
        ];
        for image in images(&s.container_statuses) {
            out.push(format!("pod-image:{image}"));
        }
        for image in images(&s.init_container_statuses) {
            out.push(format!("pod-init-image:{image}"));
        }
        for (k, v) in &m.labels {
            out.push(format!("pod-label:{k}:{v}"));
        }
        for o in &m.owner_references {
            out.push(format!("pod-owner:{}:{}", o.kind, o.name));
            out.push(format!("pod-owner-uid:{}:{}", o.kind, o.uid));
        }
        out
    }
}

// === impl ContainerStatus ===

impl ContainerStatus {
    /// The container's selector values (without the `k8s:` kind).
    pub fn selector_values(&self) -> Vec<String> {
        let mut out = vec![format!("container-name:{}", self.name)];
        for image in images(std::slice::from_ref(self)) {
            out.push(format!("container-image:{image}"));
        }
        out
    }
}

/// Each distinct non-empty image name and image ID of `statuses`, sorted.
fn images(statuses: &[ContainerStatus]) -> BTreeSet<&str> {
    statuses
        .iter()
        .flat_map(|c| [c.image.as_str(), c.image_id.as_str()])
        .filter(|i| !i.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> PodList {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubelet/pods.json"
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    const WEB_UID: &str = "6f3c1a2e-8d4b-4c7e-9a1f-2b5d7e9c0a13";
    const WEB_APP: &str = "4c1f0e9a7b2d83e6f5a0c9d1b7e24f68a3c5d09e1f2b4a6c8d0e7f9a1b3c5d7e";

    #[test]
    fn the_recorded_pod_list_gives_spire_s_selectors() {
        let list = list();
        let pod = list.pod(WEB_UID).expect("the web pod");
        assert_eq!(pod.display_name(), "shop/web-7d9f8b6c5d-x2kqp");
        let c = pod.container(WEB_APP).expect("the app container");
        let mut got = pod.selector_values();
        got.extend(c.selector_values());
        for want in [
            "sa:web",
            "ns:shop",
            "node-name:worker-1",
            &format!("pod-uid:{WEB_UID}"),
            "pod-name:web-7d9f8b6c5d-x2kqp",
            "pod-image-count:2",
            "pod-init-image-count:1",
            "pod-image:docker.io/library/nginx:1.27",
            "pod-init-image:docker.io/library/busybox:1.36",
            "pod-label:app:web",
            "pod-label:pod-template-hash:7d9f8b6c5d",
            "pod-owner:ReplicaSet:web-7d9f8b6c5d",
            "pod-owner-uid:ReplicaSet:0e5b7f3a-2c4d-4e6f-8a9b-1c2d3e4f5a6b",
            "container-name:app",
            "container-image:docker.io/library/nginx:1.27",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
        }
        assert!(got
            .iter()
            .any(|g| g.starts_with("container-image:docker.io/library/nginx@sha256:")));
        // The sidecar's image is a pod image, not the caller's container's.
        assert!(got
            .iter()
            .any(|g| g.starts_with("pod-image:ghcr.io/example/proxy")));
        assert!(!got.iter().any(|g| g.starts_with("container-image:ghcr.io")));
    }

    #[test]
    fn containers_are_found_by_id_in_every_list_and_runtime() {
        let list = list();
        let pod = list.pod(WEB_UID).unwrap();
        // The init container (containerd://...), and no prefix-less match.
        let init = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
        assert_eq!(pod.container(init).unwrap().name, "migrate");
        assert!(pod.container("containerd").is_none());
        // The ephemeral debug container.
        let debug = "d41d8cd98f00b204e9800998ecf8427ed41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(pod.container(debug).unwrap().name, "debugger");
        // A CRI-O pod.
        let crio = list.pod("b2d47e10-5c3a-4f8e-a6d9-17c0e3f5a824").unwrap();
        let id = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
        assert_eq!(crio.container(id).unwrap().name, "worker");
        assert!(list.pod("00000000-0000-0000-0000-000000000000").is_none());
    }

    #[test]
    fn nulls_and_missing_fields_are_empty() {
        let list: PodList = serde_json::from_str(
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[
                {"metadata":{"name":"p","namespace":"n","uid":"u","labels":null},
                 "spec":{},"status":{"containerStatuses":null}}]}"#,
        )
        .unwrap();
        let pod = list.pod("u").unwrap();
        assert!(pod.container("x").is_none());
        assert!(pod
            .selector_values()
            .contains(&"pod-image-count:0".to_string()));
        let empty: PodList = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(empty.pod("u").is_none());
    }
}

//! The Kubernetes workload attestor (`[workload_attestors.k8s]`): from the
//! caller's pid through its cgroups to its pod and container, then the pod
//! from the kubelet, into `k8s` selectors as SPIRE's k8s attestor names
//! them (`pod` lists them).
//!
//! The steps, each with its own error so the agent's log says which failed:
//!
//! 1. `<proc_root>/<pid>/cgroup` is read inside the unix attestor's
//!    pid-reuse window ([`super::UnixAttestor::attest_with`]) and parsed
//!    ([`cgroup`]). A process in no pod's container gets no `k8s`
//!    selectors; its `unix` selectors still apply.
//! 2. The kubelet's pod list is fetched ([`kubelet`]). A list younger
//!    than half the retry interval is reused, and concurrent callers share
//!    one fetch.
//! 3. The pod is looked up by UID and the container by ID. A pod or
//!    container the kubelet does not report yet (a workload that calls the
//!    Workload API as soon as it starts) is retried every
//!    `poll_retry_interval`, up to `max_poll_attempts` fetches; then the
//!    error names what was missing and how often it was asked for.

pub mod cgroup;
pub mod kubelet;
pub mod pod;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use self::cgroup::{CgroupError, PodContainer};
pub use self::kubelet::{KubeletClient, KubeletError, SetupError};
use self::pod::PodList;
use crate::config::k8s::K8sSettings;
use crate::registration::Selector;

/// The selector kind this attestor produces.
pub const SELECTOR_KIND: &str = "k8s";

/// Why a caller in a pod could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The cgroup file was not understood.
    #[error("cannot tell the caller's pod from {path}")]
    Cgroup {
        /// The cgroup file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: CgroupError,
    },
    /// The pod list could not be fetched.
    #[error("looking up pod {pod_uid} (attempt {attempt})")]
    Kubelet {
        /// The caller's pod.
        pod_uid: String,
        /// Which fetch failed.
        attempt: u32,
        /// Why.
        #[source]
        source: KubeletError,
    },
    /// The kubelet never listed the pod.
    #[error("pod {pod_uid} not in the kubelet's pod list ({url}) after {attempts} attempts")]
    PodNotListed {
        /// The caller's pod.
        pod_uid: String,
        /// The pod list URL.
        url: String,
        /// Fetches made.
        attempts: u32,
    },
    /// The pod was listed, but never with the caller's container.
    #[error("container {container_id} of pod {pod} has no status yet after {attempts} attempts")]
    NoContainerStatus {
        /// The caller's container.
        container_id: String,
        /// `namespace/name` of its pod.
        pod: String,
        /// Fetches made.
        attempts: u32,
    },
}

/// Attests callers that run in Kubernetes pods on this node.
#[derive(Debug)]
pub struct K8sAttestor {
    client: KubeletClient,
    proc_root: PathBuf,
    max_poll_attempts: u32,
    poll_retry_interval: Duration,
    disable_container_selectors: bool,
    /// The last pod list and when it was fetched; the lock also makes
    /// concurrent callers wait for one fetch rather than each making one.
    cache: Mutex<Option<(Instant, Arc<PodList>)>>,
}

// === impl K8sAttestor ===

impl K8sAttestor {
    /// The attestor `settings` describe, the node name read from this
    /// process's environment if it comes from there.
    pub fn new(settings: &K8sSettings) -> Result<Self, SetupError> {
        let client = KubeletClient::new(settings, |var| std::env::var(var).ok())?;
        tracing::info!(kubelet = client.url(), "k8s workload attestor on");
        Ok(K8sAttestor {
            client,
            proc_root: settings.proc_root.clone(),
            max_poll_attempts: settings.max_poll_attempts,
            poll_retry_interval: settings.poll_retry_interval,
            disable_container_selectors: settings.disable_container_selectors,
            cache: Mutex::new(None),
        })
    }

    /// The cgroup file of process `pid`.
    pub fn cgroup_path(&self, pid: i32) -> PathBuf {
        self.proc_root.join(pid.to_string()).join("cgroup")
    }

    /// The `k8s` selectors of the container `at`.
    pub async fn selectors(&self, at: &PodContainer) -> Result<Vec<Selector>, K8sError> {
        let span =
            tracing::debug_span!("k8s", pod_uid = %at.pod_uid, container_id = %at.container_id);
        self.poll(at).instrument(span).await
    }

    /// Step 3: the pod list until it shows the container, or the attempts run out.
    async fn poll(&self, at: &PodContainer) -> Result<Vec<Selector>, K8sError> {
        let mut missing_container = None;
        for attempt in 1..=self.max_poll_attempts {
            let list = self.pod_list().await.map_err(|source| K8sError::Kubelet {
                pod_uid: at.pod_uid.clone(),
                attempt,
                source,
            })?;
            if let Some(pod) = list.pod(&at.pod_uid) {
                let container = pod.container(&at.container_id);
                if container.is_some() || self.disable_container_selectors {
                    let mut values = pod.selector_values();
                    values.extend(container.map(|c| c.selector_values()).unwrap_or_default());
                    return Ok(to_selectors(values));
                }
                missing_container = Some(pod.display_name());
            }
            if attempt < self.max_poll_attempts {
                tracing::debug!(
                    attempt,
                    pod_listed = missing_container.is_some(),
                    "the kubelet does not report the caller's container yet; retrying"
                );
                tokio::time::sleep(self.poll_retry_interval).await;
            }
        }
        let attempts = self.max_poll_attempts;
        Err(match missing_container {
            Some(pod) => K8sError::NoContainerStatus {
                container_id: at.container_id.clone(),
                pod,
                attempts,
            },
            None => K8sError::PodNotListed {
                pod_uid: at.pod_uid.clone(),
                url: self.client.url().to_string(),
                attempts,
            },
        })
    }

    /// The kubelet's pod list, fetched anew unless the last one is younger
    /// than half the retry interval (so a retry always sees a fresh one).
    async fn pod_list(&self) -> Result<Arc<PodList>, KubeletError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.as_ref() {
            if at.elapsed() < self.poll_retry_interval / 2 {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(self.client.pod_list().await?);
        *cache = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

/// `k8s` selectors of `values`; a value a selector cannot hold (a NUL
/// from the kubelet) is left out, as the unix attestor does.
fn to_selectors(values: Vec<String>) -> Vec<Selector> {
    values
        .into_iter()
        .filter_map(|v| match Selector::new(SELECTOR_KIND, v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "skipping unusable selector");
                None
            }
        })
        .collect()
}

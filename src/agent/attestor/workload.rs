//! The attestors that are on, run for one caller: the unix attestor always,
//! the k8s attestor when `[workload_attestors.k8s]` is configured. The
//! caller's selectors are the union of theirs.
//!
//! The cgroup file the k8s attestor needs is read inside the unix
//! attestor's pid-reuse window, on the same blocking thread; the kubelet is
//! asked afterwards, asynchronously, as that may take several retries.
//!
//! With the unix attestor alone, a caller that calls again is answered
//! from its remembered attestation (`super::memo`) on the calling thread,
//! without a trip to the blocking pool. With the k8s attestor on, every
//! call is attested in full: a pod's selectors (labels, service account)
//! can change while its processes run, and the memo cannot see that.

use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;

use super::k8s::{K8sAttestor, K8sError};
use super::proc_files::read_proc_file;
use super::{AttestError, UnixAttestor};
use crate::registration::Selector;

/// Every configured workload attestor.
#[derive(Debug)]
pub struct WorkloadAttestor {
    unix: UnixAttestor,
    k8s: Option<K8sAttestor>,
    /// Where each attestation's duration goes
    /// (`herald_agent_attestation_duration_seconds`), if anywhere: the whole
    /// of it, kubelet round trips included.
    duration: Option<Histogram>,
}

impl From<UnixAttestor> for WorkloadAttestor {
    fn from(unix: UnixAttestor) -> Self {
        WorkloadAttestor {
            unix,
            k8s: None,
            duration: None,
        }
    }
}

// === impl WorkloadAttestor ===

impl WorkloadAttestor {
    /// The unix attestor, and the k8s attestor if given.
    pub fn new(unix: UnixAttestor, k8s: Option<K8sAttestor>) -> Self {
        WorkloadAttestor {
            unix,
            k8s,
            duration: None,
        }
    }

    /// Observes how long each attestation takes into `histogram`.
    pub fn with_duration_histogram(mut self, histogram: Histogram) -> Self {
        self.duration = Some(histogram);
        self
    }

    /// The selectors of the process `pid`, whose socket peer credential
    /// says `uid` and `gid`.
    pub async fn attest(
        self: &Arc<Self>,
        pid: i32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<Selector>, AttestError> {
        let start = std::time::Instant::now();
        let result = self.attest_untimed(pid, uid, gid).await;
        if let Some(h) = &self.duration {
            h.observe(start.elapsed().as_secs_f64());
        }
        result
    }

    async fn attest_untimed(
        self: &Arc<Self>,
        pid: i32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<Selector>, AttestError> {
        if self.k8s.is_none() {
            if let Some(selectors) = self.unix.recall(pid, uid, gid) {
                return Ok(selectors);
            }
        }
        let this = self.clone();
        let (mut selectors, located) = tokio::task::spawn_blocking(move || match this.k8s {
            None => Ok((this.unix.attest_and_remember(pid, uid, gid)?, None)),
            Some(_) => this.unix.attest_with(pid, uid, gid, |pid| this.locate(pid)),
        })
        .await
        .map_err(AttestError::Task)??;
        if let (Some(k8s), Some(at)) = (&self.k8s, located) {
            let found = k8s
                .selectors(&at)
                .await
                .map_err(|source| AttestError::K8s { pid, source })?;
            selectors.extend(found);
        }
        Ok(selectors)
    }

    /// The caller's pod and container from its cgroup file, if the k8s
    /// attestor is on and the caller runs in a pod.
    fn locate(&self, pid: i32) -> Result<Option<super::k8s::PodContainer>, AttestError> {
        let Some(k8s) = &self.k8s else {
            return Ok(None);
        };
        let path = k8s.cgroup_path(pid);
        let text = read_proc_file(&path, pid)?;
        super::k8s::cgroup::parse(&text).map_err(|source| AttestError::K8s {
            pid,
            source: K8sError::Cgroup { path, source },
        })
    }
}

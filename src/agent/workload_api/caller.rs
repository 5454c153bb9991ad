//! Who is calling: the kernel's view of the socket peer (SO_PEERCRED) and
//! its attestation into selectors. The Workload API and Envoy SDS share
//! this path, so a caller is identified the same way whichever service on
//! the socket it speaks.

use std::sync::Arc;

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::agent::attestor::WorkloadAttestor;
use crate::errors::Chain;
use crate::registration::Selector;

/// The kernel's view of the caller (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pid: i32,
    uid: u32,
    gid: u32,
}

/// The span of one call on the Workload API socket: `service` is
/// `workload_api` or `sds`; the caller's pid and uid are recorded in it by
/// [`identify`].
pub(crate) fn call_span(service: &'static str, method: &'static str) -> tracing::Span {
    tracing::info_span!(
        "call",
        service,
        method,
        pid = tracing::field::Empty,
        uid = tracing::field::Empty
    )
}

/// The caller of `request`, its pid and uid recorded in `span` (which must
/// declare `pid` and `uid` fields). Unavailable without credentials: the
/// caller cannot be told apart from any other, so nothing is served.
pub(crate) fn identify<T>(request: &Request<T>, span: &tracing::Span) -> Result<Caller, Status> {
    let cred = request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred);
    if let Some(cred) = cred {
        span.record("uid", cred.uid());
        if let Some(pid) = cred.pid() {
            span.record("pid", pid);
        }
    }
    span.in_scope(|| {
        let cred = cred.ok_or_else(|| {
            tracing::warn!("connection without peer credentials");
            Status::unavailable("cannot identify the caller: no peer credentials")
        })?;
        let pid = cred.pid().ok_or_else(|| {
            tracing::warn!("peer credentials without a pid");
            Status::unavailable("cannot identify the caller: no peer pid")
        })?;
        Ok(Caller {
            pid,
            uid: cred.uid(),
            gid: cred.gid(),
        })
    })
}

/// The caller's selectors (the unix attestor reads /proc on a blocking
/// thread; the k8s attestor, if on, then asks the kubelet). A failure is
/// Unavailable: it may pass on a retry. The log says which step failed.
pub(crate) async fn attest(
    attestor: &Arc<WorkloadAttestor>,
    caller: Caller,
) -> Result<Vec<Selector>, Status> {
    match attestor.attest(caller.pid, caller.uid, caller.gid).await {
        Ok(selectors) => {
            tracing::debug!(selectors = selectors.len(), "attested");
            Ok(selectors)
        }
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "workload attestation failed");
            Err(Status::unavailable("workload attestation failed"))
        }
    }
}

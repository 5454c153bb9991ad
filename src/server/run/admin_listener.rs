//! The admin API listener: a Unix socket (0600) whose every call gets a
//! request id, is audited (when the audit log is on) and is checked
//! against the caller's uid ([`crate::server::admin_api`]'s caller check),
//! with a connection budget per uid, a stream cap per connection, HTTP/2
//! keepalive and an idle timeout.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::UdsConnectInfo;

use super::connections::{ConnLimits, GuardedIo};
use super::listeners;
use super::serve::spawn_router;
use super::streams::TrackStreamsLayer;
use super::ServerError;
use crate::config::limits::ListenerLimits;
use crate::ops::GrpcMetricsLayer;
use crate::peer_budget::{next_unix_peer, PeerCounter};
use crate::request_id::RequestIdLayer;
use crate::server::admin_api::{AllowedCallers, CallerCheckLayer};
use crate::server::audit::{AuditLog, AuditScope};

/// Binds the admin socket and serves `routes` on it until `shutdown`.
pub(super) fn serve(
    socket: &Path,
    allowed_uids: &[u32],
    limits: &ListenerLimits,
    routes: Routes,
    counted: GrpcMetricsLayer,
    audit: &AuditLog,
    shutdown: &watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ServerError> {
    let listener = listeners::bind_admin_socket(socket)?;
    // We created the socket: its owner is the uid we run as.
    let own_uid = std::fs::symlink_metadata(socket)
        .map_err(|source| ServerError::Bind {
            what: format!("admin socket {}", socket.display()),
            source,
        })?
        .uid();
    let allowed = AllowedCallers::new(own_uid, allowed_uids);
    let (tx, rx) = mpsc::channel(64);
    let conn_limits = ConnLimits {
        idle_timeout: limits.idle_timeout,
        lifetime: None,
    };
    let per_uid = PeerCounter::new(limits.admin_max_connections_per_uid);
    let stop = shutdown.clone();
    tokio::spawn(accept(listener, per_uid, conn_limits, tx, stop));
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.admin_max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        // Counted outside every other layer, so refused callers count too.
        .layer(counted)
        .layer(TrackStreamsLayer::<UdsConnectInfo>::new())
        .layer(RequestIdLayer)
        // Outside the caller check, so that refused calls are audited too.
        .layer(audit.layer(AuditScope::Every))
        .layer(CallerCheckLayer(allowed))
        .add_routes(routes);
    Ok(spawn_router(server, rx, shutdown, "admin_api"))
}

/// Accepts admin connections, each within its caller uid's budget.
async fn accept(
    listener: UnixListener,
    per_uid: Arc<PeerCounter<u32>>,
    limits: ConnLimits,
    conns: mpsc::Sender<GuardedIo<UnixStream>>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some((stream, uid, slot)) =
        next_unix_peer(&listener, &per_uid, &mut stop, "admin API").await
    {
        let io = GuardedIo::new(stream, Box::new(slot), limits, format!("uid {uid}"));
        if conns.send(io).await.is_err() {
            return;
        }
    }
}

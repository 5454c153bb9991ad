//! The dashboard on a Unix socket (`[dashboard] socket` in `server.toml`):
//! the same pages, JSON and events as on a loopback ops listener, for the
//! admin uids only, so that an operator elsewhere can look through
//! `ssh -L 8080:/path/dashboard.sock host` without a TCP port open to
//! everyone on the machine.
//!
//! The socket is created 0600 in a directory that must exist already, be
//! owned by the server's user and be closed to writes by others (as the
//! admin socket's); every request's peer uid is checked again
//! ([`super::access::check_peer`]), since a mode can be changed. Each
//! connection is held to the ops listener's limits, with a budget per uid,
//! and the event streams to their own cap.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::access::Admins;
use super::{serves, Dashboard, Source};
use crate::ops::http::{refusal, LIMITS};
use crate::runtime_dir::SocketDirError;
use crate::tls::https_server;

/// Why the dashboard's socket could not be opened. Names the
/// configuration key, since the path came from it.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket's directory is not there (it is not created: choose a
    /// directory that exists, owned by the server's user).
    #[error("dashboard.socket {}: its directory {} does not exist", path.display(), dir.display())]
    MissingDir {
        /// The socket.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The directory is unsafe, or the socket could not be bound.
    #[error("dashboard.socket {}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: SocketDirError,
    },
}

/// Binds `path` (0600) and serves `source`'s dashboard there to the uids
/// `admins` allows, until `stop` turns true (which ends the event streams
/// too). Must be called inside a tokio runtime; the task ends once
/// `stop` turns true.
pub fn serve_socket(
    path: &Path,
    source: Arc<dyn Source>,
    admins: Admins,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, SocketError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if std::fs::symlink_metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(SocketError::MissingDir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    // The directory exists: bind_socket only checks it (ours, closed to
    // others), never creates it.
    let listener = crate::runtime_dir::bind_socket(path, 0o600, 0o700).map_err(|source| {
        SocketError::Bind {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let dashboard = Arc::new(Dashboard::for_admins(source, stop.clone(), admins));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let dashboard = dashboard.clone();
        async move {
            let known = serves(req.uri().path());
            Ok::<_, Infallible>(match refusal(&req, known) {
                Some(refused) => refused,
                None => dashboard.answer(&req).await,
            })
        }
    });
    let task = tokio::spawn(https_server::serve_unix(listener, LIMITS, service, stop));
    tracing::info!(socket = %path.display(), "dashboard served on a Unix socket to admin uids");
    Ok(task)
}

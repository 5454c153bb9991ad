//! gRPC channels over Unix sockets: the admin socket of a server and the
//! Workload API socket of an agent are both reached this way, by the CLI,
//! the tests and the benchmarks alike.
//!
//! tonic only speaks HTTP/2 over what a connector hands it, and reports a
//! failed connect as a bare "transport error". [`connect_unix`] therefore
//! dials the socket itself first, so that a missing socket or a refused
//! permission surfaces as the `io::Error` that says so, with the path named.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Why a channel over a Unix socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    /// Nothing answered at the socket (absent, refused, not permitted).
    #[error("cannot connect to the Unix socket {}", path.display())]
    Connect {
        /// The socket dialled.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The socket answered but no HTTP/2 channel could be set up over it.
    #[error("cannot open a gRPC channel over the Unix socket {}", path.display())]
    Channel {
        /// The socket dialled.
        path: PathBuf,
        /// tonic's transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

impl UdsError {
    /// The socket that could not be reached.
    pub fn path(&self) -> &Path {
        match self {
            UdsError::Connect { path, .. } | UdsError::Channel { path, .. } => path,
        }
    }

    /// What went wrong, without the path: for messages that name the socket
    /// in their own words (the CLI's), so the path is not said twice.
    pub fn reason(&self) -> String {
        match self {
            UdsError::Connect { source, .. } => source.to_string(),
            UdsError::Channel { source, .. } => source.to_string(),
        }
    }
}

/// `msg` as a Workload API request, with the `workload.spiffe.io: true`
/// header the API requires of every call (it keeps browsers and proxies
/// that cannot set it out).
pub fn workload_request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

/// Opens a gRPC channel to the server listening on the Unix socket `path`.
///
/// The channel reconnects to the same path by itself if the connection
/// drops. The first connection is the one dialled to check the socket, so
/// a server sees exactly one connection per channel.
pub async fn connect_unix(path: &Path) -> Result<Channel, UdsError> {
    let first = UnixStream::connect(path)
        .await
        .map_err(|source| UdsError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let first = Arc::new(Mutex::new(Some(first)));
    let dial = path.to_path_buf();
    // The URI is required by tonic but unused: the connector decides where to go.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let dial = dial.clone();
            // A poisoned lock only means another connect panicked; the
            // Option inside is still valid.
            let ready = first.lock().unwrap_or_else(PoisonError::into_inner).take();
            async move {
                let stream = match ready {
                    Some(stream) => stream,
                    None => UnixStream::connect(dial).await?,
                };
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| UdsError::Channel {
            path: path.to_path_buf(),
            source,
        })
}

/// Why a Workload API stream that this process follows (as `herald
/// helper` and `herald oidc` do) stopped for now.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket did not answer.
    #[error("cannot reach the Workload API")]
    Connect(#[source] UdsError),
    /// The agent answered with an error, or the stream broke.
    #[error("the Workload API answered {}: {}", .0.code(), .0.message())]
    Status(#[source] tonic::Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_named_with_the_os_error() {
        let (_dir, path) = crate::testing::temp_path("absent.sock");
        let err = connect_unix(&path).await.unwrap_err();
        assert!(matches!(err, UdsError::Connect { .. }), "{err:?}");
        assert_eq!(err.path(), path);
        assert!(err.to_string().contains("absent.sock"), "{err}");
        assert!(!err.reason().contains("absent.sock"), "{}", err.reason());
        let source = std::error::Error::source(&err).expect("the io error is kept");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_listening_socket_yields_a_channel() {
        let (_dir, path) = crate::testing::temp_path("live.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // The accepted stream stays open until the channel is made.
        let accepted = tokio::spawn(async move { listener.accept().await });
        connect_unix(&path).await.unwrap();
        accepted.await.unwrap().unwrap();
    }
}

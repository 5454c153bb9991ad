//! Interop shim for gRPC clients that send a Unix socket path as the HTTP/2
//! `:authority`.
//!
//! grpc-core (and so py-spiffe, grpc-java on some versions, grpcurl) sends
//! the percent-encoded socket path, e.g. `tmp%2Fagent%2Fapi.sock`, as the
//! authority of every request on a `unix:` channel. The `h2` crate under
//! tonic rejects that as a malformed authority (PROTOCOL_ERROR) and has no
//! option to relax it (hyperium/h2#487). The Workload API must serve those
//! clients unchanged, so every accepted connection passes through this shim:
//! it reads the client's HTTP/2 frames, decodes each header block (HPACK),
//! replaces an `:authority` that is not a valid URI authority with
//! `localhost`, and re-encodes the block with literals only (never the
//! dynamic table, so the server's decoder state stays trivially in step).
//! A client whose first request carries a valid authority (tonic, go-spiffe)
//! is detected on that first header block and passed through untouched.
//! Every other frame is copied byte for byte; the server-to-client
//! direction is not touched at all (the server writes to the socket).
//!
//! The shim is also the first code any local user reaches, before any
//! check, so it bounds what one connection and one uid may cost: header
//! blocks (see `block`), connections per uid, and idle time (see `limits`).
//!
//! This file holds the connection wrapper and the accept loop; `rewrite`
//! holds the frame and HPACK rewriting, `block` the bounded HPACK decoding,
//! `limits` the per-connection and per-uid limits, `activity` the request
//! counting behind the idle timeout.

mod activity;
mod block;
mod limits;
mod rewrite;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, DuplexStream, ReadBuf};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;
use tonic::transport::server::{Connected, UdsConnectInfo};

pub use self::activity::{Activity, ActivityGuard, ConnInfo, TrackRequests, TrackRequestsLayer};
pub use self::block::BlockError;
pub use self::limits::{
    ConnLimits, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_UID, DEFAULT_MAX_HEADER_LIST_SIZE,
};
use self::limits::{UidSlot, UidSlots};
use self::rewrite::rewrite_client_frames;
pub use self::rewrite::ShimError;

/// A Workload API connection after the shim: the server reads the
/// client's frames as rewritten (the server side of an in-process pipe)
/// and writes straight to the client's socket, which needs no rewriting;
/// it carries the peer credentials of the real socket.
pub struct ShimmedConn {
    /// The rewritten client-to-server bytes.
    input: DuplexStream,
    /// The socket's write half: the server's frames go out uncopied.
    output: OwnedWriteHalf,
    info: ConnInfo,
    /// The client-to-server task, stopped when the server drops the
    /// connection (its read half goes with it, which closes the socket).
    reader: AbortHandle,
    /// The uid's connection slot, held as long as the server holds the connection.
    _slot: Option<UidSlot>,
}

impl Drop for ShimmedConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connected for ShimmedConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for ShimmedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for ShimmedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.output).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.output).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.output.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.output).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.output).poll_shutdown(cx)
    }
}

/// Runs the client-to-server rewriting over `input` with the default
/// limits, for the fuzz target (`crate::fuzzing::h2_authority`): what it
/// would hand the server, or why it closed the connection.
pub fn rewrite_bytes(input: &[u8]) -> Result<Vec<u8>, ShimError> {
    let mut out = Vec::new();
    // Reading a slice and writing a Vec never wait, so no runtime is needed.
    futures::executor::block_on(rewrite_client_frames(
        input,
        &mut out,
        &ConnLimits::default(),
    ))?;
    Ok(out)
}

/// Accepted connections of `listener` under the default [`ConnLimits`],
/// each wrapped by the shim.
pub fn incoming(listener: UnixListener) -> impl futures::Stream<Item = io::Result<ShimmedConn>> {
    incoming_with(listener, ConnLimits::default())
}

/// Accepted connections of `listener`, each wrapped by the shim. A
/// connection beyond its uid's share is closed at once; accept errors
/// (such as running out of file descriptors) are logged and retried, never
/// passed on.
pub fn incoming_with(
    listener: UnixListener,
    limits: ConnLimits,
) -> impl futures::Stream<Item = io::Result<ShimmedConn>> {
    let state = (listener, Arc::new(UidSlots::default()), Arc::new(limits));
    futures::stream::unfold(state, |(listener, slots, limits)| async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "Workload API accept failed");
                    // Out of descriptors or memory: give closing connections a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let info = stream.connect_info();
            let (uid, pid) = info
                .peer_cred
                .map_or((u32::MAX, None), |c| (c.uid(), c.pid()));
            let Some(slot) = slots.acquire(uid, limits.max_connections_per_uid) else {
                tracing::warn!(
                    uid,
                    pid,
                    max = limits.max_connections_per_uid,
                    "Workload API connection refused: the caller's uid holds the most connections allowed (workload_api_max_connections_per_uid)"
                );
                drop(stream);
                continue;
            };
            let conn = shim_with(stream, info, limits.clone(), Some(slot));
            return Some((Ok(conn), (listener, slots, limits)));
        }
    })
}

/// Wraps one accepted socket under the default [`ConnLimits`].
pub fn shim(stream: UnixStream) -> ShimmedConn {
    let info = stream.connect_info();
    shim_with(stream, info, Arc::new(ConnLimits::default()), None)
}

fn shim_with(
    stream: UnixStream,
    uds: UdsConnectInfo,
    limits: Arc<ConnLimits>,
    slot: Option<UidSlot>,
) -> ShimmedConn {
    let activity = Arc::new(Activity::default());
    let (uid, pid) = uds
        .peer_cred
        .map_or((None, None), |c| (Some(c.uid()), c.pid()));
    // Only the client-to-server direction is rewritten, so only it goes
    // through a pipe; the server writes to the socket itself.
    let (server_side, mut pipe_write) = tokio::io::duplex(64 * 1024);
    let (client_read, client_write) = stream.into_split();
    let idle = activity.clone();
    let reader = tokio::spawn(async move {
        tokio::select! {
            result = rewrite_client_frames(client_read, &mut pipe_write, &limits) => match result {
                Ok(()) => {}
                Err(ShimError::Io(e)) => {
                    tracing::debug!(uid, pid, error = %e, "workload connection: client stream ended")
                }
                Err(e) => tracing::warn!(
                    uid,
                    pid,
                    error = %crate::errors::Chain(&e),
                    "workload connection closed: bad HTTP/2 input"
                ),
            },
            () = idle.idle_for(limits.idle_timeout) => tracing::debug!(
                uid,
                pid,
                "workload connection closed: no request for workload_api_idle_timeout"
            ),
        }
        // The server sees the end of its input and closes the connection.
        let _ = pipe_write.shutdown().await;
    })
    .abort_handle();
    ShimmedConn {
        input: server_side,
        output: client_write,
        info: ConnInfo { uds, activity },
        reader,
        _slot: slot,
    }
}

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
//! Every other frame, and the whole server-to-client direction, is copied
//! byte for byte.

//!
//! This file holds the connection wrapper; `rewrite` holds the frame and
//! HPACK rewriting.

mod rewrite;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, DuplexStream, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::{Connected, UdsConnectInfo};

use self::rewrite::rewrite_client_frames;

/// A Workload API connection after the shim: the server side of an
/// in-process pipe, carrying the peer credentials of the real socket.
pub struct ShimmedConn {
    io: DuplexStream,
    info: UdsConnectInfo,
}

impl Connected for ShimmedConn {
    type ConnectInfo = UdsConnectInfo;

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
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ShimmedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepted connections of `listener`, each wrapped by the shim.
pub fn incoming(listener: UnixListener) -> impl futures::Stream<Item = io::Result<ShimmedConn>> {
    futures::stream::unfold(listener, |listener| async move {
        let conn = match listener.accept().await {
            Ok((stream, _)) => Ok(shim(stream)),
            Err(e) => Err(e),
        };
        Some((conn, listener))
    })
}

/// Wraps one accepted socket.
pub fn shim(stream: UnixStream) -> ShimmedConn {
    let info = stream.connect_info();
    let (server_side, shim_side) = tokio::io::duplex(64 * 1024);
    let (client_read, mut client_write) = stream.into_split();
    let (mut pipe_read, pipe_write) = tokio::io::split(shim_side);
    tokio::spawn(async move {
        if let Err(e) = rewrite_client_frames(client_read, pipe_write).await {
            tracing::debug!(error = %e, "workload connection: client stream ended");
        }
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut pipe_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    ShimmedConn {
        io: server_side,
        info,
    }
}

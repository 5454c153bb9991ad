//! What every long-lived connection of the server is held to, whatever it
//! speaks: a share of a per-peer connection budget
//! ([`crate::peer_budget::PeerCounter`], keyed by IP address or caller
//! uid), and a watchdog that closes it once it has
//! had no open stream for the idle timeout, or has outlived its lifetime
//! ([`GuardedIo`]). Open streams are counted by [`super::streams`] through
//! the [`ConnInfo`] every request carries.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};
use tonic::transport::server::Connected;

use super::peer_svid::PeerSvidMemo;

// === impl Activity ===

/// How many streams a connection has open, watched by its watchdog.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<watch::Sender<usize>>);

/// One open stream; dropping it closes the stream in the count.
#[derive(Debug)]
pub(crate) struct StreamGuard(Activity);

impl Activity {
    pub(crate) fn stream_opened(&self) -> StreamGuard {
        self.0.send_modify(|n| *n += 1);
        StreamGuard(self.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What a request learns about its connection: the transport's own info
/// (TLS peer certificates, Unix peer credentials) and the stream count.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo<T> {
    /// The transport's connect info.
    pub(crate) inner: T,
    pub(crate) activity: Activity,
    /// The client's X509-SVID, read by the first request that asks (node
    /// connections only; see [`super::peer_svid`]).
    pub(crate) peer_svid: PeerSvidMemo,
}

// === impl GuardedIo ===

/// When the watchdog closes a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Closed after this long without an open stream.
    pub(crate) idle_timeout: Duration,
    /// Closed after this long, streams or not (`None`: never).
    pub(crate) lifetime: Option<Duration>,
}

/// A connection that holds its peer slot(s) while it lives and stops
/// reading and writing once its watchdog fires, which makes the HTTP/2
/// server drop it and every stream on it.
pub(crate) struct GuardedIo<I> {
    io: I,
    activity: Activity,
    kill: Option<oneshot::Receiver<()>>,
    killed: bool,
    peer_svid: PeerSvidMemo,
    _slots: Box<dyn std::any::Any + Send + Sync>,
}

impl<I> GuardedIo<I> {
    /// Wraps `io`, holding `slots` until it is dropped, and starts its
    /// watchdog. `peer` names the peer in the watchdog's log line.
    pub(crate) fn new(
        io: I,
        slots: Box<dyn std::any::Any + Send + Sync>,
        limits: ConnLimits,
        peer: String,
    ) -> Self {
        let (tx, rx) = watch::channel(0usize);
        let (kill_tx, kill_rx) = oneshot::channel();
        tokio::spawn(watchdog(rx, kill_tx, limits, peer));
        GuardedIo {
            io,
            activity: Activity(Arc::new(tx)),
            kill: Some(kill_rx),
            killed: false,
            peer_svid: PeerSvidMemo::default(),
            _slots: slots,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.killed {
            if let Some(rx) = &mut self.kill {
                match rx.poll_unpin(cx) {
                    Poll::Ready(Ok(())) => self.killed = true,
                    // The watchdog ended without a verdict: nothing to watch.
                    Poll::Ready(Err(_)) => self.kill = None,
                    Poll::Pending => {}
                }
            }
        }
        if self.killed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection closed: idle or past its lifetime",
            ));
        }
        Ok(())
    }
}

/// Closes the connection (through `kill`) once it has had no open stream
/// for the idle timeout or has reached its lifetime; ends quietly when the
/// connection goes away first.
async fn watchdog(
    mut open: watch::Receiver<usize>,
    kill: oneshot::Sender<()>,
    limits: ConnLimits,
    peer: String,
) {
    let lifetime = async {
        match limits.lifetime {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let idle = async {
        loop {
            if *open.borrow_and_update() == 0 {
                match tokio::time::timeout(limits.idle_timeout, open.changed()).await {
                    Err(_) => return true,
                    Ok(Err(_)) => return false,
                    Ok(Ok(())) => {}
                }
            } else if open.changed().await.is_err() {
                return false;
            }
        }
    };
    let close = tokio::select! {
        () = lifetime => {
            tracing::debug!(%peer, "connection reached its lifetime; closing it");
            true
        }
        idle = idle => {
            if idle {
                tracing::debug!(%peer, "connection idle; closing it");
            }
            idle
        }
    };
    if close {
        let _ = kill.send(());
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<I: Connected> Connected for GuardedIo<I> {
    type ConnectInfo = ConnInfo<I::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            inner: self.io.connect_info(),
            activity: self.activity.clone(),
            peer_svid: self.peer_svid.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        use tokio::io::AsyncReadExt as _;
        let (_client, server) = tokio::io::duplex(64);
        let limits = ConnLimits {
            idle_timeout: Duration::from_millis(100),
            lifetime: None,
        };
        let mut io = GuardedIo::new(server, Box::new(()), limits, "test".into());
        let stream = io.activity.stream_opened();
        let mut buf = [0u8; 1];
        let busy = tokio::time::timeout(Duration::from_millis(500), io.read(&mut buf)).await;
        assert!(busy.is_err(), "a stream is open: the connection stays");
        drop(stream);
        let idle = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await;
        let err = idle
            .expect("the idle connection was not closed")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}

//! HTTP/1.1 over TLS with hyper, bounded, for every Herald HTTP listener
//! (the federation bundle endpoint; later the operations listener). The
//! bounds live here so that no listener can forget one: a peer that sends
//! too much, too slowly or nonsense gets its connection closed, not a task
//! that lives forever.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument as _;

/// How much time and memory one connection may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole connection: TLS handshake, requests and responses.
    pub connection_timeout: Duration,
    /// From the first byte of a request to the end of its head.
    pub header_read_timeout: Duration,
    /// Largest request head read (hyper's minimum is 8 KiB).
    pub max_request_head: usize,
    /// Whether a connection may carry more than one request (within
    /// `connection_timeout` either way).
    pub keep_alive: bool,
}

/// Serves `service` on one accepted connection (TLS or not) within
/// `limits`, except the overall `connection_timeout`, which [`serve`]
/// applies around the handshake too. Header names go out in title case
/// (`Content-Type`), as hand-written clients and older tools expect.
pub async fn serve_connection<I, S, B>(io: I, limits: &Limits, service: S) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_request_head)
        .keep_alive(limits.keep_alive)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// Accepts connections on `listener` until `stop` turns true; each gets a
/// task that does the TLS handshake with `tls` and serves `service`, all
/// within `limits`. Every connection runs in a span carrying its peer.
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, limits, service) = (acceptor.clone(), limits.clone(), service.clone());
        let timeout = limits.connection_timeout;
        let connection = async move {
            let stream = acceptor.accept(tcp).await?;
            serve_connection(stream, &limits, service).await?;
            Ok::<_, ConnectionError>(())
        };
        tokio::spawn(
            async move {
                match tokio::time::timeout(timeout, connection).await {
                    Ok(Ok(())) => tracing::debug!("connection served"),
                    Ok(Err(e)) => tracing::debug!(error = %e, "connection failed"),
                    Err(_) => tracing::debug!("connection timed out"),
                }
            }
            .instrument(tracing::info_span!("connection", %peer)),
        );
    }
}

/// Why one connection ended badly.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[from] std::io::Error),
    /// The peer broke HTTP (or a limit), or the connection failed.
    #[error("HTTP failed: {0}")]
    Http(#[from] hyper::Error),
}

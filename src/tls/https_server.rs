//! HTTP/1.1 over TLS with hyper, bounded, for every Herald HTTP listener
//! (the federation bundle endpoint, the operations listener, and the
//! dashboard's Unix socket). The
//! bounds live here so that no listener can forget one: a peer that sends
//! too much, too slowly or nonsense gets its connection closed, not a task
//! that lives forever.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::peer_budget::PeerCounter;

mod unix;
pub use self::unix::serve_unix;

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
    /// Live connections (counting TLS handshakes) from one IP address; a
    /// further one is closed at accept.
    pub max_connections_per_peer: usize,
}

/// What a request learns about its connection, in its extensions: the
/// peer's address (for a service that checks who may see what), and a way
/// out of the connection's overall timeout for a response that streams for
/// long (server-sent events), which then brings bounds of its own.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Who connected.
    pub peer: Peer,
    long_lived: Arc<AtomicBool>,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer, by its address.
    Tcp(SocketAddr),
    /// A Unix socket peer, by the uid the kernel recorded at connect
    /// (SO_PEERCRED).
    Unix {
        /// The peer's uid.
        uid: u32,
    },
}

impl Connection {
    /// A connection from the TCP `peer`, held to its timeout.
    pub fn new(peer: SocketAddr) -> Self {
        Connection::of(Peer::Tcp(peer))
    }

    /// A connection from `peer`, held to its timeout.
    pub fn of(peer: Peer) -> Self {
        Connection {
            peer,
            long_lived: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Lifts `connection_timeout` from this connection: its response
    /// streams for as long as the service bounds it.
    pub fn outlive_timeout(&self) {
        self.long_lived.store(true, Ordering::Relaxed);
    }

    /// Whether [`Connection::outlive_timeout`] was called.
    pub fn is_long_lived(&self) -> bool {
        self.long_lived.load(Ordering::Relaxed)
    }
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

/// How the connections a listener accepts are spoken to.
pub enum Transport {
    /// HTTPS: a TLS handshake with this configuration first.
    Tls(Arc<rustls::ServerConfig>),
    /// Plain HTTP, for a listener on loopback behind a proxy that
    /// terminates TLS (the caller makes sure of the loopback).
    Plain,
}

/// Accepts connections on `listener` until `stop` turns true; each gets a
/// task that speaks `transport` and serves `service`, all within `limits`
/// (a peer over its connection budget is closed at accept). Every
/// connection runs in a span carrying its peer, and every request carries
/// its [`Connection`].
pub async fn serve<S, B>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    service: S,
    stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let acceptor = match transport {
        Transport::Tls(tls) => Some(tokio_rustls::TlsAcceptor::from(tls)),
        Transport::Plain => None,
    };
    let mut stop = stop;
    let per_peer = PeerCounter::new(limits.max_connections_per_peer);
    while let Some((tcp, peer)) = next_connection(&listener, &mut stop).await {
        let Some(slot) = per_peer.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, max = per_peer.max(), "too many connections from this address; closing the new one");
            continue;
        };
        let (limits, acceptor) = (limits.clone(), acceptor.clone());
        let timeout = limits.connection_timeout;
        let info = Connection::new(peer);
        let service = with_connection(service.clone(), info.clone());
        let connection = async move {
            let _slot = slot;
            match acceptor {
                Some(acceptor) => {
                    let tls = acceptor.accept(tcp).await?;
                    serve_connection(tls, &limits, service).await?;
                }
                None => serve_connection(tcp, &limits, service).await?,
            }
            Ok::<_, ConnectionError>(())
        };
        let span = tracing::info_span!("connection", %peer);
        spawn_within(timeout, info, connection, span);
    }
}

/// Runs one connection in a task of its own, within `timeout` unless it
/// becomes long-lived.
fn spawn_within(
    timeout: Duration,
    info: Connection,
    connection: impl std::future::Future<Output = Result<(), ConnectionError>> + Send + 'static,
    span: tracing::Span,
) {
    tokio::spawn(
        async move {
            match within_timeout(timeout, &info, connection).await {
                Some(Ok(())) => tracing::debug!("connection served"),
                Some(Err(e)) => tracing::debug!(error = %e, "connection failed"),
                None => tracing::debug!("connection timed out"),
            }
        }
        .instrument(span),
    );
}

/// A service with its connection's [`Connection`] in the extensions of
/// every request.
struct WithConnection<S> {
    inner: S,
    info: Connection,
}

fn with_connection<S>(inner: S, info: Connection) -> WithConnection<S> {
    WithConnection { inner, info }
}

impl<S, B> Service<Request<B>> for WithConnection<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.inner.call(req)
    }
}

/// Runs `connection` until it ends (`Some`) or `timeout` passes (`None`),
/// unless the connection was made long-lived by then.
async fn within_timeout<T>(
    timeout: Duration,
    info: &Connection,
    connection: impl std::future::Future<Output = T>,
) -> Option<T> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(connection, deadline);
    loop {
        tokio::select! {
            done = &mut connection => return Some(done),
            () = &mut deadline, if !info.is_long_lived() => {
                if !info.is_long_lived() {
                    return None;
                }
            }
        }
    }
}

/// The next accepted TCP connection (with Nagle off: requests and answers
/// are small), or `None` once `stop` turns true. Any TCP listener of the
/// server can accept through this.
pub async fn next_connection(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(stop) => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return Some((tcp, peer));
            }
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const TEST_LIMITS: Limits = Limits {
        connection_timeout: Duration::from_secs(5),
        header_read_timeout: Duration::from_millis(200),
        max_request_head: 16 * 1024,
        keep_alive: false,
        max_connections_per_peer: 4,
    };

    /// Serves a fixed answer on one in-memory connection; returns what the
    /// client end reads after sending `request` (the client end stays open,
    /// so an unfinished head waits for the server's limits).
    async fn exchange(request: Vec<u8>) -> (String, hyper::Result<()>) {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
        });
        let served =
            tokio::spawn(async move { serve_connection(server, &TEST_LIMITS, service).await });
        client.write_all(&request).await.unwrap();
        let mut out = Vec::new();
        // Without the limits the server would wait for the rest forever.
        let read = tokio::time::timeout(Duration::from_secs(3), client.read_to_end(&mut out));
        assert!(read.await.is_ok(), "the server kept the connection open");
        (
            String::from_utf8_lossy(&out).into_owned(),
            served.await.unwrap(),
        )
    }

    #[tokio::test]
    async fn one_request_per_connection_with_title_case_headers() {
        let (response, served) = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("Connection: close"), "{response}");
        assert!(response.ends_with("hello"), "{response}");
        assert!(served.is_ok());
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while request.len() < 32 * 1024 {
            request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        request.extend_from_slice(b"\r\n");
        let (response, served) = exchange(request).await;
        assert!(!response.contains("hello"), "{response}");
        assert!(served.is_err());
    }

    #[tokio::test]
    async fn only_a_long_lived_connection_outlives_its_timeout() {
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let timeout = Duration::from_millis(20);
        let held = Connection::new(peer);
        let never = std::future::pending::<()>();
        assert!(within_timeout(timeout, &held, never).await.is_none());
        let streaming = Connection::new(peer);
        let lift = streaming.clone();
        let connection = async move {
            lift.outlive_timeout();
            tokio::time::sleep(timeout * 10).await;
        };
        assert!(within_timeout(timeout, &streaming, connection)
            .await
            .is_some());
    }

    #[tokio::test]
    async fn a_slow_head_runs_into_the_header_timeout() {
        let (response, served) = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()).await;
        assert!(!response.contains("hello"), "{response}");
        assert!(served.is_err());
    }
}

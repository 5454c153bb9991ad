//! One HTTP `GET` (or JSON `POST`) over a stream the caller connected (TLS
//! of ours, or plain TCP): hyper's HTTP/1.1 client, one request per
//! connection, so that the caller's TLS configuration decides whom we talk
//! to. Used for federation bundles (`server/federation/fetch.rs`), the
//! kubelet's pod list (`agent/attestor/k8s/kubelet.rs`) and the Kubernetes
//! API of k8s_psat (`server/k8s_psat/api.rs`). Everything a peer sends is
//! bounded in size; a peer that sends too much or nonsense gets an error,
//! not a panic. The caller bounds the time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one `GET` asks for.
#[derive(Debug, Clone, Copy)]
pub struct GetRequest<'a> {
    /// The request target: path and query.
    pub target: &'a str,
    /// The `Host` header (host, and port if not the scheme's default).
    pub host: &'a str,
    /// A bearer token for `Authorization`, if any.
    pub bearer: Option<&'a str>,
    /// The largest response body read.
    pub max_body: usize,
}

/// Largest response head read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A response, as the fetcher needs it.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be built from the URL.
    #[error("cannot build the request: {0}")]
    Request(#[source] http::Error),
    /// The peer broke HTTP/1.1 or a size limit, or the connection failed.
    #[error("malformed HTTP: {0}")]
    Protocol(#[source] hyper::Error),
    /// The peer sent a larger body than we accept.
    #[error("the response is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

/// Sends `GET` on `stream` and reads the whole response.
pub async fn get<S>(stream: S, req: GetRequest<'_>) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    send(stream, req, None).await
}

/// Sends `POST` with a JSON `body` on `stream` and reads the whole response.
pub async fn post_json<S>(
    stream: S,
    req: GetRequest<'_>,
    body: Vec<u8>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    send(stream, req, Some(body)).await
}

/// `GET` without a body, `POST` of JSON with one.
async fn send<S>(
    stream: S,
    req: GetRequest<'_>,
    body: Option<Vec<u8>>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = req.max_body;
    let method = if body.is_some() {
        http::Method::POST
    } else {
        http::Method::GET
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(req.target)
        .header(HOST, req.host)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close");
    if let Some(token) = req.bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(HttpError::Request)?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake(TokioIo::new(CleanEof(stream)))
        .await
        .map_err(HttpError::Protocol)?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(HttpError::Protocol)?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // An announced length over the limit is refused before reading.
        if hyper::body::Body::size_hint(response.body()).lower() > limit as u64 {
            return Err(HttpError::TooLarge { limit });
        }
        let body = read_body(response.into_body(), limit).await?;
        Ok(Response {
            status,
            location,
            body,
        })
    };
    // The connection is driven here, not in a task of its own, so that it
    // ends with the caller's timeout.
    tokio::pin!(exchange, connection);
    tokio::select! {
        response = &mut exchange => response,
        ended = &mut connection => {
            ended.map_err(HttpError::Protocol)?;
            // Closed after a complete response: what is buffered is all.
            exchange.await
        }
    }
}

/// The whole body, copied frame by frame into one buffer as it arrives:
/// linear in what the peer sends however it frames it (a chunked body of
/// 1-byte chunks costs one small copy per chunk, and keeps nothing per
/// chunk), and never more than `limit` bytes. The caller's deadline bounds
/// the time.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, HttpError> {
    // An announced length (already checked) is allocated once.
    let announced = hyper::body::Body::size_hint(&body).lower();
    let mut out = Vec::with_capacity(usize::try_from(announced).unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Protocol)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() > limit - out.len() {
            return Err(HttpError::TooLarge { limit });
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// A stream that reads an unclean TLS close (no `close_notify`) as the end
/// of the stream: the HTTP framing, not TLS, decides whether a response is
/// complete, and a cut-off body fails to parse anyway.
struct CleanEof<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for CleanEof<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CleanEof<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// Bundles' limit, as federation uses it.
    const MAX_RESPONSE: usize = 4 * 1024 * 1024;

    fn request() -> GetRequest<'static> {
        GetRequest {
            target: "/",
            host: "localhost",
            bearer: None,
            max_body: MAX_RESPONSE,
        }
    }

    /// Answers one request with `response` on an in-memory stream.
    async fn exchange(response: &'static [u8]) -> Result<Response, HttpError> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut buf).await;
            let _ = server.write_all(response).await;
            let _ = server.shutdown().await;
        });
        get(client, request()).await
    }

    #[tokio::test]
    async fn responses_are_framed_by_length_chunks_or_close() {
        let r = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}")
            .await
            .is_err());
        let r = exchange(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n{\"\r\n3\r\nk\":\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"{\"k\":");
        assert!(
            exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n")
                .await
                .is_err()
        );
        let r = exchange(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((r.status, r.location.as_deref()), (302, Some("/x")));
        let r = exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
            .await
            .unwrap();
        assert_eq!(r.body, b"until close");
    }

    /// A body in 1-byte chunks arrives whole; one over the limit in 1-byte
    /// chunks is refused at the limit.
    #[tokio::test]
    async fn one_byte_chunks_are_read_whole_and_bounded() {
        fn chunked(body: &[u8]) -> &'static [u8] {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for b in body {
                out.extend_from_slice(b"1\r\n");
                out.push(*b);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            Box::leak(out.into_boxed_slice())
        }
        let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let r = exchange(chunked(&body)).await.unwrap();
        assert_eq!(r.body, body);
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut buf).await;
            let _ = server
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunks = b"1\r\nx\r\n".repeat(4096);
            while server.write_all(&chunks).await.is_ok() {}
        });
        assert!(matches!(
            get(client, request()).await,
            Err(HttpError::TooLarge {
                limit: MAX_RESPONSE
            })
        ));
    }

    #[tokio::test]
    async fn nonsense_and_excess_are_errors() {
        assert!(exchange(b"SSH-2.0-OpenSSH\r\n\r\n").await.is_err());
        assert!(exchange(b"HTTP/1.1 200 OK\r\nbad\r\n\r\n").await.is_err());
        assert!(matches!(
            exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n").await,
            Err(HttpError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn an_endless_head_is_refused() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut buf).await;
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            while server.write_all(line).await.is_ok() {}
        });
        assert!(matches!(
            get(client, request()).await,
            Err(HttpError::Protocol(_))
        ));
    }
}

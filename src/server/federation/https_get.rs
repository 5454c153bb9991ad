//! One HTTPS `GET` of a bundle: hyper's HTTP/1.1 client over a TLS
//! connection of ours ([`super::endpoint_auth`]), so that the profile's
//! verifier (SPIFFE or Web PKI) decides whom we talk to. One request per
//! connection. Everything a
//! peer sends is bounded in size; a peer that sends too much or nonsense
//! gets an error, not a panic. The caller bounds the time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::spiffe::EndpointUrl;

/// Largest response body read. SPIFFE bundles are a few KiB; this leaves
/// room for large key sets.
pub(super) const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Largest response head read.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A response, as the fetcher needs it.
#[derive(Debug)]
pub(super) struct Response {
    /// The status code.
    pub(super) status: u16,
    /// `Location`, for redirects.
    pub(super) location: Option<String>,
    /// The decoded body.
    pub(super) body: Vec<u8>,
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

/// Sends `GET url` on `stream` and reads the whole response.
pub(super) async fn get<S>(stream: S, url: &EndpointUrl) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = http::Request::get(url.target())
        .header(HOST, url.host_header())
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
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
        if hyper::body::Body::size_hint(response.body()).lower() > MAX_RESPONSE as u64 {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            });
        }
        let body = read_body(response.into_body()).await?;
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
/// chunk), and never more than [`MAX_RESPONSE`] bytes. The caller's
/// deadline bounds the time.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, HttpError> {
    // An announced length (already checked) is allocated once.
    let announced = hyper::body::Body::size_hint(&body).lower();
    let mut out = Vec::with_capacity(usize::try_from(announced).unwrap_or(0).min(MAX_RESPONSE));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Protocol)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() > MAX_RESPONSE - out.len() {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            });
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// A stream that reads an unclean TLS close (no `close_notify`) as the end
/// of the stream: the HTTP framing, not TLS, decides whether a response is
/// complete, and a cut-off bundle fails to parse anyway.
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

    /// Answers one request with `response` on an in-memory stream.
    async fn exchange(response: &'static [u8]) -> Result<Response, HttpError> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut buf).await;
            let _ = server.write_all(response).await;
            let _ = server.shutdown().await;
        });
        let url = EndpointUrl::parse("https://localhost/").unwrap();
        get(client, &url).await
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
        let url = EndpointUrl::parse("https://localhost/").unwrap();
        assert!(matches!(
            get(client, &url).await,
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
        let url = EndpointUrl::parse("https://localhost/").unwrap();
        assert!(matches!(
            get(client, &url).await,
            Err(HttpError::Protocol(_))
        ));
    }
}

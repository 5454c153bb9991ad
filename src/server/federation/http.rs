//! The little HTTP/1.1 a bundle endpoint needs, both ways: one `GET` per
//! connection (`Connection: close`), bodies framed by `Content-Length`,
//! chunked encoding or end of stream. Everything a peer sends is bounded in
//! size; a peer that sends too much or nonsense gets an error, not a panic.
//!
//! Also the bundle endpoint URL rules (SPIFFE.md §5.4): `https`, a host, no
//! userinfo, no fragment.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest request head the endpoint reads.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Largest response (head and body) the fetcher reads. SPIFFE bundles are a
/// few KiB; this leaves room for large key sets.
pub(super) const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Largest response head the fetcher reads.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why a bundle endpoint URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl {
        /// The text.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Another scheme than https.
    #[error("{url:?} must use the https scheme")]
    NotHttps {
        /// The text.
        url: String,
    },
    /// `user:password@` is not allowed.
    #[error("{url:?} must not contain userinfo (user@)")]
    UserInfo {
        /// The text.
        url: String,
    },
    /// No host.
    #[error("{url:?} has no host")]
    NoHost {
        /// The text.
        url: String,
    },
    /// A `#fragment` has no meaning to a server.
    #[error("{url:?} must not contain a fragment (#)")]
    Fragment {
        /// The text.
        url: String,
    },
}

/// A checked bundle endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    text: String,
    /// Host without IPv6 brackets (`::1`, `example.org`).
    host: String,
    /// The `Host` header value (`example.org:8443`, `[::1]`).
    host_header: String,
    port: u16,
    /// Path and query, at least `/`.
    target: String,
}

impl EndpointUrl {
    /// Checks `url` against the bundle endpoint URL rules.
    pub fn parse(url: &str) -> Result<EndpointUrl, UrlError> {
        if url.contains('#') {
            return Err(UrlError::Fragment { url: url.into() });
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| UrlError::NotAUrl {
                url: url.into(),
                reason: e.to_string(),
            })?;
        if uri.scheme_str() != Some("https") {
            return Err(UrlError::NotHttps { url: url.into() });
        }
        let authority = uri
            .authority()
            .ok_or_else(|| UrlError::NoHost { url: url.into() })?;
        if authority.as_str().contains('@') {
            return Err(UrlError::UserInfo { url: url.into() });
        }
        let bracketed = authority.host();
        let host = bracketed.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost { url: url.into() });
        }
        let port = authority.port_u16().unwrap_or(443);
        let host_header = match authority.port_u16() {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed.to_string(),
        };
        let target = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string();
        Ok(EndpointUrl {
            text: url.to_string(),
            host: host.to_string(),
            host_header,
            port,
            target,
        })
    }

    /// The host to connect to and name in TLS (no brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves a redirect's `Location` against this URL: an absolute URL,
    /// or an absolute path on the same host. The result is checked again.
    pub fn join(&self, location: &str) -> Result<EndpointUrl, UrlError> {
        if location.starts_with('/') && !location.starts_with("//") {
            EndpointUrl::parse(&format!("https://{}{}", self.host_header, location))
        } else {
            EndpointUrl::parse(location)
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    /// Reading or writing the stream failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not HTTP/1.x.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    /// The peer sent more than we accept.
    #[error("the response is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

/// A request line, as the endpoint reads it.
#[derive(Debug)]
pub(super) struct RequestHead {
    /// `GET`, `POST`, …
    pub(super) method: String,
    /// The path without its query.
    pub(super) path: String,
}

/// A response, as the fetcher reads it.
#[derive(Debug)]
pub(super) struct Response {
    /// The status code.
    pub(super) status: u16,
    /// `Location`, for redirects.
    pub(super) location: Option<String>,
    /// The decoded body.
    pub(super) body: Vec<u8>,
}

/// Reads a request's head (the endpoint serves no request bodies).
pub(super) async fn read_request_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<RequestHead, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Err(HttpError::TooLarge {
                limit: MAX_REQUEST_HEAD,
            });
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Malformed(
                "the connection closed before the request head ended".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| HttpError::Malformed("the request head is not UTF-8".into()))?;
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty() && version.starts_with("HTTP/1.") =>
        {
            let path = target.split('?').next().unwrap_or_default().to_string();
            Ok(RequestHead {
                method: method.to_string(),
                path,
            })
        }
        _ => Err(HttpError::Malformed(format!(
            "bad request line {:?}",
            truncate(line)
        ))),
    }
}

/// Writes a complete response and flushes it.
pub(super) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Sends `GET url` on `stream` and reads the whole response.
pub(super) async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    url: &EndpointUrl,
) -> Result<Response, HttpError> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: herald/{}\r\nConnection: close\r\n\r\n",
        url.target,
        url.host_header,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut buf = Vec::with_capacity(8 * 1024);
    // Large reads keep the re-parsing of a slow, large answer cheap.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    loop {
        if let Some(response) = parse_response(&buf, eof)? {
            return Ok(response);
        }
        if eof {
            return Err(HttpError::Malformed(
                "the connection closed before the response ended".into(),
            ));
        }
        if buf.len() > MAX_RESPONSE {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            });
        }
        if buf.len() > MAX_RESPONSE_HEAD && find(&buf, b"\r\n\r\n").is_none() {
            return Err(HttpError::Malformed(format!(
                "no end of the response head within {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A peer that closes without TLS close_notify: the framing
            // decides whether the response is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Body framing announced by the response head.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// The response in `buf` if it is complete (`eof`: no more bytes will come).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| HttpError::Malformed("the response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => {
            code.parse::<u16>().ok().filter(|c| (100..=599).contains(c))
        }
        _ => None,
    }
    .ok_or_else(|| HttpError::Malformed(format!("bad status line {:?}", truncate(status_line))))?;
    let mut framing = Framing::UntilClose;
    let mut location = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!(
                "bad header line {:?}",
                truncate(line)
            )));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {value:?}")))?;
            if n > MAX_RESPONSE {
                return Err(HttpError::TooLarge {
                    limit: MAX_RESPONSE,
                });
            }
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
            {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        }
    }
    let rest = &buf[end + 4..];
    let body = match framing {
        Framing::Length(n) if rest.len() >= n => rest[..n].to_vec(),
        Framing::Length(n) if eof => {
            return Err(HttpError::Malformed(format!(
                "the body ended after {} of {n} bytes",
                rest.len()
            )))
        }
        Framing::Length(_) => return Ok(None),
        Framing::Chunked => match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        },
        Framing::UntilClose if eof => rest.to_vec(),
        Framing::UntilClose => return Ok(None),
    };
    Ok(Some(Response {
        status,
        location,
        body,
    }))
}

/// Decodes a chunked body; `None` if more bytes are needed.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..line_end])
            .map_err(|_| HttpError::Malformed("bad chunk size line".into()))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("bad chunk size {:?}", truncate(line))))?;
        if size > MAX_RESPONSE || body.len() + size > MAX_RESPONSE {
            return Err(HttpError::TooLarge {
                limit: MAX_RESPONSE,
            });
        }
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            return Ok(
                if data.starts_with(b"\r\n") || find(data, b"\r\n\r\n").is_some() {
                    Some(body)
                } else {
                    None
                },
            );
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed(
                "a chunk does not end with CRLF".into(),
            ));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// At most 80 characters of what a peer sent, for error messages.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_follow_the_profile_rules() {
        let u = EndpointUrl::parse("https://example.org:8443/bundle?x=1").unwrap();
        assert_eq!((u.host(), u.port()), ("example.org", 8443));
        assert_eq!(u.target, "/bundle?x=1");
        assert_eq!(u.host_header, "example.org:8443");
        let u = EndpointUrl::parse("https://[::1]").unwrap();
        assert_eq!((u.host(), u.port(), u.target.as_str()), ("::1", 443, "/"));
        assert!(matches!(
            EndpointUrl::parse("http://example.org/"),
            Err(UrlError::NotHttps { .. })
        ));
        assert!(matches!(
            EndpointUrl::parse("https://user:pw@example.org/"),
            Err(UrlError::UserInfo { .. })
        ));
        assert!(matches!(
            EndpointUrl::parse("https://example.org/#x"),
            Err(UrlError::Fragment { .. })
        ));
        assert!(EndpointUrl::parse("example.org").is_err());
        assert!(EndpointUrl::parse("").is_err());
        assert_eq!(u.join("/other").unwrap().to_string(), "https://[::1]/other");
        assert!(u.join("http://evil/").is_err());
    }

    #[test]
    fn responses_are_framed_by_length_chunks_or_close() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false)
                .unwrap()
                .is_none()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", true).is_err());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n{\"\r\n3\r\nk\":\r\n0\r\n\r\n";
        let r = parse_response(chunked, false).unwrap().unwrap();
        assert_eq!(r.body, b"{\"k\":");
        assert!(parse_response(&chunked[..chunked.len() - 2], false)
            .unwrap()
            .is_none());
        let r = parse_response(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.location.as_deref()), (302, Some("/x")));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nbad\r\n\r\n", true).is_err());
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                false
            ),
            Err(HttpError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn reads_request_heads() {
        let mut input: &[u8] = b"GET /?a=b HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = read_request_head(&mut input).await.unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", "/"));
        let mut input: &[u8] = b"GARBAGE\r\n\r\n";
        assert!(read_request_head(&mut input).await.is_err());
        let mut input: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(read_request_head(&mut input).await.is_err());
    }
}

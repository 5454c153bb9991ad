//! Plain HTTP/1.1 requests on loopback, through hyper's client: for the ops
//! listener (`/metrics`, `/live`, `/ready`), a Prometheus's query API and
//! chromedriver.

use std::net::SocketAddr;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// GET `path` (with its query string, already encoded) from `addr`: the
/// status code and the body as text; Err with what failed when the
/// connection or the exchange does (a listener not up yet, say).
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let (status, body) = exchange(addr, "GET", path, Bytes::new()).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends `method path` with `body` (JSON, when not empty) to `addr`; the
/// status code and the whole body.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("build {method} {path}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method} http://{addr}{path}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("read the body of http://{addr}{path}: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// `value` percent-encoded for a URL's query string.
pub fn query_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

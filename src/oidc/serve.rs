//! The two OIDC documents over HTTP(S), with the bounds every Herald HTTP
//! listener has (`crate::tls::https_server`).

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tokio::sync::watch;

/// Where the documents live.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// The JWKS path (`jwks_uri` in the discovery document).
pub const KEYS_PATH: &str = "/keys";

/// What the service answers from: the fixed discovery document, and the
/// JWKS as the bundle follower last published it.
#[derive(Debug, Clone)]
pub struct Documents {
    /// `/.well-known/openid-configuration`.
    pub discovery: Bytes,
    /// `/keys`; `None` until the agent first sent the bundle.
    pub jwks: watch::Receiver<Option<Bytes>>,
}

fn answer(status: StatusCode, body: Bytes, json: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let kind = if json {
        "application/json"
    } else {
        "text/plain"
    };
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    // Clients re-fetch on an unknown `kid`; a short cache keeps rotations quick.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("max-age=60"),
    );
    r
}

/// Answers one request.
pub fn respond(docs: &Documents, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"GET only\n"),
            false,
        );
    }
    match req.uri().path() {
        DISCOVERY_PATH => answer(StatusCode::OK, docs.discovery.clone(), true),
        KEYS_PATH => match docs.jwks.borrow().clone() {
            Some(jwks) => answer(StatusCode::OK, jwks, true),
            None => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"no JWT bundle from the agent yet\n"),
                false,
            ),
        },
        _ => answer(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found\n"),
            false,
        ),
    }
}

/// One answer, ready at once (nothing here waits).
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The hyper service over `docs`.
pub fn service(
    docs: Arc<Documents>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let _span = tracing::debug_span!("oidc_request", path = %req.uri().path()).entered();
        std::future::ready(Ok(respond(&docs, &req)))
    })
}

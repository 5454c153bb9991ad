//! The three endpoints over hyper: `/metrics`, `/live`, `/ready`, and the
//! dashboard's paths when one is served ([`super::dashboard`]). Only GET
//! (and HEAD, which hyper answers without the body); any other method gets
//! 405, any other path 404. Each connection carries one request
//! (`Connection: close`) within the listener's time limits; the
//! dashboard's event stream alone outlives them, within its own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::dashboard::Body;
use super::Served;
use crate::tls::https_server::{self, Limits, Transport};

/// What `/metrics` answers with: OpenMetrics text, which prometheus-client
/// encodes and Prometheus asks for first.
pub(super) const METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT: &str = "text/plain; charset=utf-8";

/// Scrapers and probes send one small request and read a small answer
/// (the dashboard's socket is held to the same).
pub(super) const LIMITS: Limits = Limits {
    connection_timeout: Duration::from_secs(30),
    header_read_timeout: Duration::from_secs(5),
    max_request_head: 16 * 1024,
    keep_alive: false,
    max_connections_per_peer: 16,
};

/// Serves until `stop` turns true.
pub(super) async fn run(listener: TcpListener, served: Arc<Served>, stop: watch::Receiver<bool>) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let served = served.clone();
        async move { Ok::<_, Infallible>(answer(&served, &req).await) }
    });
    https_server::serve(listener, Transport::Plain, LIMITS, service, stop).await;
}

async fn answer(served: &Arc<Served>, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let dashboard = served
        .dashboard
        .as_ref()
        .filter(|_| super::dashboard::serves(path));
    let known = dashboard.is_some() || matches!(path, "/metrics" | "/live" | "/ready");
    if let Some(refused) = refusal(req, known) {
        return refused;
    }
    tracing::debug!(path, "ops request");
    match dashboard {
        Some(dashboard) => dashboard.answer(req).await,
        None => probe(served, path).await.map(boxed),
    }
}

/// 404 for a path that is not `known`, 405 for a method other than GET
/// and HEAD; `None` for a request to answer.
pub(super) fn refusal<B>(req: &Request<B>, known: bool) -> Option<Response<Body>> {
    if !known {
        return Some(respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()).map(boxed));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Some(r.map(boxed));
    }
    None
}

fn boxed(body: Full<Bytes>) -> Body {
    body.boxed_unsync()
}

/// `/live`, `/ready` or `/metrics`.
async fn probe(served: &Arc<Served>, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/live" => respond(StatusCode::OK, TEXT, "live\n".into()),
        "/ready" => {
            let served = served.clone();
            // A role's check may read the store: off the async workers.
            match tokio::task::spawn_blocking(move || served.not_ready()).await {
                Ok(why) if why.is_empty() => respond(StatusCode::OK, TEXT, "ready\n".into()),
                Ok(why) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {}\n", why.join("; ")),
                ),
                Err(_) => internal_error(),
            }
        }
        _ => {
            let served = served.clone();
            let encoded = tokio::task::spawn_blocking(move || {
                let mut out = String::new();
                prometheus_client::encoding::text::encode(&mut out, &served.registry).map(|_| out)
            })
            .await;
            match encoded {
                Ok(Ok(text)) => respond(StatusCode::OK, METRICS_CONTENT_TYPE, text),
                _ => internal_error(),
            }
        }
    }
}

fn internal_error() -> Response<Full<Bytes>> {
    tracing::warn!("ops: answering failed");
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        TEXT,
        "internal error\n".into(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

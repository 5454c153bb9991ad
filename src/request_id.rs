//! One request id per gRPC call on the server's listeners (node and admin;
//! not the agent's Workload API, see `agent/workload_api.rs`): 128 random
//! bits as 32 hex characters, fresh for each call (never taken from the
//! caller, who could forge one).
//!
//! [`RequestIdLayer`] puts the id in the request's extensions (where the
//! server's audit log reads it), runs the call and the polling of its
//! response body inside a span `request` with a `request_id` field, and
//! returns the id to the caller in the `x-request-id` response header. With
//! `log_format = "json"` every log line emitted inside the call carries the
//! span, so one call's lines and its audit record share the id.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tracing::Instrument as _;

use crate::body_hook::Hooked;

/// The response header that tells the caller its call's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id (UUID v4 bits, as 32 hex characters).
    pub fn new() -> Self {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Gives every call a [`RequestId`] and a `request` span carrying it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = WithRequestId<S>;

    fn layer(&self, inner: S) -> WithRequestId<S> {
        WithRequestId { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct WithRequestId<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for WithRequestId<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = RequestId::new();
        // ERROR level: any filter that lets a line through keeps this span
        // too, so even a warning under `log_level = "warn"` has its id.
        let span = tracing::error_span!(
            "request",
            request_id = %id,
            method = req.uri().path()
        );
        let header = HeaderValue::from_str(id.as_str()).ok();
        req.extensions_mut().insert(id);
        let response = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let mut response = response.await?;
                if let Some(value) = header {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                // Polled inside the span, so that what a streaming response
                // logs while it runs carries the request id.
                let span = tracing::Span::current();
                Ok(response.map(|inner| Hooked::body(inner, span)))
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_characters_and_differ() {
        let (a, b) = (RequestId::new(), RequestId::new());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

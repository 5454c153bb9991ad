//! Counting gRPC calls by method and status code: one tower layer in front
//! of each gRPC server (node API, admin API, the Workload API socket with
//! Envoy SDS), outside every other layer so that refused calls count too.
//!
//! **When a call is counted.** Once, at the first of: response headers
//! carrying `grpc-status` (a trailers-only response: an error, or a call
//! refused before its handler), the first response message (code `OK`:
//! for a unary call the message means success; a stream is counted as it
//! opens and delivers), the trailers of a response without any message
//! (their `grpc-status`), or the response being dropped before any of
//! these (`Cancelled`: the client went away). A stream that fails after its
//! first message is therefore counted `OK`; its end shows in the logs.
//!
//! **Bounded labels.** The method label is taken from the request path only
//! when it names a method of the API (a fixed list checked against the
//! .proto files in a test); anything else is `unknown`. A caller cannot
//! make a new series by sending a new path.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use hyper::body::{Bytes, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::body::Body;

/// The labels of a request counter: `[(method_label, method), ("code", code)]`.
pub type GrpcLabels = [(&'static str, &'static str); 2];

/// The method label of a path that names no method of the API.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The name of a gRPC status code as the metrics label it (`OK`,
/// `PermissionDenied`, ...).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("Unknown")
}

/// One API a layer counts: the gRPC services (full names) it serves, the
/// methods they have, the label the method goes under (`method`, `rpc`)
/// and the counter.
#[derive(Clone, Debug)]
pub struct GrpcApi {
    services: &'static [&'static str],
    methods: &'static [&'static str],
    method_label: &'static str,
    counter: Family<GrpcLabels, Counter>,
}

impl GrpcApi {
    /// An API counted in `counter`.
    pub fn new(
        services: &'static [&'static str],
        methods: &'static [&'static str],
        method_label: &'static str,
        counter: Family<GrpcLabels, Counter>,
    ) -> Self {
        GrpcApi {
            services,
            methods,
            method_label,
            counter,
        }
    }
}

/// The layer; the first API also counts paths no API serves.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    apis: Arc<[GrpcApi]>,
}

impl GrpcMetricsLayer {
    /// Counts the calls of `apis` (at least one).
    pub fn new(apis: Vec<GrpcApi>) -> Self {
        GrpcMetricsLayer { apis: apis.into() }
    }

    /// Which counter and method label a request path goes to.
    fn classify(&self, path: &str) -> Option<Pending> {
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", ""));
        let (api, method) = match self.apis.iter().find(|a| a.services.contains(&service)) {
            Some(api) => {
                let known = api.methods.iter().find(|m| **m == method).copied();
                (api, known.unwrap_or(UNKNOWN_METHOD))
            }
            None => (self.apis.first()?, UNKNOWN_METHOD),
        };
        Some(Pending {
            counter: api.counter.clone(),
            labels: [(api.method_label, method), ("code", "")],
        })
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around a gRPC server.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

/// A call not counted yet: its counter and labels, the code still blank.
struct Pending {
    counter: Family<GrpcLabels, Counter>,
    labels: GrpcLabels,
}

impl Pending {
    fn count(mut self, code: &'static str) {
        self.labels[1].1 = code;
        self.counter.get_or_create(&self.labels).inc();
    }
}

fn header_code(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok().and_then(|v| v.parse::<i32>().ok());
    Some(code.map_or("Unknown", code_name))
}

impl<S> tower::Service<http::Request<Body>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let pending = self.layer.classify(req.uri().path());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let Some(pending) = pending else {
                return Ok(response);
            };
            if let Some(code) = header_code(response.headers()) {
                pending.count(code);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                Body::new(Counted {
                    inner,
                    pending: Some(pending),
                })
            }))
        })
    }
}

/// A response body that counts its call at its first message, its
/// trailers or its drop.
struct Counted {
    inner: Body,
    pending: Option<Pending>,
}

impl Counted {
    fn count(&mut self, code: &'static str) {
        if let Some(p) = self.pending.take() {
            p.count(code);
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if self.pending.is_some() {
            if let Poll::Ready(item) = &polled {
                let code = match item {
                    Some(Ok(frame)) => match frame.trailers_ref() {
                        Some(trailers) => header_code(trailers).unwrap_or("Unknown"),
                        None => "OK",
                    },
                    Some(Err(status)) => code_name(status.code() as i32),
                    None => "Unknown",
                };
                self.count(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count("Cancelled");
    }
}

/// The `rpc` names declared in a .proto file of this repository, in order:
/// what the method lists of the layers are checked against.
#[cfg(test)]
pub(crate) fn proto_methods(path: &str) -> Vec<String> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&file).expect("a proto file of this repository");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split(|c: char| c == '(' || c.is_whitespace()).next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &[&str] = &["pkg.Svc"];
    const METHODS: &[&str] = &["Get"];

    fn layer() -> (GrpcMetricsLayer, Family<GrpcLabels, Counter>) {
        let counter = Family::default();
        let api = GrpcApi::new(SERVICES, METHODS, "method", counter.clone());
        (GrpcMetricsLayer::new(vec![api]), counter)
    }

    #[test]
    fn codes_are_named_and_out_of_range_is_unknown() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(7), "PermissionDenied");
        assert_eq!(code_name(16), "Unauthenticated");
        assert_eq!(code_name(17), "Unknown");
        assert_eq!(code_name(-1), "Unknown");
    }

    #[test]
    fn only_known_methods_become_labels() {
        let (layer, counter) = layer();
        for path in [
            "/pkg.Svc/Get",
            "/pkg.Svc/spiffe://x/y",
            "/other.Svc/Get",
            "nonsense",
        ] {
            layer.classify(path).unwrap().count("OK");
        }
        assert_eq!(
            counter
                .get_or_create(&[("method", "Get"), ("code", "OK")])
                .get(),
            1
        );
        assert_eq!(
            counter
                .get_or_create(&[("method", UNKNOWN_METHOD), ("code", "OK")])
                .get(),
            3
        );
        let invented = [("method", "spiffe://x/y"), ("code", "OK")];
        assert!(counter.get(&invented).is_none());
    }

    #[tokio::test]
    async fn a_call_counts_once_at_its_first_message_or_at_its_drop() {
        use http_body_util::BodyExt as _;
        let (layer, counter) = layer();
        let stream = futures::stream::iter(vec![
            Ok::<_, tonic::Status>(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
        ]);
        let mut body = Counted {
            inner: Body::new(http_body_util::StreamBody::new(futures::StreamExt::map(
                stream,
                |r| r.map(Frame::data),
            ))),
            pending: layer.classify("/pkg.Svc/Get"),
        };
        let _ = body.frame().await;
        let _ = body.frame().await;
        drop(body);
        assert_eq!(
            counter
                .get_or_create(&[("method", "Get"), ("code", "OK")])
                .get(),
            1
        );

        drop(Counted {
            inner: Body::empty(),
            pending: layer.classify("/pkg.Svc/Get"),
        });
        let cancelled = [("method", "Get"), ("code", "Cancelled")];
        assert_eq!(counter.get_or_create(&cancelled).get(), 1);
    }
}

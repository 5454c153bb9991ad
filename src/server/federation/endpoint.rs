//! This server's bundle endpoint (SPIFFE.md §5.4): HTTPS, `GET /` answers
//! the trust domain's SPIFFE bundle JSON with `spiffe_sequence` and the
//! configured `spiffe_refresh_hint`; other paths get 404, other methods 405.
//! TLS 1.2 or 1.3, and no client authentication is ever asked for. The TLS
//! identity depends on the profile ([`identity`]).
//!
//! Served by hyper through [`crate::tls::https_server`], one request per
//! connection (`Connection: close`), each connection bounded in time and
//! size.

pub(crate) mod identity;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument as _;

use self::identity::{load_web_identity, reload_web_identity};
use super::{FederationError, TlsSetupError};
use crate::config::federation::{BundleEndpointConfig, EndpointProfile};
use crate::server::server_svid::{self, RenewOn, Resolver};
use crate::server::state::ServerState;
use crate::tls::https_server::{self, Limits, Transport};
use crate::tls::provider;

/// What one connection may take. The endpoint serves a few KiB to a peer
/// polling every few minutes: one request per connection is plenty. The
/// request body is never read, so its size costs nothing. `herald oidc`
/// serves documents as small, and takes the same limits.
pub(crate) fn limits(max_connections_per_peer: usize) -> Limits {
    Limits {
        connection_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(5),
        max_request_head: 16 * 1024,
        keep_alive: false,
        max_connections_per_peer,
    }
}

/// [`serve_bundle_endpoint_limited`] with the default connection budget
/// per peer (`[limits] bundle_endpoint_max_connections_per_peer`).
pub async fn serve_bundle_endpoint(
    state: Arc<ServerState>,
    config: BundleEndpointConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, FederationError> {
    let max =
        crate::config::limits::ListenerLimits::default().bundle_endpoint_max_connections_per_peer;
    serve_bundle_endpoint_limited(state, config, max, shutdown).await
}

/// Starts the bundle endpoint and returns the address it listens on; one
/// IP address may hold `max_connections_per_peer` connections. The
/// listener and the task keeping its certificate fresh stop when
/// `shutdown` turns true.
pub async fn serve_bundle_endpoint_limited(
    state: Arc<ServerState>,
    config: BundleEndpointConfig,
    max_connections_per_peer: usize,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, FederationError> {
    let (certified, profile_name) = match &config.profile {
        EndpointProfile::HttpsSpiffe => (
            server_svid::mint(&state)
                .map_err(FederationError::Tls)?
                .certified,
            "https_spiffe",
        ),
        EndpointProfile::HttpsWeb {
            cert_path,
            key_path,
        } => (load_web_identity(cert_path, key_path)?, "https_web"),
    };
    let resolver = Arc::new(Resolver::new(certified));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FederationError::Tls(TlsSetupError::Rustls(e)))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let bind_error = |source| FederationError::Bind {
        address: config.address,
        source,
    };
    let listener = TcpListener::bind(config.address)
        .await
        .map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let span = tracing::info_span!("bundle_endpoint", %address, profile = profile_name);
    match config.profile.clone() {
        EndpointProfile::HttpsSpiffe => {
            tokio::spawn(
                server_svid::keep_fresh(
                    state.clone(),
                    resolver,
                    RenewOn::CaChange,
                    |_| {},
                    shutdown.clone(),
                )
                .instrument(span.clone()),
            );
        }
        EndpointProfile::HttpsWeb {
            cert_path,
            key_path,
        } => {
            tokio::spawn(
                reload_web_identity(cert_path, key_path, resolver, shutdown.clone())
                    .instrument(span.clone()),
            );
        }
    }
    let refresh_hint_secs = config.refresh_hint_secs;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(&state, refresh_hint_secs, &request)) }
    });
    tokio::spawn(
        https_server::serve(
            listener,
            Transport::Tls(Arc::new(tls)),
            limits(max_connections_per_peer),
            service,
            shutdown,
        )
        .instrument(span.clone()),
    );
    span.in_scope(|| {
        tracing::info!(
            refresh_hint_secs = config.refresh_hint_secs,
            "bundle endpoint listening"
        )
    });
    Ok(address)
}

/// `GET /` is the bundle; other paths 404; other methods 405 (as SPIRE).
/// A query string does not change the resource.
fn respond(
    state: &ServerState,
    refresh_hint_secs: u64,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let span = tracing::info_span!(
        "bundle_endpoint.request",
        method = %request.method(),
        path = request.uri().path(),
        status = tracing::field::Empty
    );
    let _entered = span.enter();
    let response = if request.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET"));
        r
    } else if request.uri().path() != "/" {
        text(StatusCode::NOT_FOUND, "not found\n")
    } else {
        let mut bundle = state.authorities().bundle().clone();
        bundle.refresh_hint = Some(refresh_hint_secs);
        match bundle.to_spiffe_json() {
            Ok(json) => with_body(StatusCode::OK, "application/json", json.into_bytes()),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode this trust domain's bundle");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        }
    };
    span.record("status", response.status().as_u16());
    tracing::debug!("bundle endpoint request served");
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_body(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

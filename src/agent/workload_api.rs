//! The SPIFFE Workload API (SPIFFE.md §4), served on a Unix domain socket.
//!
//! The caller is identified out of band: the socket's SO_PEERCRED gives its
//! pid, uid and gid, which the [`UnixAttestor`] turns into selectors. The
//! responses come from the agent's [`Cache`]: each stream subscribes to it
//! and sends a full-state message whenever a new snapshot changes what the
//! caller receives. This layer validates and translates; it holds no CA
//! logic (JWT-SVIDs are minted through a [`JwtSvidSource`]).
//!
//! Status codes follow §4.1: InvalidArgument only for what the client must
//! fix (the security header, empty mandatory fields, a bad token to
//! validate), PermissionDenied `"no identity issued"` when the caller is
//! entitled to nothing, Unavailable for anything that may pass (cache not
//! synced yet, attestation failure, minting failure, shutdown).

mod responses;
mod stream;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::metadata::MetadataMap;
use tonic::transport::server::UdsConnectInfo;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use self::stream::ResponseStream;
use crate::agent::attestor::UnixAttestor;
use crate::agent::cache::{Cache, CacheSnapshot, JwtSvidSource};
use crate::proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use crate::proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use crate::spiffe::SpiffeId;
use crate::store::Selector;

/// The metadata every Workload API request must carry (SSRF hardening).
const SECURITY_HEADER: &str = "workload.spiffe.io";

/// How long a request waits for the agent's first sync before answering Unavailable.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the Workload API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadApiError {
    /// Something other than a socket sits where the socket should go.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The configured socket path.
        path: PathBuf,
    },
    /// The socket path could not be inspected.
    #[error("cannot inspect the socket path {path}: {source}")]
    Inspect {
        /// The configured socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket left by an earlier run could not be removed.
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        /// The configured socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Binding failed (missing directory, permissions, address in use).
    #[error("cannot bind the Workload API socket {path}: {source}")]
    Bind {
        /// The configured socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The socket could not be opened to workloads of every user.
    #[error("cannot set mode 0777 on the Workload API socket {path}: {source}")]
    Permissions {
        /// The configured socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the Workload API server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The Workload API endpoint of an agent.
#[derive(Clone)]
pub struct WorkloadApi {
    cache: Cache,
    jwt: Arc<dyn JwtSvidSource>,
    attestor: Arc<UnixAttestor>,
    ready_timeout: Duration,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi")
            .field("ready_timeout", &self.ready_timeout)
            .finish_non_exhaustive()
    }
}

// === impl WorkloadApi ===

impl WorkloadApi {
    /// A Workload API serving `cache`, minting JWT-SVIDs through `jwt` and
    /// identifying callers with `attestor`.
    pub fn new(cache: Cache, jwt: Arc<dyn JwtSvidSource>, attestor: Arc<UnixAttestor>) -> Self {
        WorkloadApi {
            cache,
            jwt,
            attestor,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// How long a request waits for the cache to become ready before
    /// answering Unavailable (default 5 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Binds the socket: removes a stale socket file (but nothing else),
    /// binds, and sets mode 0777 so workloads of any user can connect (the
    /// parent directory's permissions are the operator's business). Must be
    /// called inside a tokio runtime.
    pub fn bind(socket_path: &Path) -> Result<UnixListener, WorkloadApiError> {
        let path = || socket_path.to_owned();
        match std::fs::symlink_metadata(socket_path) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(socket_path).map_err(|source| {
                    WorkloadApiError::RemoveStale {
                        path: path(),
                        source,
                    }
                })?
            }
            Ok(_) => return Err(WorkloadApiError::NotASocket { path: path() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(WorkloadApiError::Inspect {
                    path: path(),
                    source,
                })
            }
        }
        let listener =
            UnixListener::bind(socket_path).map_err(|source| WorkloadApiError::Bind {
                path: path(),
                source,
            })?;
        std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o777)).map_err(
            |source| WorkloadApiError::Permissions {
                path: path(),
                source,
            },
        )?;
        Ok(listener)
    }

    /// Binds `socket_path` and serves until `shutdown` resolves; then ends
    /// every open stream, waits for connections to close and removes the
    /// socket file.
    pub async fn serve(
        self,
        socket_path: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkloadApiError> {
        let listener = Self::bind(socket_path)?;
        tracing::info!(socket = %socket_path.display(), "Workload API listening");
        let result = self.serve_listener(listener, shutdown).await;
        if let Err(e) = std::fs::remove_file(socket_path) {
            tracing::debug!(socket = %socket_path.display(), error = %e, "socket not removed");
        }
        result
    }

    /// Serves on an already bound listener (see [`WorkloadApi::bind`])
    /// until `shutdown` resolves. Open streams then end with Unavailable so
    /// that clients reconnect, and the server drains.
    pub async fn serve_listener(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkloadApiError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let handler = Handler {
            api: self,
            stop: stop_rx,
        };
        let signal = async move {
            shutdown.await;
            tracing::info!("Workload API shutting down");
            stop_tx.send_replace(true);
        };
        Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(handler))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal)
            .await?;
        Ok(())
    }
}

// === request plumbing ===

/// The kernel's view of the caller (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
struct Caller {
    pid: i32,
    uid: u32,
    gid: u32,
}

struct Handler {
    api: WorkloadApi,
    stop: watch::Receiver<bool>,
}

/// Checks that `workload.spiffe.io` appears exactly once, with value `true`.
fn check_security_header(metadata: &MetadataMap) -> Result<(), Status> {
    let mut values = metadata.get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        _ => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// Opens the request's span (carrying the caller's pid and uid), checks the
/// security header, and reads the caller's credentials.
fn begin<T>(request: &Request<T>, method: &'static str) -> (tracing::Span, Result<Caller, Status>) {
    let cred = request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred);
    let span = tracing::info_span!(
        "workload_api",
        method,
        pid = tracing::field::Empty,
        uid = tracing::field::Empty
    );
    if let Some(cred) = cred {
        span.record("uid", cred.uid());
        if let Some(pid) = cred.pid() {
            span.record("pid", pid);
        }
    }
    let caller = span.in_scope(|| {
        check_security_header(request.metadata()).inspect_err(|_| {
            tracing::debug!("request without the security header");
        })?;
        let cred = cred.ok_or_else(|| {
            tracing::warn!("connection without peer credentials");
            Status::unavailable("cannot identify the caller: no peer credentials")
        })?;
        let pid = cred.pid().ok_or_else(|| {
            tracing::warn!("peer credentials without a pid");
            Status::unavailable("cannot identify the caller: no peer pid")
        })?;
        Ok(Caller {
            pid,
            uid: cred.uid(),
            gid: cred.gid(),
        })
    });
    (span, caller)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// === impl Handler ===

impl Handler {
    /// The caller's selectors, attested on a blocking thread.
    async fn attest(&self, caller: Caller) -> Result<Vec<Selector>, Status> {
        let attestor = self.api.attestor.clone();
        let result = tokio::task::spawn_blocking(move || {
            attestor.attest(caller.pid, caller.uid, caller.gid)
        })
        .await;
        match result {
            Ok(Ok(selectors)) => {
                tracing::debug!(selectors = selectors.len(), "attested");
                Ok(selectors)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "workload attestation failed");
                Err(Status::unavailable("workload attestation failed"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "workload attestation task failed");
                Err(Status::unavailable("workload attestation failed"))
            }
        }
    }

    /// A receiver positioned at the first ready snapshot, and that snapshot;
    /// Unavailable if the cache is not ready within the timeout.
    async fn ready(
        &self,
    ) -> Result<(watch::Receiver<Arc<CacheSnapshot>>, Arc<CacheSnapshot>), Status> {
        let mut rx = self.api.cache.subscribe();
        let waited = tokio::time::timeout(self.api.ready_timeout, async {
            rx.wait_for(|s| s.ready).await.map(|snap| Arc::clone(&snap))
        })
        .await;
        let snap = match waited {
            Ok(Ok(snap)) => snap,
            Ok(Err(_)) => return Err(Status::unavailable("the identity cache was closed")),
            Err(_) => {
                tracing::debug!("cache not ready");
                return Err(Status::unavailable(
                    "the agent has not synced with its server yet",
                ));
            }
        };
        Ok((rx, snap))
    }

    /// The common body of the three streams: attest once, wait for the
    /// cache, build the first response (errors are the call's status), then
    /// follow the cache with the selectors fixed for the stream's life.
    async fn open_stream<R>(
        &self,
        span: tracing::Span,
        caller: Result<Caller, Status>,
        build: fn(&CacheSnapshot, &[Selector]) -> Result<R, Status>,
    ) -> Result<Response<ResponseStream<R>>, Status>
    where
        R: Clone + PartialEq + Send + 'static,
    {
        let stream_span = span.clone();
        async move {
            let selectors = self.attest(caller?).await?;
            let (rx, snap) = self.ready().await?;
            let first = build(&snap, &selectors).inspect_err(|s| {
                tracing::debug!(code = ?s.code(), message = s.message(), "refused");
            })?;
            Ok(Response::new(stream::watch_stream(
                first,
                rx,
                self.stop.clone(),
                move |snap: &CacheSnapshot| build(snap, &selectors),
                stream_span,
            )))
        }
        .instrument(span)
        .await
    }

    async fn fetch_jwt_svids(
        &self,
        caller: Result<Caller, Status>,
        req: JwtsvidRequest,
    ) -> Result<JwtsvidResponse, Status> {
        let caller = caller?;
        if req.audience.iter().all(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let wanted =
            match req.spiffe_id.as_str() {
                "" => None,
                s => Some(SpiffeId::parse(s).map_err(|e| {
                    Status::invalid_argument(format!("invalid spiffe_id {s:?}: {e}"))
                })?),
            };
        let selectors = self.attest(caller).await?;
        let (_, snap) = self.ready().await?;
        let mut ids = responses::entitled(&snap, &selectors)?;
        if let Some(wanted) = &wanted {
            ids.retain(|id| &id.spiffe_id == wanted);
            if ids.is_empty() {
                tracing::debug!(spiffe_id = %wanted.as_str(), "requested identity not entitled");
                return Err(Status::permission_denied(format!(
                    "{} for {}",
                    responses::NO_IDENTITY,
                    wanted.as_str()
                )));
            }
        }
        let mut svids = Vec::with_capacity(ids.len());
        for id in ids {
            let token = self
                .api
                .jwt
                .fetch_jwt_svid(&id.entry_id, &req.audience)
                .await
                .map_err(|s| {
                    tracing::warn!(entry_id = %id.entry_id, code = ?s.code(), message = s.message(), "JWT-SVID minting failed");
                    Status::unavailable(format!(
                        "could not mint a JWT-SVID for {}: {}",
                        id.spiffe_id.as_str(),
                        s.message()
                    ))
                })?;
            tracing::debug!(entry_id = %id.entry_id, spiffe_id = %id.spiffe_id.as_str(), "minted JWT-SVID");
            svids.push(Jwtsvid {
                spiffe_id: id.spiffe_id.as_str().to_owned(),
                svid: token,
                hint: id.hint.clone(),
            });
        }
        Ok(JwtsvidResponse { svids })
    }

    async fn validate(
        &self,
        caller: Result<Caller, Status>,
        req: ValidateJwtsvidRequest,
    ) -> Result<ValidateJwtsvidResponse, Status> {
        caller?;
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let (_, snap) = self.ready().await?;
        let claims = crate::ca::verify_jwt_svid(
            &req.svid,
            |td| responses::bundle_for(&snap, td),
            &req.audience,
            unix_now(),
        )
        .map_err(|e| {
            tracing::debug!(error = %e, "JWT-SVID rejected");
            Status::invalid_argument(e.to_string())
        })?;
        let foreign = claims.sub.trust_domain() != &snap.trust_domain;
        tracing::debug!(spiffe_id = %claims.sub.as_str(), "JWT-SVID valid");
        Ok(ValidateJwtsvidResponse {
            spiffe_id: claims.sub.as_str().to_owned(),
            claims: Some(responses::claims_struct(&claims, foreign)),
        })
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Handler {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;
    type FetchWITSVIDStream = ResponseStream<WitsvidResponse>;
    type FetchWITBundlesStream = ResponseStream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let (span, caller) = begin(&request, "FetchX509SVID");
        self.open_stream(span, caller, responses::x509_svid_response)
            .await
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let (span, caller) = begin(&request, "FetchX509Bundles");
        self.open_stream(span, caller, responses::x509_bundles_response)
            .await
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (span, caller) = begin(&request, "FetchJWTSVID");
        self.fetch_jwt_svids(caller, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let (span, caller) = begin(&request, "FetchJWTBundles");
        self.open_stream(span, caller, responses::jwt_bundles_response)
            .await
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let (span, caller) = begin(&request, "ValidateJWTSVID");
        self.validate(caller, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn fetch_witsvid(
        &self,
        request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        let (_span, caller) = begin(&request, "FetchWITSVID");
        caller?;
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }

    async fn fetch_wit_bundles(
        &self,
        request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        let (_span, caller) = begin(&request, "FetchWITBundles");
        caller?;
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_header_must_be_exactly_one_true() {
        let mut md = MetadataMap::new();
        assert!(check_security_header(&md).is_err());
        md.insert(SECURITY_HEADER, "True".parse().unwrap());
        assert!(check_security_header(&md).is_err());
        md.insert(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_security_header(&md).is_ok());
        md.append(SECURITY_HEADER, "true".parse().unwrap());
        let err = check_security_header(&md).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "security header missing from request");
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let first = WorkloadApi::bind(&path).unwrap();
        drop(first);
        let _second = WorkloadApi::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"x").unwrap();
        let err = WorkloadApi::bind(&file).unwrap_err();
        assert!(matches!(err, WorkloadApiError::NotASocket { .. }), "{err}");
        assert!(file.exists());
    }
}

//! Per-request plumbing of the Workload API: the security header, the
//! caller's credentials and span, attestation, waiting for the cache, and
//! the generated service trait, method by method.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::caller::{self, Caller};
use super::entitlements::Entitled;
use super::stream::{self, ResponseStream};
use super::{ready, responses, WorkloadApi};
use crate::agent::cache::CacheSnapshot;
use crate::proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use crate::proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use crate::registration::Selector;
use crate::spiffe::SpiffeId;

/// The metadata every Workload API request must carry (SSRF hardening).
const SECURITY_HEADER: &str = "workload.spiffe.io";

// === request plumbing ===

/// The service the generated server wraps; `stop` turns true at shutdown.
pub(super) struct Handler {
    pub(super) api: WorkloadApi,
    pub(super) stop: watch::Receiver<bool>,
}

/// Checks that `workload.spiffe.io` appears exactly once, with value `true`.
fn check_security_header(metadata: &MetadataMap) -> Result<(), Status> {
    let mut values = metadata.get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// Opens the request's span (carrying the caller's pid and uid), checks the
/// security header, and reads the caller's credentials.
fn begin<T>(request: &Request<T>, method: &'static str) -> (tracing::Span, Result<Caller, Status>) {
    let span = caller::call_span("workload_api", method);
    let caller = caller::identify(request, &span);
    let caller = span.in_scope(|| {
        check_security_header(request.metadata()).inspect_err(|_| {
            tracing::debug!("request without the security header");
        })?;
        caller
    });
    (span, caller)
}

/// Runs a unary method's body in its span and wraps its answer.
async fn unary<T>(
    span: tracing::Span,
    body: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    body.instrument(span).await.map(Response::new)
}

/// The answer to the WIT-SVID methods, once the request itself is checked.
fn wit_unsupported<T>(request: &Request<T>, method: &'static str) -> Status {
    let (_span, caller) = begin(request, method);
    match caller {
        Err(status) => status,
        Ok(_) => Status::unimplemented("the WIT-SVID profile is not supported"),
    }
}

// === impl Handler ===

impl Handler {
    /// The caller's selectors (see [`caller::attest`]).
    async fn attest(&self, caller: Caller) -> Result<Vec<Selector>, Status> {
        caller::attest(&self.api.attestor, caller).await
    }

    /// The cache once it can answer this caller (see [`ready::wait`]).
    async fn ready(
        &self,
        caller: Option<&[Selector]>,
    ) -> Result<(watch::Receiver<Arc<CacheSnapshot>>, Arc<CacheSnapshot>), Status> {
        ready::wait(&self.api.cache, self.api.options.ready_timeout, caller).await
    }

    /// The common body of the three streams: attest once, wait for the
    /// cache, build the first response from what the caller is entitled to
    /// (errors are the call's status), then follow the cache with the
    /// selectors fixed for the stream's life.
    async fn open_stream<T, R>(
        &self,
        request: &Request<T>,
        method: &'static str,
        build: fn(&Entitled, &CacheSnapshot) -> Result<R, Status>,
    ) -> Result<Response<ResponseStream<R>>, Status>
    where
        R: Clone + PartialEq + Send + 'static,
    {
        let (span, caller) = begin(request, method);
        let stream_span = span.clone();
        async move {
            let selectors = self.attest(caller?).await?;
            let (rx, snap) = self.ready(Some(&selectors)).await?;
            let memo = self.api.entitlements.clone();
            let respond =
                move |snap: &CacheSnapshot| build(&*memo.entitled(snap, &selectors)?, snap);
            let first = respond(&snap).inspect_err(|s| {
                tracing::debug!(code = ?s.code(), message = s.message(), "refused");
            })?;
            Ok(Response::new(stream::watch_stream(
                first,
                rx,
                self.stop.clone(),
                respond,
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
        let (_, snap) = self.ready(Some(&selectors)).await?;
        let mut ids = self
            .api
            .entitlements
            .entitled(&snap, &selectors)?
            .ids
            .clone();
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
        let (_, snap) = self.ready(None).await?;
        let claims = crate::ca::verify_jwt_svid_with_leeway(
            &req.svid,
            |td| responses::bundle_for(&snap, td),
            &req.audience,
            crate::clock::now_unix(),
            self.api.options.jwt_leeway_secs,
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
        let build = |e: &Entitled, snap: &CacheSnapshot| e.x509(snap);
        self.open_stream(&request, "FetchX509SVID", build).await
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let build =
            |e: &Entitled, snap: &CacheSnapshot| responses::x509_bundles_response_for(snap, &e.ids);
        self.open_stream(&request, "FetchX509Bundles", build).await
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (span, caller) = begin(&request, "FetchJWTSVID");
        unary(span, self.fetch_jwt_svids(caller, request.into_inner())).await
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let build =
            |e: &Entitled, snap: &CacheSnapshot| responses::jwt_bundles_response_for(snap, &e.ids);
        self.open_stream(&request, "FetchJWTBundles", build).await
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let (span, caller) = begin(&request, "ValidateJWTSVID");
        unary(span, self.validate(caller, request.into_inner())).await
    }

    async fn fetch_witsvid(
        &self,
        request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(wit_unsupported(&request, "FetchWITSVID"))
    }

    async fn fetch_wit_bundles(
        &self,
        request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(wit_unsupported(&request, "FetchWITBundles"))
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
}

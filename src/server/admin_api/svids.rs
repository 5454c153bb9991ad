//! The Svids service: X509-SVIDs over an operator's CSR, and JWT-SVIDs,
//! minted outside any registration entry (SPIRE's MintX509SVID and
//! MintJWTSVID, `shared/spec/SPIFFE.md` §8.4).

use crate::clock::now_unix;
use crate::server::metrics::SvidKind;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::store_status;
use super::ttl_or_default;
use crate::ca::{verify_csr, JwtSignError, SvidRequest, X509Error};
use crate::proto::admin::{self, svids_server::Svids};
use crate::proto::admin::{
    MintJwtsvidRequest, MintJwtsvidResponse, MintX509svidRequest, MintX509svidResponse,
};
use crate::server::authorities::AuthorityError;
use crate::server::state::ServerState;
use crate::server::validate::{check_wildcard_overlap, validate_dns_name, workload_id};
use crate::server::Rpc;

/// Serves the Svids service.
pub(super) struct SvidsApi {
    state: Arc<ServerState>,
}

impl SvidsApi {
    pub(super) fn new(state: Arc<ServerState>) -> Self {
        SvidsApi { state }
    }

    async fn mint_x509(&self, req: MintX509svidRequest) -> Result<MintX509svidResponse, Status> {
        let csr_error = |reason: String| Status::invalid_argument(format!("csr: {reason}"));
        let csr = verify_csr(&req.csr).map_err(|e| csr_error(e.to_string()))?;
        let [uri] = csr.uri_sans.as_slice() else {
            return Err(csr_error(format!(
                "must carry exactly one URI SAN, the SPIFFE ID to certify; it has {}",
                csr.uri_sans.len()
            )));
        };
        let id = workload_id(&self.state.trust_domain, "csr: URI SAN", uri)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::Span::current().record("spiffe_id", id.as_str());
        for name in &csr.dns_sans {
            validate_dns_name(name).map_err(|r| csr_error(format!("DNS SAN {r}")))?;
        }
        check_wildcard_overlap(&csr.dns_sans).map_err(|r| csr_error(format!("DNS SANs: {r}")))?;
        let ttl = ttl_or_default("ttl", req.ttl, self.state.settings.default_x509_svid_ttl)?;

        let authorities = self.state.authorities();
        let signer = authorities.clone();
        let spiffe_id = id.clone();
        let now = now_unix();
        let metrics = self.state.metrics.clone();
        let signed = self
            .state
            .with_store(move |store| {
                Ok(metrics.sign(SvidKind::X509, || {
                    signer.sign_x509_svid(
                        store,
                        &SvidRequest {
                            spiffe_id: &spiffe_id,
                            public_key_spki: &csr.public_key_spki,
                            ttl_secs: ttl,
                            dns_names: &csr.dns_sans,
                        },
                        None,
                        now,
                    )
                }))
            })
            .await
            .map_err(store_status)?
            .map_err(sign_status)?;
        tracing::info!(serial = %signed.serial, not_after = signed.not_after, "minted an X509-SVID");
        Ok(MintX509svidResponse {
            svid: Some(admin::X509svid {
                cert_chain: signed.chain,
                id: id.to_string(),
                expires_at: signed.not_after,
            }),
            bundle: authorities.bundle().x509_authorities.clone(),
        })
    }

    async fn mint_jwt(&self, req: MintJwtsvidRequest) -> Result<MintJwtsvidResponse, Status> {
        let id = workload_id(&self.state.trust_domain, "id", &req.id)?;
        if req.audience.is_empty() {
            return Err(Status::invalid_argument(
                "audience: must name at least one audience",
            ));
        }
        if let Some(i) = req.audience.iter().position(String::is_empty) {
            return Err(Status::invalid_argument(format!(
                "audience[{i}]: must not be empty"
            )));
        }
        let ttl = ttl_or_default("ttl", req.ttl, self.state.settings.default_jwt_svid_ttl)?;
        let authorities = self.state.authorities();
        let jwt = authorities.jwt();
        let now = now_unix();
        let token = self
            .state
            .metrics
            .sign(SvidKind::Jwt, || {
                jwt.sign_issued(
                    self.state.settings.jwt_issuer.as_deref(),
                    &id,
                    &req.audience,
                    ttl,
                    now,
                )
            })
            .map_err(|e| match e {
                JwtSignError::NoAudience
                | JwtSignError::BadTtl(_)
                | JwtSignError::NotALeafId(_) => Status::invalid_argument(e.to_string()),
                e => {
                    tracing::error!(error = %e, "JWT-SVID signing failed");
                    Status::internal(format!("cannot sign the JWT-SVID: {e}"))
                }
            })?;
        let expires_at = now.saturating_add(ttl).min(jwt.not_after());
        tracing::info!(expires_at, "minted a JWT-SVID");
        Ok(MintJwtsvidResponse {
            svid: Some(admin::Jwtsvid {
                token,
                id: id.to_string(),
                expires_at,
                issued_at: now,
            }),
        })
    }
}

/// A refusal the caller can fix is `InvalidArgument`; anything else is ours.
fn sign_status(e: AuthorityError) -> Status {
    match &e {
        AuthorityError::X509(
            X509Error::BadPublicKey(_)
            | X509Error::WrongTrustDomain { .. }
            | X509Error::NotALeafId(_),
        ) => Status::invalid_argument(format!("csr: {e}")),
        AuthorityError::Store(_) => {
            tracing::error!(error = %e, "cannot record the X509-SVID");
            Status::internal(format!("cannot record the X509-SVID: {e}"))
        }
        _ => {
            tracing::error!(error = %e, "X509-SVID signing failed");
            Status::internal(format!("cannot sign the X509-SVID: {e}"))
        }
    }
}

#[tonic::async_trait]
impl Svids for SvidsApi {
    #[tracing::instrument(name = "admin.MintX509SVID", skip_all, fields(
        spiffe_id = tracing::field::Empty, ttl = req.get_ref().ttl))]
    async fn mint_x509svid(&self, req: Request<MintX509svidRequest>) -> Rpc<MintX509svidResponse> {
        self.mint_x509(req.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(name = "admin.MintJWTSVID", skip_all, fields(
        spiffe_id = %req.get_ref().id, ttl = req.get_ref().ttl))]
    async fn mint_jwtsvid(&self, req: Request<MintJwtsvidRequest>) -> Rpc<MintJwtsvidResponse> {
        self.mint_jwt(req.into_inner()).await.map(Response::new)
    }
}

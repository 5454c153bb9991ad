//! `LocalAuthority`: show the X.509 and JWT authorities, and prepare,
//! activate, taint or revoke one by hand. Scheduled rotation does the same
//! steps on its own (`ca_manager.rs`); this is the operator's override.

use crate::clock::now_unix;
use crate::errors::Chain;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::admin::local_authority_server::LocalAuthority;
use crate::proto::admin::{
    AuthorityIdRequest, AuthorityInfo, AuthorityKindRequest, ShowAuthoritiesRequest as ShowReq,
    ShowAuthoritiesResponse as Shown, UpstreamCertificate,
};
use crate::server::authorities::{Authorities, AuthorityError};
use crate::server::cluster::lagging_agents;
use crate::server::state::ServerState;
use crate::server::Rpc;
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState};

/// The LocalAuthority service.
pub(super) struct AuthoritiesApi {
    state: Arc<ServerState>,
}

impl AuthoritiesApi {
    pub(super) fn new(state: Arc<ServerState>) -> Self {
        AuthoritiesApi { state }
    }

    /// Runs a transition on the blocking pool and swaps the result in.
    async fn change<F>(&self, f: F) -> Result<Arc<Authorities>, Status>
    where
        F: FnOnce(&ServerState, &Authorities) -> Result<Authorities, AuthorityError>
            + Send
            + 'static,
    {
        let state = self.state.clone();
        let current = self.state.authorities();
        let next = tokio::task::spawn_blocking(move || f(&state, &current))
            .await
            .map_err(|e| {
                tracing::error!(error = %Chain(&e), "authority task failed");
                Status::internal(format!("authority task failed: {e}"))
            })?
            .map_err(|e| match e {
                AuthorityError::NotAllowed(m) => Status::failed_precondition(m),
                AuthorityError::NotFound { .. } => Status::not_found(e.to_string()),
                AuthorityError::BundleContention { .. } => Status::aborted(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        self.state.set_authorities(next);
        Ok(self.state.authorities())
    }
}

fn parse_kind(kind: &str) -> Result<AuthorityKind, Status> {
    match kind {
        "x509" => Ok(AuthorityKind::X509),
        "jwt" => Ok(AuthorityKind::Jwt),
        other => Err(Status::invalid_argument(format!(
            "kind: {other:?} is not one of \"x509\", \"jwt\""
        ))),
    }
}

fn kind_name(k: AuthorityKind) -> &'static str {
    match k {
        AuthorityKind::X509 => "x509",
        AuthorityKind::Jwt => "jwt",
    }
}

fn state_name(s: AuthorityState) -> &'static str {
    match s {
        AuthorityState::Prepared => "prepared",
        AuthorityState::Active => "active",
        AuthorityState::Old => "old",
    }
}

fn info(r: &AuthorityRecord) -> AuthorityInfo {
    let key_id = match r.kind {
        AuthorityKind::X509 => r
            .cert_der
            .as_deref()
            .and_then(|c| crate::ca::x509::cert_facts(c).ok())
            .map(|f| f.serial)
            .unwrap_or_default(),
        AuthorityKind::Jwt => r.jwt_key_id.clone().unwrap_or_default(),
    };
    AuthorityInfo {
        id: r.id.clone(),
        kind: kind_name(r.kind).into(),
        state: state_name(r.state).into(),
        tainted: r.tainted,
        not_before: r.not_before,
        not_after: r.not_after,
        key_id,
        bundle_sequence: r.bundle_sequence,
    }
}

/// The active X.509 authority's intermediates, then the upstream's roots;
/// a certificate that does not parse is left out (it was checked when
/// loaded, so this does not happen).
fn upstream_certificates(a: &Authorities) -> Vec<UpstreamCertificate> {
    let intermediates = a.x509().upstream_chain().iter().map(|c| (c, false));
    let roots = a
        .settings()
        .upstream
        .as_ref()
        .map(|u| u.roots())
        .unwrap_or_default();
    intermediates
        .chain(roots.iter().map(|c| (c, true)))
        .filter_map(|(der, root)| {
            let f = crate::ca::x509::cert_facts(der).ok()?;
            Some(UpstreamCertificate {
                serial: f.serial,
                not_before: f.not_before,
                not_after: f.not_after,
                root,
            })
        })
        .collect()
}

fn records(a: &Authorities) -> Vec<AuthorityRecord> {
    a.x509_slots()
        .iter()
        .map(|s| s.record.clone())
        .chain(a.jwt_slots().iter().map(|s| s.record.clone()))
        .collect()
}

fn find(a: &Authorities, pred: impl Fn(&AuthorityRecord) -> bool) -> Result<AuthorityInfo, Status> {
    records(a)
        .iter()
        .find(|r| pred(r))
        .map(info)
        .ok_or_else(|| Status::internal("the changed authority is missing from the set"))
}

/// The kind and ID of a taint or revoke request, checked.
fn kind_and_id(req: Request<AuthorityIdRequest>) -> Result<(AuthorityKind, String), Status> {
    let req = req.into_inner();
    let kind = parse_kind(&req.kind)?;
    if req.id.is_empty() {
        return Err(Status::invalid_argument("id: must not be empty"));
    }
    Ok((kind, req.id))
}

#[tonic::async_trait]
impl LocalAuthority for AuthoritiesApi {
    #[tracing::instrument(name = "admin.ShowAuthorities", skip_all)]
    async fn show_authorities(&self, _req: Request<ShowReq>) -> Rpc<Shown> {
        let a = self.state.authorities();
        let seq = a.bundle().sequence;
        let settings = &self.state.settings;
        Ok(Response::new(Shown {
            authorities: records(&a).iter().map(info).collect(),
            bundle_sequence: seq,
            lagging_agents: lagging_agents(&self.state, seq).await,
            ca_ttl: a.settings().ca_ttl_secs,
            default_x509_svid_ttl: settings.default_x509_svid_ttl,
            default_jwt_svid_ttl: settings.default_jwt_svid_ttl,
            upstream_certificates: upstream_certificates(&a),
        }))
    }

    #[tracing::instrument(name = "admin.prepare_authority", skip_all, fields(
        kind = %req.get_ref().kind))]
    async fn prepare_authority(&self, req: Request<AuthorityKindRequest>) -> Rpc<AuthorityInfo> {
        let kind = parse_kind(&req.get_ref().kind)?;
        let a = self
            .change(move |st, cur| {
                cur.prepare(kind, st.store.as_ref(), st.keys.as_ref(), now_unix())
            })
            .await?;
        let prepared = find(&a, |r| {
            r.kind == kind && r.state == AuthorityState::Prepared
        })?;
        Ok(Response::new(prepared))
    }

    #[tracing::instrument(name = "admin.activate_authority", skip_all, fields(
        kind = %req.get_ref().kind))]
    async fn activate_authority(&self, req: Request<AuthorityKindRequest>) -> Rpc<AuthorityInfo> {
        let kind = parse_kind(&req.get_ref().kind)?;
        let prepared = self.state.authorities().prepared_sequence().unwrap_or(0);
        let lagging = lagging_agents(&self.state, prepared).await;
        if !lagging.is_empty() {
            tracing::warn!(lagging = %lagging.join(", "), "activating by hand although these agents have not acknowledged the new bundle");
        }
        let a = self
            .change(move |st, cur| cur.activate(kind, st.store.as_ref()))
            .await?;
        let active = find(&a, |r| r.kind == kind && r.state == AuthorityState::Active)?;
        Ok(Response::new(active))
    }

    #[tracing::instrument(name = "admin.taint_authority", skip_all, fields(
        kind = %req.get_ref().kind, id = %req.get_ref().id))]
    async fn taint_authority(&self, req: Request<AuthorityIdRequest>) -> Rpc<AuthorityInfo> {
        let (kind, id) = kind_and_id(req)?;
        let wanted = id.clone();
        let a = self
            .change(move |st, cur| cur.taint(kind, &id, st.store.as_ref()))
            .await?;
        Ok(Response::new(find(&a, |r| r.id == wanted)?))
    }

    #[tracing::instrument(name = "admin.revoke_authority", skip_all, fields(
        kind = %req.get_ref().kind, id = %req.get_ref().id))]
    async fn revoke_authority(&self, req: Request<AuthorityIdRequest>) -> Rpc<AuthorityInfo> {
        let (kind, id) = kind_and_id(req)?;
        let before = self.state.authorities();
        let revoked = records(&before)
            .iter()
            .find(|r| r.id == id && r.kind == kind)
            .map(info)
            .ok_or_else(|| {
                Status::not_found(format!("no {} authority with id {id:?}", kind_name(kind)))
            })?;
        // Agents acknowledge a bundle only after re-issuing what a tainted
        // authority signed; anyone behind the current bundle may still
        // depend on it.
        let lagging = lagging_agents(&self.state, before.bundle().sequence).await;
        self.change(move |st, cur| {
            cur.revoke(kind, &id, &lagging, st.store.as_ref(), st.keys.as_ref())
        })
        .await?;
        Ok(Response::new(revoked))
    }
}

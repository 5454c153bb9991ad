//! Workload SVIDs an agent asks for on behalf of its workloads: X509-SVIDs
//! over CSRs in batches, and JWT-SVIDs, each only for an entry the agent is
//! authorized for.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Status;

use super::{internal, NodeApi};
use crate::ca::{verify_csr, SvidRequest};
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::proto::node;
use crate::registration::RegistrationEntry;
use crate::server::authorities::Authorities;
use crate::spiffe::SpiffeId;
use crate::store::IssuanceRecord;

/// What one batch signs with: the same for every item.
struct Signer {
    authorities: Arc<Authorities>,
    authorized: Arc<BTreeMap<String, RegistrationEntry>>,
    agent: SpiffeId,
    default_ttl: i64,
    now: i64,
}

impl NodeApi {
    pub(super) async fn sign_x509_batch(
        &self,
        agent: &SpiffeId,
        params: Vec<node::NewX509svidParams>,
    ) -> Result<node::BatchNewX509svidResponse, Status> {
        let signer = Arc::new(Signer {
            authorities: self.state.authorities(),
            authorized: self.authorized_cached(agent).await?,
            agent: agent.clone(),
            default_ttl: self.state.settings.default_x509_svid_ttl,
            now: now_unix(),
        });
        // Verify and sign on the blocking pool, one chunk per core: it is
        // pure CPU, and one agent's batch should use the whole machine.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let total = params.len();
        let chunk_len = total.div_ceil(cores).max(1);
        let mut tasks = Vec::new();
        let mut rest = params;
        while !rest.is_empty() {
            let tail = rest.split_off(chunk_len.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let signer = signer.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                chunk.iter().map(|p| signer.sign(p)).collect::<Vec<_>>()
            }));
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(total);
        for task in tasks {
            let signed = task.await.map_err(|e| {
                tracing::error!(error = %Chain(&e), "signing task failed");
                Status::internal(format!("signing task failed: {e}"))
            })?;
            for (result, record) in signed {
                results.push(result);
                records.extend(record);
            }
        }
        // One durable write for the whole batch, before any SVID leaves.
        if !records.is_empty() {
            self.state
                .with_store(move |s| s.append_issuances(&records))
                .await
                .map_err(internal)?;
        }
        Ok(node::BatchNewX509svidResponse { results })
    }

    pub(super) async fn sign_jwt(
        &self,
        agent: &SpiffeId,
        req: node::NewJwtsvidRequest,
    ) -> Result<node::NewJwtsvidResponse, Status> {
        if req.audience.iter().all(|a| a.is_empty()) {
            return Err(Status::invalid_argument(
                "audience: must name at least one audience",
            ));
        }
        let authorized = self.authorized_cached(agent).await?;
        let entry = authorized
            .get(&req.entry_id)
            .ok_or_else(|| not_authorized(&req.entry_id))?;
        let ttl = entry_ttl(entry.jwt_svid_ttl, self.state.settings.default_jwt_svid_ttl);
        let now = now_unix();
        let authorities = self.state.authorities();
        let token = authorities
            .jwt()
            .sign(&entry.spiffe_id, &req.audience, ttl, now)
            .map_err(|e| {
                tracing::error!(error = %Chain(&e), "signing the JWT-SVID failed");
                Status::internal(format!("signing the JWT-SVID failed: {e}"))
            })?;
        Ok(node::NewJwtsvidResponse {
            token,
            expires_at: (now + ttl).min(authorities.jwt().not_after()),
        })
    }
}

impl Signer {
    /// Signs one CSR of a batch; a refusal is that item's result only.
    fn sign(&self, p: &node::NewX509svidParams) -> (node::X509svidResult, Option<IssuanceRecord>) {
        let fail = |status: Status| {
            let result = node::X509svidResult {
                entry_id: p.entry_id.clone(),
                code: status.code() as i32,
                message: status.message().to_string(),
                ..Default::default()
            };
            (result, None)
        };
        let Some(entry) = self.authorized.get(&p.entry_id) else {
            return fail(not_authorized(&p.entry_id));
        };
        let csr = match verify_csr(&p.csr) {
            Ok(c) => c,
            Err(e) => return fail(Status::invalid_argument(format!("csr: {e}"))),
        };
        let req = SvidRequest {
            spiffe_id: &entry.spiffe_id,
            public_key_spki: &csr.public_key_spki,
            ttl_secs: entry_ttl(entry.x509_svid_ttl, self.default_ttl),
            dns_names: &entry.dns_names,
        };
        match self.authorities.x509().sign_svid(&req, self.now) {
            Ok(cert) => {
                let record = IssuanceRecord {
                    serial: cert.serial.clone(),
                    spiffe_id: entry.spiffe_id.clone(),
                    agent_id: Some(self.agent.clone()),
                    entry_id: Some(entry.id.clone()),
                    not_after: cert.not_after,
                    issued_at: self.now,
                };
                let result = node::X509svidResult {
                    entry_id: entry.id.clone(),
                    cert_chain: cert.chain,
                    expires_at: cert.not_after,
                    code: 0,
                    message: String::new(),
                };
                (result, Some(record))
            }
            Err(e) => fail(Status::internal(format!("signing failed: {e}"))),
        }
    }
}

/// An entry's SVID lifetime: its own, or the server's default when 0.
fn entry_ttl(ttl: u32, default: i64) -> i64 {
    match ttl {
        0 => default,
        ttl => i64::from(ttl),
    }
}

fn not_authorized(entry_id: &str) -> Status {
    Status::permission_denied(format!(
        "entry {entry_id:?} is not authorized for this agent"
    ))
}

//! Workload SVIDs an agent asks for on behalf of its workloads: X509-SVIDs
//! over CSRs in batches, and JWT-SVIDs, each only for an entry the agent is
//! authorized for by the store's current records (see
//! [`signable_entries`]): never by the set its Sync stream last computed,
//! which trails the store for as long as the agent reads slowly.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Status;

use super::{internal, signing_failed, NodeApi};
use crate::ca::serial::SerialBlock;
use crate::ca::{verify_csr, SvidRequest};
use crate::clock::now_unix;
use crate::proto::node;
use crate::registration::RegistrationEntry;
use crate::server::authorities::Authorities;
use crate::server::authorized::signable_entries;
use crate::server::metrics::{ServerMetrics, SvidKind};
use crate::server::run::PeerSvid;
use crate::spiffe::SpiffeId;
use crate::store::IssuanceRecord;

/// Fewer CSRs than this per chunk are not worth a trip to another thread.
const MIN_CHUNK: usize = 8;

/// What one batch signs with: the same for every item.
struct Signer {
    authorities: Arc<Authorities>,
    metrics: ServerMetrics,
    authorized: BTreeMap<String, RegistrationEntry>,
    agent: SpiffeId,
    default_ttl: i64,
    now: i64,
}

impl NodeApi {
    /// Signs a batch of CSRs for the agent that presented `peer`, once it
    /// is authenticated.
    pub(super) async fn sign_x509_batch(
        &self,
        peer: PeerSvid,
        params: Vec<node::NewX509svidParams>,
    ) -> Result<node::BatchNewX509svidResponse, Status> {
        let now = now_unix();
        let ids: Vec<String> = params.iter().map(|p| p.entry_id.clone()).collect();
        let chunk_len = params.len().div_ceil(cores()).max(MIN_CHUNK);
        if params.len() <= chunk_len {
            return self.sign_x509_small(peer, ids, params, now).await;
        }
        let agent = peer.id.clone();
        let authorized = self
            .as_agent(peer, move |store, a| {
                signable_entries(store, &a.spiffe_id, &ids, now).map_err(internal)
            })
            .await?;
        let signer = Arc::new(Signer {
            authorities: self.state.authorities(),
            metrics: self.state.metrics.clone(),
            authorized,
            agent: agent.clone(),
            default_ttl: self.state.settings.default_x509_svid_ttl,
            now,
        });
        // Verify and sign on the blocking pool, one chunk per core: it is
        // pure CPU, and one agent's batch should use the whole machine.
        let total = params.len();
        let mut tasks = Vec::new();
        let mut rest = params;
        while !rest.is_empty() {
            let tail = rest.split_off(chunk_len.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let signer = signer.clone();
            tasks.push(tokio::task::spawn_blocking(move || signer.sign_all(&chunk)));
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(total);
        for task in tasks {
            let (signed, recorded) = task
                .await
                .map_err(signing_failed("a batch of X509-SVIDs"))?;
            results.extend(signed);
            records.extend(recorded);
        }
        // One durable write for the whole batch, before any SVID leaves.
        self.record_issuances(records).await?;
        if total >= crate::server::memory::BURST_SVIDS {
            crate::server::memory::after_burst();
        }
        Ok(node::BatchNewX509svidResponse { results })
    }

    /// A batch too small to split (one CSR, as an agent renewing one
    /// identity sends): authorization, signing and the durable issuance
    /// write in one trip to the blocking pool instead of three, each trip
    /// costing a thread wake-up, about a tenth of the signing itself.
    async fn sign_x509_small(
        &self,
        peer: PeerSvid,
        ids: Vec<String>,
        params: Vec<node::NewX509svidParams>,
        now: i64,
    ) -> Result<node::BatchNewX509svidResponse, Status> {
        let authorities = self.state.authorities();
        let metrics = self.state.metrics.clone();
        let default_ttl = self.state.settings.default_x509_svid_ttl;
        let span = tracing::Span::current();
        let results = self
            .as_agent(peer, move |store, agent| {
                let _span = span.enter();
                let signer = Signer {
                    authorized: signable_entries(store, &agent.spiffe_id, &ids, now)
                        .map_err(internal)?,
                    authorities,
                    metrics,
                    agent: agent.spiffe_id,
                    default_ttl,
                    now,
                };
                let (results, records) = signer.sign_all(&params);
                // Durable before any SVID leaves (see `record_issuances`).
                if !records.is_empty() {
                    store.append_issuances(&records).map_err(internal)?;
                }
                Ok(results)
            })
            .await?;
        Ok(node::BatchNewX509svidResponse { results })
    }

    pub(super) async fn sign_jwt(
        &self,
        peer: PeerSvid,
        req: node::NewJwtsvidRequest,
    ) -> Result<node::NewJwtsvidResponse, Status> {
        let now = now_unix();
        let ids = vec![req.entry_id.clone()];
        // The caller is authenticated before anything of its request is
        // judged, as on every other signing path.
        let authorized = self
            .as_agent(peer, move |store, agent| {
                signable_entries(store, &agent.spiffe_id, &ids, now).map_err(internal)
            })
            .await?;
        if req.audience.iter().all(|a| a.is_empty()) {
            return Err(Status::invalid_argument(
                "audience: must name at least one audience",
            ));
        }
        let entry = authorized
            .get(&req.entry_id)
            .ok_or_else(|| not_authorized(&req.entry_id))?;
        let ttl = entry_ttl(entry.jwt_svid_ttl, self.state.settings.default_jwt_svid_ttl);
        let authorities = self.state.authorities();
        let token = self
            .state
            .metrics
            .sign(SvidKind::Jwt, || {
                authorities.jwt().sign_issued(
                    self.state.settings.jwt_issuer.as_deref(),
                    &entry.spiffe_id,
                    &req.audience,
                    ttl,
                    now,
                )
            })
            .map_err(signing_failed("the JWT-SVID"))?;
        Ok(node::NewJwtsvidResponse {
            token,
            expires_at: (now + ttl).min(authorities.jwt().not_after()),
        })
    }
}

impl Signer {
    /// Signs every CSR of `params`: the results in order, and the
    /// issuance records of those signed.
    fn sign_all(
        &self,
        params: &[node::NewX509svidParams],
    ) -> (Vec<node::X509svidResult>, Vec<IssuanceRecord>) {
        let mut results = Vec::with_capacity(params.len());
        let mut records = Vec::with_capacity(params.len());
        // Serials in blocks: the issuance log stores each block's records
        // as one group (one write per 16 SVIDs instead of one each).
        let mut serials = SerialBlock::new();
        for p in params {
            let (result, record) = self.sign(p, &mut serials);
            results.push(result);
            records.extend(record);
        }
        (results, records)
    }

    /// Signs one CSR of a batch; a refusal is that item's result only.
    fn sign(
        &self,
        p: &node::NewX509svidParams,
        serials: &mut SerialBlock,
    ) -> (node::X509svidResult, Option<IssuanceRecord>) {
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
        let signed = self.metrics.sign(SvidKind::X509, || {
            self.authorities
                .x509()
                .sign_svid_in(&req, self.now, serials)
        });
        match signed {
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

/// The cores to spread a batch over, read once: `available_parallelism`
/// reads the cgroup files on every call (about as long as signing a
/// one-CSR batch).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use crate::proto::node;
    use crate::server::node_api::tests::{csr, entry, id, server, AGENT};
    use crate::server::state::{ServerEvent, ServerState};

    /// Waits until the agent's stream has taken in `n` entries.
    async fn cached_len_reaches(state: &ServerState, n: usize) {
        let agent = id(AGENT);
        for _ in 0..500 {
            if state.authorized_for(&agent).is_some_and(|a| a.len() == n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the Sync stream never took in {n} entries");
    }

    /// An agent that stops reading its Sync stream freezes the set the
    /// stream computed; an entry deleted after that is still refused.
    #[tokio::test]
    async fn a_stalled_sync_stream_does_not_keep_a_deleted_entry_signable() {
        let server = server();
        let (state, api) = (&server.state, &server.api);
        let agent = server.attested_agent().await;
        state.store.create_entry(entry(0, AGENT)).unwrap();

        // Opened and never read: once its channel is full the stream
        // stops taking in changes.
        let _rx = api.open_sync(id(AGENT), Default::default()).await.unwrap();
        let mut n = 1;
        let stalled = loop {
            state.store.create_entry(entry(n, AGENT)).unwrap();
            state.publish(ServerEvent::EntriesChanged);
            n += 1;
            let agent = id(AGENT);
            let mut took_it = false;
            for _ in 0..100 {
                if state.authorized_for(&agent).is_some_and(|a| a.len() == n) {
                    took_it = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !took_it {
                break n - 1;
            }
            assert!(n < 100, "the Sync stream never stalled");
        };
        cached_len_reaches(state, stalled).await;
        state
            .store
            .delete_entries(&["entry-00000".to_string()])
            .unwrap();
        state.publish(ServerEvent::EntriesChanged);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cached = state.authorized_for(&id(AGENT)).unwrap();
        assert!(cached.contains_key("entry-00000"), "the stream is stalled");

        let csr = csr();
        let params = vec![
            node::NewX509svidParams {
                entry_id: "entry-00000".into(),
                csr: csr.clone(),
            },
            node::NewX509svidParams {
                entry_id: "entry-00001".into(),
                csr,
            },
        ];
        let response = api.sign_x509_batch(agent.clone(), params).await.unwrap();
        let codes: Vec<_> = response.results.iter().map(|r| r.code).collect();
        assert_eq!(codes, [Code::PermissionDenied as i32, Code::Ok as i32]);
        let jwt = node::NewJwtsvidRequest {
            entry_id: "entry-00000".into(),
            audience: vec!["db".into()],
        };
        let refused = api.sign_jwt(agent, jwt).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
}

//! The agent's manager: keeps a Sync stream open to the server, applies the
//! pushed entries and bundles, gets an X509-SVID for every authorized entry
//! (the key is made here and only a CSR leaves the node), renews each SVID at
//! half its life (with jitter, so thousands of SVIDs issued together do not
//! renew together), renews the agent's own SVID, and publishes every new
//! state to the [`Cache`].
//!
//! When the server is unreachable the cache keeps serving what it holds until
//! each SVID expires, and the manager reconnects with exponential backoff.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::rand::SecureRandom as _;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::cache::{Cache, CacheSnapshot, WorkloadIdentity};
use crate::ca::{KeyPair, KeyType};
use crate::clock::now_unix;
use crate::node::wire::{bundle_from_wire, entry_from_wire, AgentEntry};
use crate::node::{make_csr, AgentCredential, CredentialStore, CsrBuildError, ServerConnector};
use crate::proto::node::{self, node_client::NodeClient as Grpc};
use crate::spiffe::{Bundle, TrustDomain};

/// CSRs per BatchNewX509SVID call.
const SIGN_BATCH: usize = 500;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The client shared with the JWT source (None while disconnected).
pub type SharedClient = Arc<RwLock<Option<Grpc<Channel>>>>;

/// An authorized entry as the agent keeps it between issuances: validated
/// when it arrives, then held in its compact wire encoding (without the
/// fields the agent never reads), about a third of the parsed form's size,
/// and parsed again only when an SVID is issued for it. At 100,000 entries
/// that is the difference between ~70 MiB and ~25 MiB.
struct StoredEntry {
    revision: i64,
    wire: Box<[u8]>,
}

impl StoredEntry {
    /// Validates `e` and keeps what the agent needs; returns its ID too.
    fn new(mut e: node::Entry) -> Result<(String, StoredEntry), SessionError> {
        let id = std::mem::take(&mut e.id);
        e.parent_id.clear();
        e.dns_names.clear();
        let wire = prost::Message::encode_to_vec(&e).into_boxed_slice();
        let parsed = entry_from_wire(e).map_err(|err| SessionError::Local(err.to_string()))?;
        Ok((
            id,
            StoredEntry {
                revision: parsed.revision,
                wire,
            },
        ))
    }

    fn parse(&self, id: &str) -> Result<AgentEntry, SessionError> {
        let mut e: node::Entry = prost::Message::decode(&self.wire[..])
            .map_err(|err| SessionError::Local(format!("stored entry {id}: {err}")))?;
        e.id = id.to_string();
        entry_from_wire(e).map_err(|err| SessionError::Local(err.to_string()))
    }
}

struct Held {
    identity: Arc<WorkloadIdentity>,
    revision: i64,
    renew_at: i64,
    /// The signing CA's key identifier (the leaf's AKI), to spot SVIDs
    /// signed by a tainted authority.
    issuer_key_id: Option<Vec<u8>>,
}

/// Why a session with the server ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Connect(#[from] crate::node::NodeClientError),
    #[error(transparent)]
    Csr(#[from] CsrBuildError),
    #[error("server: {0}")]
    Status(#[from] tonic::Status),
    #[error("the server closed the sync stream")]
    StreamEnded,
    #[error("{0}")]
    Local(String),
}

enum SessionEnd {
    Shutdown,
    Reconnect,
}

/// The manager task's state.
pub struct Manager {
    connector: ServerConnector,
    store: CredentialStore,
    cache: Cache,
    trust_domain: TrustDomain,
    cred: AgentCredential,
    bundle: Bundle,
    entries: BTreeMap<String, StoredEntry>,
    pending_snapshot: Option<BTreeMap<String, StoredEntry>>,
    held: BTreeMap<String, Held>,
    client: SharedClient,
    synced_once: bool,
    /// Key identifiers of tainted X.509 authorities.
    tainted_x509: HashSet<Vec<u8>>,
    tainted_jwt: Vec<String>,
    /// Bumped when the tainted JWT keys change: the JWT cache drops its tokens.
    jwt_epoch: Arc<AtomicU64>,
    /// The bundle sequence acknowledged to the server on this connection.
    acked: u64,
    /// Bundles of federated trust domains, as last pushed by the server.
    federated: BTreeMap<TrustDomain, Arc<Bundle>>,
}

impl Manager {
    /// A manager for an attested agent.
    pub fn new(
        connector: ServerConnector,
        store: CredentialStore,
        cache: Cache,
        cred: AgentCredential,
        bundle: Bundle,
        client: SharedClient,
        jwt_epoch: Arc<AtomicU64>,
    ) -> Self {
        Manager {
            trust_domain: bundle.trust_domain.clone(),
            connector,
            store,
            cache,
            cred,
            bundle,
            entries: BTreeMap::new(),
            pending_snapshot: None,
            held: BTreeMap::new(),
            client,
            synced_once: false,
            tainted_x509: HashSet::new(),
            tainted_jwt: Vec::new(),
            jwt_epoch,
            acked: 0,
            federated: BTreeMap::new(),
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.session(&mut shutdown).await {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::Reconnect) => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Err(e) => {
                    if let SessionError::Status(s) = &e {
                        if s.code() == tonic::Code::PermissionDenied {
                            tracing::error!(agent = %self.cred.spiffe_id, error = %s.message(), "the server refused this agent");
                        } else {
                            tracing::warn!(error = %e, retry_in = ?backoff, "lost the server; serving cached SVIDs");
                        }
                    } else {
                        tracing::warn!(error = %e, retry_in = ?backoff, "lost the server; serving cached SVIDs");
                    }
                }
            }
            *self.client.write().unwrap_or_else(|p| p.into_inner()) = None;
            self.prune_expired();
            let sleep = backoff + jitter(backoff / 4);
            tokio::select! {
                _ = crate::shutdown::stopped(&mut shutdown) => return,
                _ = tokio::time::sleep(sleep) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SessionError> {
        let mut client = self.connector.authenticated(&self.cred).await?;
        let mut stream = client.sync(node::SyncRequest {}).await?.into_inner();
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        // A new connection starts unacknowledged on the server's side.
        self.acked = 0;
        tracing::info!(agent = %self.cred.spiffe_id, "connected to the server");
        loop {
            let wake = self.next_wake();
            let sleep = Duration::from_secs(u64::try_from(wake - now_unix()).unwrap_or(0));
            tokio::select! {
                _ = crate::shutdown::stopped(shutdown) => return Ok(SessionEnd::Shutdown),
                _ = tokio::time::sleep(sleep) => {
                    if self.agent_svid_due() {
                        self.renew_agent(&mut client).await?;
                        return Ok(SessionEnd::Reconnect);
                    }
                    self.reconcile(&mut client).await?;
                }
                msg = stream.message() => match msg? {
                    Some(update) => {
                        if self.apply(update)? {
                            self.reconcile(&mut client).await?;
                        }
                    }
                    None => return Err(SessionError::StreamEnded),
                },
            }
            self.ack(&mut client).await?;
        }
    }

    /// Tells the server which bundle the agent now serves, once it is
    /// published to workloads and tainted SVIDs are re-issued.
    async fn ack(&mut self, client: &mut Grpc<Channel>) -> Result<(), SessionError> {
        if !self.synced_once || self.bundle.sequence <= self.acked {
            return Ok(());
        }
        let sequence = self.bundle.sequence;
        client
            .ack_bundle(node::AckBundleRequest { sequence })
            .await?;
        self.acked = sequence;
        tracing::debug!(sequence, "bundle acknowledged");
        Ok(())
    }

    /// Applies one Sync message; true when the entry set or bundle changed
    /// in a way that calls for reconciliation now.
    fn apply(&mut self, update: node::SyncUpdate) -> Result<bool, SessionError> {
        let mut changed = false;
        if let Some(mut b) = update.bundle {
            let tainted_certs = std::mem::take(&mut b.tainted_x509_authorities);
            let tainted_jwt = std::mem::take(&mut b.tainted_jwt_key_ids);
            let bundle = bundle_from_wire(b).map_err(|e| SessionError::Local(e.to_string()))?;
            if bundle.trust_domain == self.trust_domain {
                changed |= self.apply_taints(&tainted_certs, tainted_jwt);
            }
            if bundle.trust_domain != self.trust_domain {
                // An invalid update never replaces a good bundle.
                tracing::error!(got = %bundle.trust_domain, "server sent a bundle of another trust domain; ignored");
            } else if bundle.sequence >= self.bundle.sequence || bundle != self.bundle {
                self.connector.roots().set(bundle.x509_authorities.clone());
                if let Err(e) = self.store.save_bundle(&bundle) {
                    tracing::warn!(error = %e, "could not save the bundle");
                }
                tracing::info!(sequence = bundle.sequence, "trust bundle updated");
                self.bundle = bundle;
                changed = true;
            }
        }
        if update.federated_bundles_changed {
            changed |= self.apply_federated(update.federated_bundles);
        }
        if update.snapshot {
            let pending = self.pending_snapshot.get_or_insert_with(BTreeMap::new);
            for e in update.upserted {
                let (id, e) = StoredEntry::new(e)?;
                pending.insert(id, e);
            }
            if update.complete {
                self.entries = self.pending_snapshot.take().unwrap_or_default();
                self.synced_once = true;
                tracing::debug!(entries = self.entries.len(), "snapshot applied");
                return Ok(true);
            }
            return Ok(changed);
        }
        for e in update.upserted {
            let (id, e) = StoredEntry::new(e)?;
            self.entries.insert(id, e);
            changed = true;
        }
        for id in update.removed {
            self.entries.remove(&id);
            changed = true;
        }
        Ok(changed && self.synced_once)
    }

    /// Replaces the federated bundles; true when they changed. A malformed
    /// bundle, or one claiming our own trust domain, is dropped and logged.
    fn apply_federated(&mut self, bundles: Vec<node::Bundle>) -> bool {
        let mut next = BTreeMap::new();
        for b in bundles {
            match bundle_from_wire(b) {
                Ok(b) if b.trust_domain != self.trust_domain => {
                    next.insert(b.trust_domain.clone(), Arc::new(b));
                }
                Ok(_) => tracing::error!(
                    "server sent our own trust domain as a federated bundle; ignored"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "server sent a malformed federated bundle; ignored")
                }
            }
        }
        if next == self.federated {
            return false;
        }
        tracing::info!(trust_domains = next.len(), "federated bundles updated");
        self.federated = next;
        true
    }

    /// Records the tainted authorities; true when the set changed.
    fn apply_taints(&mut self, certs: &[Vec<u8>], jwt: Vec<String>) -> bool {
        let ids: HashSet<Vec<u8>> = certs
            .iter()
            .filter_map(|c| crate::ca::x509::cert_facts(c).ok())
            .filter_map(|f| f.subject_key_id)
            .collect();
        let mut changed = false;
        if ids != self.tainted_x509 {
            if !ids.is_empty() {
                tracing::warn!(
                    count = ids.len(),
                    "X.509 authorities tainted; re-issuing the SVIDs they signed"
                );
            }
            self.tainted_x509 = ids;
            changed = true;
        }
        if jwt != self.tainted_jwt {
            self.tainted_jwt = jwt;
            self.jwt_epoch.fetch_add(1, Ordering::SeqCst);
            changed = true;
        }
        changed
    }

    fn next_wake(&self) -> i64 {
        let agent = self.agent_renew_at();
        self.held
            .values()
            .map(|h| h.renew_at)
            .min()
            .unwrap_or(agent)
            .min(agent)
    }

    fn agent_renew_at(&self) -> i64 {
        // Half of the remaining life at load time is a fine approximation
        // of half-life; renewal resets it.
        let facts = crate::ca::x509::cert_facts(&self.cred.chain[0]).ok();
        match facts {
            Some(f) => f.not_before + (f.not_after - f.not_before) / 2,
            None => now_unix(),
        }
    }

    fn agent_svid_due(&self) -> bool {
        now_unix() >= self.agent_renew_at()
    }

    async fn renew_agent(&mut self, client: &mut Grpc<Channel>) -> Result<(), SessionError> {
        let key =
            KeyPair::generate(KeyType::EcP256).map_err(|e| SessionError::Local(e.to_string()))?;
        let csr = make_csr(&key)?;
        let resp = client
            .renew_agent(node::RenewAgentRequest { csr })
            .await?
            .into_inner();
        let leaf = resp
            .svid_chain
            .first()
            .ok_or_else(|| SessionError::Local("empty agent SVID".into()))?;
        let facts =
            crate::ca::x509::cert_facts(leaf).map_err(|e| SessionError::Local(e.to_string()))?;
        let cred = AgentCredential {
            spiffe_id: self.cred.spiffe_id.clone(),
            chain: resp.svid_chain,
            key: Arc::new(key),
            not_after: facts.not_after,
        };
        self.store
            .save_credential(&cred)
            .map_err(|e| SessionError::Local(e.to_string()))?;
        self.cred = cred;
        tracing::info!(not_after = facts.not_after, "agent SVID renewed");
        Ok(())
    }

    /// Issues SVIDs for entries that lack a current one, drops identities
    /// whose entries are gone, and publishes the result.
    async fn reconcile(&mut self, client: &mut Grpc<Channel>) -> Result<(), SessionError> {
        let now = now_unix();
        self.held
            .retain(|id, h| self.entries.contains_key(id) && h.identity.not_after > now);
        // IDs only: cloning 100,000 entries here doubled the agent's memory.
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(id, e)| match self.held.get(*id) {
                Some(h) => {
                    h.revision != e.revision
                        || h.renew_at <= now
                        || h.issuer_key_id
                            .as_ref()
                            .is_some_and(|k| self.tainted_x509.contains(k))
                }
                None => true,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for chunk in due.chunks(SIGN_BATCH) {
            let mut keys = BTreeMap::new();
            let mut params = Vec::with_capacity(chunk.len());
            for id in chunk {
                let key = KeyPair::generate(KeyType::EcP256)
                    .map_err(|err| SessionError::Local(err.to_string()))?;
                params.push(node::NewX509svidParams {
                    entry_id: id.clone(),
                    csr: make_csr(&key)?,
                });
                keys.insert(id.clone(), key);
            }
            let resp = client
                .batch_new_x509svid(node::BatchNewX509svidRequest { params })
                .await?
                .into_inner();
            let issued_at = now_unix();
            for r in resp.results {
                let (Some(stored), Some(key)) =
                    (self.entries.get(&r.entry_id), keys.remove(&r.entry_id))
                else {
                    continue;
                };
                let entry = stored.parse(&r.entry_id)?;
                if r.code != 0 || r.cert_chain.is_empty() {
                    tracing::warn!(entry = %r.entry_id, code = r.code, message = %r.message, "the server did not sign");
                    continue;
                }
                let lifetime = (r.expires_at - issued_at).max(1);
                let renew_at = issued_at + lifetime / 2 - jitter_secs(lifetime / 10);
                let issuer_key_id = crate::ca::x509::cert_facts(&r.cert_chain[0])
                    .ok()
                    .and_then(|f| f.authority_key_id);
                self.held.insert(
                    entry.id.clone(),
                    Held {
                        revision: entry.revision,
                        renew_at,
                        issuer_key_id,
                        identity: Arc::new(WorkloadIdentity {
                            entry_id: entry.id.clone(),
                            spiffe_id: entry.spiffe_id.clone(),
                            selectors: entry.selectors.clone(),
                            hint: entry.hint.clone(),
                            federates_with: entry.federates_with.clone(),
                            created_at: entry.created_at,
                            svid_chain: r.cert_chain,
                            key_pkcs8: key.pkcs8_der().to_vec(),
                            not_after: r.expires_at,
                        }),
                    },
                );
            }
        }
        if !due.is_empty() {
            tracing::debug!(
                issued = due.len(),
                held = self.held.len(),
                "SVIDs reconciled"
            );
        }
        self.publish();
        Ok(())
    }

    fn prune_expired(&mut self) {
        let now = now_unix();
        let before = self.held.len();
        self.held.retain(|_, h| h.identity.not_after > now);
        if self.held.len() != before {
            tracing::warn!(
                expired = before - self.held.len(),
                "SVIDs expired while the server was unreachable"
            );
            self.publish();
        }
    }

    fn publish(&self) {
        let mut identities: Vec<Arc<WorkloadIdentity>> =
            self.held.values().map(|h| h.identity.clone()).collect();
        identities.sort_by(|a, b| (a.created_at, &a.entry_id).cmp(&(b.created_at, &b.entry_id)));
        let mut snapshot = CacheSnapshot::empty(self.trust_domain.clone());
        snapshot.identities = identities;
        snapshot.bundle = Arc::new(self.bundle.clone());
        snapshot.federated = self.federated.clone();
        snapshot.ready = self.synced_once;
        self.cache.publish(snapshot);
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // On failure the jitter is just zero.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(random_u64() % ms)
}

fn jitter_secs(max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    (random_u64() % max as u64) as i64
}

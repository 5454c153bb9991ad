//! What every server task shares: the store, the keys, the active
//! authorities, the settings, and the event channel that turns writes into
//! pushes to agents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, Notify};

use super::authorities::Authorities;
use super::authorized::EntryChanges;
use super::generation_cache::GenerationCache;
use super::metrics::{rotation_events, ServerMetrics};
use super::node_aliases::NodeAliases;
use super::node_api::{FederatedCache, FederatedWire};
use crate::ca::KeyManager;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::store::{DataStore, StoreError};

/// Something changed that agents may need to hear about. Receivers
/// recompute what they send from the store, so events carry at most what
/// tells a receiver whether to recompute, and a burst of them collapses
/// into one recomputation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Registration entries were created, updated or deleted: every
    /// agent's set may have changed.
    EntriesChanged,
    /// These entries were written: only the agents whose sets they touch
    /// need to recompute (see [`EntryChanges::touches`]).
    EntriesWritten(Arc<EntryChanges>),
    /// The own or a federated bundle changed.
    BundleChanged,
    /// An agent was evicted or banned: its streams must close.
    AgentRevoked(SpiffeId),
}

/// Defaults and limits of the server role.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// X509-SVID lifetime when an entry says 0.
    pub default_x509_svid_ttl: i64,
    /// JWT-SVID lifetime when an entry says 0.
    pub default_jwt_svid_ttl: i64,
    /// Agent SVID lifetime.
    pub agent_svid_ttl: i64,
    /// Join token lifetime when the request says 0.
    pub default_join_token_ttl: i64,
    /// How long activation may wait for lagging agents past its due time.
    pub ca_activation_deadline: i64,
    /// The `iss` claim of every JWT-SVID (`jwt_issuer`), or None for none.
    pub jwt_issuer: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            default_x509_svid_ttl: 3600,
            default_jwt_svid_ttl: 300,
            agent_svid_ttl: 3600,
            default_join_token_ttl: 600,
            ca_activation_deadline: 300,
            jwt_issuer: None,
        }
    }
}

/// The state shared by the admin API, the node API and the CA tasks.
pub struct ServerState {
    /// This server's trust domain.
    pub trust_domain: TrustDomain,
    /// Durable state.
    pub store: Arc<dyn DataStore>,
    /// Private keys.
    pub keys: Arc<dyn KeyManager>,
    /// Defaults and limits.
    pub settings: ServerSettings,
    /// Counters and histograms of what happens (`herald_server_*`).
    pub metrics: ServerMetrics,
    authorities: RwLock<Arc<Authorities>>,
    events: broadcast::Sender<ServerEvent>,
    agents: Mutex<HashMap<SpiffeId, ConnectedAgent>>,
    acks: Notify,
    federated: FederatedCache,
    aliases: GenerationCache<NodeAliases>,
    /// Agents whose presence changed since it was last recorded in a
    /// shared store (see `cluster.rs`).
    pub(crate) presence: super::cluster::PresenceLog,
    feed_health: std::sync::OnceLock<tokio::sync::watch::Receiver<crate::store::FeedHealth>>,
}

/// A connected agent: how many Sync streams it has open, and the highest
/// bundle sequence it acknowledged.
#[derive(Debug, Default, Clone)]
struct ConnectedAgent {
    streams: usize,
    acked: u64,
    /// The entries it is authorized for, as its Sync stream last computed
    /// them: what the agent was last told, for inspection only. It trails
    /// the store while the agent reads slowly, so signing never consults
    /// it (see `authorized::signable_entries`).
    authorized: Option<Arc<AuthorizedEntries>>,
}

/// An agent's authorized entries by entry ID, as its Sync stream keeps them.
pub type AuthorizedEntries = super::authorized::SentEntries;

/// Keeps an agent counted as connected while its Sync stream lives.
pub struct Connection {
    state: Arc<ServerState>,
    agent: SpiffeId,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut agents = self.state.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agents.get_mut(&self.agent) {
            a.streams = a.streams.saturating_sub(1);
            if a.streams == 0 {
                agents.remove(&self.agent);
            }
        }
        drop(agents);
        self.state.presence.mark(&self.agent);
        // One fewer agent to wait for.
        self.state.acks.notify_waiters();
    }
}

impl ServerState {
    /// Wires the pieces together; what happens is counted into `metrics`
    /// (which the store may already time into).
    pub fn new(
        trust_domain: TrustDomain,
        store: Arc<dyn DataStore>,
        keys: Arc<dyn KeyManager>,
        authorities: Authorities,
        settings: ServerSettings,
        metrics: ServerMetrics,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(ServerState {
            trust_domain,
            store,
            keys,
            settings,
            metrics,
            authorities: RwLock::new(Arc::new(authorities)),
            events,
            agents: Mutex::new(HashMap::new()),
            acks: Notify::new(),
            federated: FederatedCache::default(),
            aliases: GenerationCache::default(),
            presence: Default::default(),
            feed_health: Default::default(),
        })
    }

    /// Counts `agent` as connected until the returned guard drops.
    pub fn agent_connected(self: &Arc<Self>, agent: &SpiffeId) -> Connection {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.entry(agent.clone()).or_default().streams += 1;
        drop(agents);
        self.presence.mark(agent);
        Connection {
            state: self.clone(),
            agent: agent.clone(),
        }
    }

    /// Records that `agent` holds (and has pushed to its workloads) the
    /// bundle with `sequence`.
    pub fn agent_acked(&self, agent: &SpiffeId, sequence: u64) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agents.get_mut(agent) {
            a.acked = a.acked.max(sequence);
        }
        drop(agents);
        self.presence.mark(agent);
        self.acks.notify_waiters();
    }

    /// Shares a connected agent's freshly computed authorized entries.
    pub fn set_authorized(&self, agent: &SpiffeId, entries: Arc<AuthorizedEntries>) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agents.get_mut(agent) {
            a.authorized = Some(entries);
        }
    }

    /// A connected agent's authorized entries, if its stream computed them;
    /// never the basis of an authorization decision.
    pub fn authorized_for(&self, agent: &SpiffeId) -> Option<Arc<AuthorizedEntries>> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.get(agent).and_then(|a| a.authorized.clone())
    }

    /// The highest bundle sequence `agent` acknowledged, if it is connected
    /// now (0 until its first acknowledgement).
    pub fn connected_acked(&self, agent: &SpiffeId) -> Option<u64> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.get(agent).map(|a| a.acked)
    }

    /// Every connected agent with the highest sequence it acknowledged.
    pub fn connected_acks(&self) -> Vec<(SpiffeId, u64)> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.iter().map(|(id, a)| (id.clone(), a.acked)).collect()
    }

    /// Connected agents that have not acknowledged `sequence` yet.
    pub fn lagging_agents(&self, sequence: u64) -> Vec<String> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = agents
            .iter()
            .filter(|(_, a)| a.acked < sequence)
            .map(|(id, _)| id.to_string())
            .collect();
        out.sort();
        out
    }

    /// How many agents are connected, and how many of them acknowledged
    /// `sequence` (or a later bundle).
    pub fn agent_ack_counts(&self, sequence: u64) -> (usize, usize) {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let acked = agents.values().filter(|a| a.acked >= sequence).count();
        (agents.len(), acked)
    }

    /// Resolves at the next acknowledgement or disconnection.
    pub async fn ack_changed(&self) {
        self.acks.notified().await;
    }

    /// The authorities signing right now.
    pub fn authorities(&self) -> Arc<Authorities> {
        self.authorities
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the active authorities (rotation) and tells every agent.
    /// A newer bundle another server published meanwhile is kept.
    pub fn set_authorities(&self, authorities: Authorities) {
        let mut current = self.authorities.write().unwrap_or_else(|p| p.into_inner());
        let merged = current.merged_into(authorities);
        let old = std::mem::replace(&mut *current, Arc::new(merged));
        drop(current);
        for (kind, event) in rotation_events(&old, &self.authorities()) {
            self.metrics.rotation_event(kind, event);
        }
        self.publish(ServerEvent::BundleChanged);
    }

    /// Installs the bundle and other servers' records of `refreshed` (read
    /// from a shared store) into the current set, unless what is installed
    /// is already newer; tells every agent if it changed anything.
    pub fn adopt_shared(&self, refreshed: &Authorities) {
        let mut current = self.authorities.write().unwrap_or_else(|p| p.into_inner());
        let (have, got) = (current.bundle().sequence, refreshed.bundle().sequence);
        if got < have || (got == have && current.foreign() == refreshed.foreign()) {
            return;
        }
        let next = current.with_shared(refreshed.bundle().clone(), refreshed.foreign_shared());
        *current = Arc::new(next);
        drop(current);
        self.publish(ServerEvent::BundleChanged);
    }

    /// The health of the shared store's change feed, once following it.
    pub fn feed_health(&self) -> Option<crate::store::FeedHealth> {
        self.feed_health.get().map(|h| h.borrow().clone())
    }

    /// Starts reporting the change feed's health (once).
    pub(crate) fn set_feed_health(
        &self,
        health: tokio::sync::watch::Receiver<crate::store::FeedHealth>,
    ) {
        let _ = self.feed_health.set(health);
    }

    /// Announces a change; having no listener is fine.
    pub fn publish(&self, event: ServerEvent) {
        match &event {
            ServerEvent::BundleChanged => self.federated.invalidate(),
            // Any entry write may add, change or drop an alias.
            ServerEvent::EntriesChanged | ServerEvent::EntriesWritten(_) => {
                self.aliases.invalidate()
            }
            ServerEvent::AgentRevoked(_) => {}
        }
        let _ = self.events.send(event);
    }

    /// A federated bundle was stored with nothing new for agents (a newer
    /// sequence, the same authorities): the shared wire form is reloaded
    /// when next read, without waking any stream.
    pub fn bundle_stored_quietly(&self) {
        self.federated.invalidate();
    }

    /// The federated bundles as Sync sends them: one copy, decoded once
    /// per change, shared by every agent's stream.
    pub async fn federated_wire(&self) -> Result<Arc<FederatedWire>, StoreError> {
        self.federated.get(|| FederatedWire::load(self)).await
    }

    /// The node alias entries as Sync matches agents against them: one
    /// index, loaded once per change of the entries, shared by every
    /// agent's stream.
    pub async fn node_aliases(&self) -> Result<Arc<NodeAliases>, StoreError> {
        let td = self.trust_domain.clone();
        self.aliases
            .get(|| self.with_store(move |s| NodeAliases::load(s, &td)))
            .await
    }

    /// Listens for changes.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// Runs a store operation on the blocking pool: sled writes end in an
    /// fsync, which must not stall the async workers.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn DataStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::TaskFailed(e)),
        }
    }

    /// A store read keyed by `key`, on the blocking pool like
    /// [`ServerState::with_store`].
    pub async fn lookup<K, T>(
        &self,
        key: &K,
        read: fn(&dyn DataStore, &K) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>
    where
        K: Clone + Send + 'static,
        T: Send + 'static,
    {
        let key = key.clone();
        self.with_store(move |store| read(store, &key)).await
    }
}

/// A state for unit tests of the server's pieces: trust domain
/// `example.org`, in-memory keys, a fresh self-signed CA over `store`, and
/// default settings.
#[cfg(test)]
pub(crate) fn test_state(store: crate::store::SledStore) -> Arc<ServerState> {
    let keys = Arc::new(crate::ca::MemoryKeyManager::default());
    let td = TrustDomain::new("example.org").expect("a valid trust domain");
    let authorities = Authorities::load_or_create(
        &store,
        keys.as_ref(),
        &td,
        super::authorities::CaSettings::default(),
        crate::clock::now_unix(),
    )
    .expect("a CA over a fresh store");
    ServerState::new(
        td,
        Arc::new(store),
        keys,
        authorities,
        ServerSettings::default(),
        ServerMetrics::default(),
    )
}

//! The agent's manager: keeps a Sync stream open to the server, applies the
//! pushed entries and bundles, gets an X509-SVID for every authorized entry
//! (the key is made here and only a CSR leaves the node), renews each SVID at
//! half its life (with jitter, so thousands of SVIDs issued together do not
//! renew together), renews the agent's own SVID, and publishes every new
//! state to the [`Cache`].
//!
//! When the server is unreachable the cache keeps serving what it holds until
//! each SVID expires, and the manager reconnects with exponential backoff
//! and full jitter, failing over to the next server of `server_address`.
//! A reconnecting agent says what it holds, so that the server resumes its
//! Sync with only what changed. With `[rebootstrap]`, an agent whose saved
//! bundle no longer validates any server gets the roots again from the
//! configured source (and attests again if its SVID is no longer valid).
//!
//! Every decision about what is due reads the injected [`SharedClock`], so
//! it can be tested with a `FakeClock`; only the sleeping uses tokio timers.
//!
//! The pieces: `stored` (the compact form entries are kept in),
//! `sync_update` (applying one Sync message), `issuance` (which SVIDs
//! are due, and getting them signed), `renewal` (when things are due, and
//! the agent's own SVID), `reattest` (an x509pop agent proving its machine
//! key again, a k8s_psat agent presenting its current token), `session`
//! (the connection loop and failover), `resume` (resumed snapshots),
//! `restore` (starting from the SVIDs saved before a restart), `trust`
//! (re-bootstrapping and re-attesting).

#[cfg(test)]
mod fixture;
mod issuance;
mod reattest;
mod renewal;
mod restore;
mod resume;
mod session;
mod stored;
mod sync_update;
mod trust;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use tonic::transport::Channel;

use self::issuance::Held;
use self::reattest::MachineIdentity;
use self::resume::PendingSnapshot;
use self::stored::StoredEntry;
use super::cache::{Cache, CacheSnapshot, WorkloadIdentity};
use super::metrics::AgentMetrics;
use super::rebootstrap::Rebootstrap;
use crate::ca::x509::X509Error;
use crate::ca::KeyError;
use crate::clock::SharedClock;
use crate::config::node_attestors::NodeAttestation;
use crate::errors::StatusReason;
use crate::node::wire::WireError;
use crate::node::{
    AgentCredential, AttestError, CredentialStore, CredentialStoreError, CsrBuildError,
    NodeClientError, ServerConnector,
};
use crate::proto::node::node_client::NodeClient as Grpc;
use crate::spiffe::{Bundle, TrustDomain};

/// The client shared with the JWT source (None while disconnected).
pub type SharedClient = Arc<RwLock<Option<Grpc<Channel>>>>;

/// Why a session with the server ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Connect(#[from] NodeClientError),
    #[error(transparent)]
    Csr(#[from] CsrBuildError),
    /// A call or the sync stream failed: the server answered with an
    /// error, or the connection broke. Not a `#[source]`: the status's own
    /// `Display` repeats its message and sources (see `StatusReason`).
    #[error("{}", StatusReason(.0))]
    Status(tonic::Status),
    #[error("the server closed the sync stream")]
    StreamEnded,
    #[error("the server sent an invalid entry {id:?}")]
    Entry {
        id: String,
        #[source]
        source: WireError,
    },
    #[error("the held form of entry {id:?} does not decode")]
    StoredEntry {
        id: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the server sent an invalid trust bundle")]
    Bundle(#[source] WireError),
    #[error("generating a key")]
    Key(#[source] KeyError),
    #[error("the server sent an empty agent SVID chain")]
    EmptyAgentSvid,
    #[error("the server sent an unreadable agent SVID")]
    AgentSvid(#[source] X509Error),
    #[error("saving the agent SVID")]
    SaveCredential(#[source] CredentialStoreError),
    #[error("attesting again failed")]
    Reattest(#[source] Box<AttestError>),
}

impl From<tonic::Status> for SessionError {
    fn from(status: tonic::Status) -> Self {
        SessionError::Status(status)
    }
}

impl SessionError {
    /// A server answered with a certificate our roots cannot validate.
    fn server_untrusted(&self) -> bool {
        matches!(self, SessionError::Connect(e) if e.server_untrusted())
    }
}

/// The manager task's state.
pub struct Manager {
    connector: ServerConnector,
    store: CredentialStore,
    cache: Cache,
    clock: SharedClock,
    trust_domain: TrustDomain,
    cred: AgentCredential,
    bundle: Bundle,
    entries: BTreeMap<String, StoredEntry>,
    pending_snapshot: Option<PendingSnapshot>,
    /// The server's digest of the federated set held (None: the set was
    /// not received on a Sync, e.g. restored from disk).
    federated_digest: Option<Vec<u8>>,
    /// A federated bundle set still arriving over several Sync messages.
    pending_federated: Option<Vec<crate::proto::node::Bundle>>,
    held: BTreeMap<String, Held>,
    client: SharedClient,
    synced_once: bool,
    /// Serving SVIDs saved before a restart, not yet confirmed by a sync.
    restored: bool,
    /// The last attempt to reach or stay connected to the server failed.
    server_unreachable: bool,
    /// Key identifiers of tainted X.509 authorities.
    tainted_x509: HashSet<Vec<u8>>,
    tainted_jwt: Vec<String>,
    /// Bumped when the tainted JWT keys change: the JWT cache drops its tokens.
    jwt_epoch: Arc<AtomicU64>,
    /// The bundle sequence acknowledged to the server on this connection.
    acked: u64,
    /// Bundles of federated trust domains, as last pushed by the server.
    federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// Syncs, reconnects and the entry count, for the ops listener.
    metrics: AgentMetrics,
    /// The machine identity an x509pop agent re-attests with.
    machine: Option<MachineIdentity>,
    /// The server of the last session, to tell a failover.
    last_server: Option<SocketAddr>,
    /// The session in progress received its first Sync message.
    established: bool,
    /// `[rebootstrap]`, when configured.
    rebootstrap: Option<Rebootstrap>,
    /// How to attest again when the agent SVID is no longer valid (with
    /// `[rebootstrap]`), and, for a k8s_psat agent, at every renewal.
    attestation: NodeAttestation,
}

// === impl Manager ===

impl Manager {
    /// A manager for an attested agent. `clock` decides what is due (SVID
    /// renewal, expiry); `jwt_epoch` is shared with the JWT source.
    #[allow(clippy::too_many_arguments)] // each is a distinct collaborator; run.rs is the one caller
    pub fn new(
        connector: ServerConnector,
        store: CredentialStore,
        cache: Cache,
        cred: AgentCredential,
        bundle: Bundle,
        client: SharedClient,
        jwt_epoch: Arc<AtomicU64>,
        clock: SharedClock,
    ) -> Self {
        Manager {
            trust_domain: bundle.trust_domain.clone(),
            connector,
            store,
            cache,
            clock,
            cred,
            bundle,
            entries: BTreeMap::new(),
            pending_snapshot: None,
            federated_digest: None,
            pending_federated: None,
            held: BTreeMap::new(),
            client,
            synced_once: false,
            restored: false,
            server_unreachable: false,
            tainted_x509: HashSet::new(),
            tainted_jwt: Vec::new(),
            jwt_epoch,
            acked: 0,
            federated: BTreeMap::new(),
            metrics: AgentMetrics::default(),
            machine: None,
            last_server: None,
            established: false,
            rebootstrap: None,
            attestation: NodeAttestation::None,
        }
    }

    /// Re-bootstraps trust as `rebootstrap` says, attesting again by
    /// `attestation` when the agent SVID is no longer valid.
    pub fn with_rebootstrap(
        mut self,
        rebootstrap: Option<Rebootstrap>,
        attestation: NodeAttestation,
    ) -> Self {
        self.rebootstrap = rebootstrap;
        self.attestation = attestation;
        self
    }

    /// Counts syncs and reconnects into `metrics`.
    pub fn with_metrics(mut self, metrics: AgentMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Drops the identities whose SVIDs have expired (while the server was
    /// unreachable), publishing if any were dropped.
    fn prune_expired(&mut self) {
        let now = self.clock.now_unix();
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

    /// Publishes what the manager holds as a new cache snapshot.
    fn publish(&self) {
        let mut identities: Vec<Arc<WorkloadIdentity>> =
            self.held.values().map(|h| h.identity.clone()).collect();
        identities.sort_by(|a, b| (a.created_at, &a.entry_id).cmp(&(b.created_at, &b.entry_id)));
        let mut snapshot = CacheSnapshot::empty(self.trust_domain.clone());
        snapshot.identities = identities;
        snapshot.bundle = Arc::new(self.bundle.clone());
        snapshot.federated = self.federated.clone();
        snapshot.ready = self.synced_once || self.restored;
        snapshot.restored = self.restored && !self.synced_once;
        snapshot.server_unreachable = self.server_unreachable;
        self.cache.publish(snapshot);
        self.metrics.set_entries(self.entries.len());
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;

    #[test]
    fn expired_identities_are_pruned_and_the_cache_is_told() {
        let mut f = synced(&[("a", 1), ("b", 1)]);
        let ca = new_ca();
        issue(&mut f, &ca, &[("a", 100), ("b", 1_000)]);
        f.manager.publish();
        let published = f.cache.current();
        assert_eq!(published.identities.len(), 2);
        assert!(published.ready);

        f.clock.set(T0 + 99);
        f.manager.prune_expired();
        assert_eq!(
            f.cache.current().generation,
            published.generation,
            "nothing expired, nothing published"
        );

        f.clock.set(T0 + 100);
        f.manager.prune_expired();
        let now = f.cache.current();
        assert!(now.generation > published.generation);
        let ids: Vec<_> = now.identities.iter().map(|i| i.entry_id.as_str()).collect();
        assert_eq!(ids, ["b"]);
        assert_eq!(held_ids(&f.manager), ["b"]);
    }

    #[test]
    fn a_lost_sync_stream_is_logged_as_one_short_reason() {
        let cause = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls",
        );
        let mut status = tonic::Status::internal(format!("h2 protocol error: {cause}"));
        status.set_source(std::sync::Arc::new(cause));
        let e = super::SessionError::from(status);
        assert_eq!(
            crate::errors::chain(&e),
            "connection lost: peer closed connection without sending TLS close_notify"
        );
    }
}

//! What several servers sharing one database need from it beyond the
//! records: a feed of the changes any of them makes, and who is alive and
//! which agents each one serves (with the bundle they acknowledged).
//!
//! Only a shared store has a [`Cluster`] side ([`DataStore::cluster`]):
//! sled belongs to one server, whose own writes already tell its agents.
//!
//! [`DataStore::cluster`]: super::DataStore::cluster

use tokio::sync::{mpsc, watch};

use super::StoreError;

/// One change made through some server (this one included), as the feed
/// reports it. Receivers recompute from the store, so a change names what
/// to recompute, not the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The feed (re)started or recovered from an outage: anything may have
    /// changed, recompute everything.
    Resync,
    /// Registration entries were created, updated or deleted.
    Entries,
    /// The agent with this SPIFFE ID was banned or evicted.
    AgentRevoked(String),
    /// The bundle of this trust domain (own or federated) changed.
    Bundle(String),
    /// The federation relationship with this trust domain changed.
    Federation(String),
    /// This CA journal record changed (any server's).
    Authority(String),
}

impl Change {
    /// The change an event row of `kind` about `subject` stands for; an
    /// unknown kind (written by a newer Herald) asks for a full resync.
    pub fn from_row(kind: &str, subject: String) -> Change {
        match kind {
            "entries" => Change::Entries,
            "agent_revoked" => Change::AgentRevoked(subject),
            "bundle" => Change::Bundle(subject),
            "federation" => Change::Federation(subject),
            "authority" => Change::Authority(subject),
            _ => Change::Resync,
        }
    }

    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Resync => "resync",
            Change::Entries => "entries",
            Change::AgentRevoked(_) => "agent_revoked",
            Change::Bundle(_) => "bundle",
            Change::Federation(_) => "federation",
            Change::Authority(_) => "authority",
        }
    }
}

/// Whether the feed is reading: `Err` says why not (the database is
/// unreachable, the doorbell connection dropped). A server whose feed is
/// down may serve stale entries, so it reports itself not ready.
pub type FeedHealth = Result<(), String>;

/// A running change feed: changes in commit-safe order, and its health.
/// Dropping the receiver stops the feed.
#[derive(Debug)]
pub struct ChangeFeed {
    /// Every change, each exactly once after the first `Resync` (and again
    /// a `Resync` after any interruption).
    pub changes: mpsc::UnboundedReceiver<Change>,
    /// The feed's health, updated as it changes.
    pub health: watch::Receiver<FeedHealth>,
}

/// One agent's presence on this server: `Some(acked bundle sequence)`
/// while connected, `None` once it is gone.
pub type Presence = (String, Option<u64>);

/// The shared-database side of a store (PostgreSQL).
pub trait Cluster: Send + Sync {
    /// Starts reading the change feed from now on (the first item is a
    /// `Resync`). Callable from any thread; the reading runs on the
    /// store's own runtime.
    fn watch_changes(&self) -> ChangeFeed;

    /// Marks `server_id` alive now (the database's clock), and applies
    /// `presence` to its agent rows in the same transaction; `reset`
    /// first forgets every row of that server (at start, when what a
    /// previous run recorded is stale).
    fn record_presence(
        &self,
        server_id: &str,
        presence: &[Presence],
        reset: bool,
    ) -> Result<(), StoreError>;

    /// The highest bundle sequence each agent acknowledged on servers
    /// other than `server_id` that were alive in the last `alive_secs`.
    fn acked_elsewhere(
        &self,
        server_id: &str,
        alive_secs: u32,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

//! Errors of the datastore.
//!
//! Each variant carries what an operator needs to act on it: which record,
//! which key, which tree, and why. Callers that map errors to gRPC statuses
//! match on the variant (`NotFound`, `AlreadyExists`, `Invalid`, ...); the
//! message is for logs and command-line output.

use std::path::PathBuf;

/// Everything that can go wrong in the datastore.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed; `op` says what we were doing, so a disk-full
    /// or I/O error in the log can be tied to a request.
    #[error("datastore operation `{op}` failed in the storage engine: {source}")]
    Sled {
        /// The datastore operation that failed.
        op: &'static str,
        /// The engine's own error.
        #[source]
        source: sled::Error,
    },

    /// PostgreSQL refused or failed a statement; `op` says which operation.
    #[error("datastore operation `{op}` failed in PostgreSQL: {source}")]
    Postgres {
        /// The datastore operation that failed.
        op: &'static str,
        /// The client's error (a server error carries its SQLSTATE).
        #[source]
        source: tokio_postgres::Error,
    },

    /// No PostgreSQL connection could be had from the pool (the server is
    /// unreachable, refused us, or every connection stayed busy too long).
    #[error("datastore operation `{op}` could not get a PostgreSQL connection: {source}")]
    Pool {
        /// The datastore operation that needed the connection.
        op: &'static str,
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },

    /// The PostgreSQL store could not be set up (bad settings, TLS files).
    #[error("PostgreSQL store setup: {0}")]
    Setup(String),
    /// The change feed's own connection (its doorbell) closed.
    #[error("the change feed's connection to PostgreSQL closed")]
    FeedClosed,

    /// The database was migrated by a newer Herald than this one.
    #[error(
        "the PostgreSQL database has schema version {found}, newer than the newest this Herald \
         build knows ({supported}): it was migrated by a newer Herald release; run that release \
         (or a newer one) against this database instead of this one"
    )]
    DatabaseSchemaTooNew {
        /// The highest version recorded in the database.
        found: i32,
        /// The highest version this build can apply.
        supported: i32,
    },

    /// The data directory could not be prepared.
    #[error("cannot {op} data directory {}: {source}", path.display())]
    Io {
        /// What we were doing (for example "create").
        op: &'static str,
        /// The directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A stored record could not be decoded. We never panic on what we read
    /// from disk: the record is reported with its location so that an
    /// operator can inspect or remove it.
    #[error("corrupt record in tree `{tree}` at key {key:?}: {reason}")]
    Corrupt {
        /// The sled tree holding the record.
        tree: &'static str,
        /// The record's key (lossy UTF-8).
        key: String,
        /// Why decoding failed.
        reason: String,
    },

    /// The data directory was written with a schema this build cannot read.
    #[error(
        "the data directory uses datastore schema version {found}, but this Herald build \
         supports only version {supported}: it was written by a different Herald version; \
         run the matching Herald release (or migrate the data) instead of this one"
    )]
    UnsupportedSchemaVersion {
        /// The version found in the `meta` tree.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The record asked for does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// The kind of record ("registration entry", "agent", ...).
        kind: &'static str,
        /// Its key. Join tokens are shown by a short prefix only.
        id: String,
    },

    /// A record with the same key (or, for registration entries, the same
    /// SPIFFE ID, parent ID and selectors) already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// The kind of record, and for entries which rule matched.
        kind: &'static str,
        /// The key of the existing record. Join tokens are shown by a short
        /// prefix only.
        id: String,
    },

    /// A join token was presented after its expiry; it has been removed.
    #[error("join token {token_prefix}… expired at {expires_at} (unix seconds)")]
    TokenExpired {
        /// The first characters of the token, never the whole secret.
        token_prefix: String,
        /// When it expired, in unix seconds.
        expires_at: i64,
    },

    /// The agent is banned: it may neither attest again nor be unbanned by
    /// a write; only deleting its record (eviction) lifts a ban.
    #[error("agent {id} is banned")]
    AgentBanned {
        /// The agent's SPIFFE ID.
        id: String,
    },

    /// A compare-and-swap found the record changed in a way that makes the
    /// write wrong, not merely stale.
    #[error("conflict: {what}")]
    Conflict {
        /// What changed underneath.
        what: &'static str,
    },

    /// A registration record breaks a rule.
    #[error(transparent)]
    Registration(#[from] crate::registration::RegistrationError),

    /// A store operation's blocking task panicked or was cancelled: our
    /// failure, never the caller's input.
    #[error("the datastore task failed")]
    TaskFailed(#[source] tokio::task::JoinError),

    /// A record failed a basic shape check before being written.
    #[error("invalid {record}: `{field}` {reason}")]
    Invalid {
        /// Which record ("registration entry \"abc\"", "selector \"unix\"").
        record: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A record could not be serialized. This only happens if a value has no
    /// JSON representation, which none of our records should have.
    #[error("cannot encode {kind} {id:?}: {reason}")]
    Encode {
        /// The kind of record.
        kind: &'static str,
        /// Its key.
        id: String,
        /// The serializer's message.
        reason: String,
    },
}

impl StoreError {
    /// Wraps an engine error with the operation that hit it.
    pub(crate) fn sled(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { op, source }
    }
}

impl StoreError {
    /// Wraps a PostgreSQL error with the operation that hit it.
    pub(crate) fn pg(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
        move |source| StoreError::Postgres { op, source }
    }
}

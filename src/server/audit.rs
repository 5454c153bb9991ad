//! The audit log (opt-in, `[audit] path` in `server.toml`): one JSON line
//! per admin API call (every method, success or failure, including calls
//! refused by the caller check) and per node API attestation, with the
//! time, the call's request id, the caller, the gRPC method, the
//! identifying fields of the request, and the status.
//!
//! - `layer`: the tower layer on the admin and node listeners that
//!   writes the records.
//! - `methods` and `fields`: which fields each method records.
//! - `redact`: what stands in for join tokens.
//! - `record`: the line's shape; `writer`: the file (0600, appended).
//! - `tee`: the copy of a call's messages the fields are decoded from.
//!
//! A record that cannot be written does not fail the call (its effect has
//! already happened by then): the server logs it at error level, with
//! the whole record in the log line, and counts it
//! ([`AuditLog::write_failures`]).

mod fields;
mod layer;
mod methods;
mod record;
mod redact;
mod tee;
mod writer;

use std::path::Path;
use std::sync::Arc;

pub(crate) use self::layer::{AuditLayer, AuditScope};
use self::record::AuditRecord;
pub(crate) use self::redact::token_ref;
use self::writer::AuditFile;
pub use self::writer::AuditOpenError;
use crate::errors::Chain;

/// Writes every join token inside `value`'s strings (the token segment of
/// an agent ID derived from one) as the audit log does: for what the
/// dashboard shows.
pub(crate) fn redact_join_tokens(value: &mut serde_json::Value) {
    redact::Redactor::default().redact_value(value);
}

/// The server's audit log; a disabled one records nothing.
#[derive(Debug, Clone, Default)]
pub struct AuditLog(Option<Arc<AuditFile>>);

impl AuditLog {
    /// The audit log at `path`, or a disabled one when there is none.
    /// Opened (and created, 0600) now, so that a bad path stops the start.
    pub fn open(path: Option<&Path>) -> Result<Self, AuditOpenError> {
        match path {
            Some(path) => Ok(AuditLog(Some(Arc::new(AuditFile::open(path)?)))),
            None => Ok(AuditLog(None)),
        }
    }

    /// Whether records are written.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Records that could not be written since the server started.
    pub fn write_failures(&self) -> u64 {
        self.0.as_ref().map_or(0, |f| f.failures())
    }

    /// A layer auditing the calls of `scope` into this log.
    pub(crate) fn layer(&self, scope: AuditScope) -> AuditLayer {
        AuditLayer {
            log: self.clone(),
            scope,
        }
    }

    /// Appends `record`, synced to disk when `durable`, on the blocking
    /// pool. A failure is logged (with the record) and counted.
    async fn write(&self, record: AuditRecord, durable: bool) {
        let Some(file) = self.0.clone() else { return };
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(e) => return self.failed(&record, &e),
        };
        line.push(b'\n');
        let written = tokio::task::spawn_blocking(move || file.append(&line, durable)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed(&record, &e),
            Err(e) => self.failed(&record, &e),
        }
    }

    fn failed(&self, record: &AuditRecord, error: &dyn std::error::Error) {
        let Some(file) = &self.0 else { return };
        let failures = file.count_failure();
        tracing::error!(
            path = %file.path().display(),
            error = %Chain(error),
            failures,
            record = %serde_json::to_string(record).unwrap_or_default(),
            "audit log: cannot write a record; it is in this line instead"
        );
    }
}

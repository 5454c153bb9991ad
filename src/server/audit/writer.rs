//! The audit file: opened once at start (created 0600, appended to), one
//! JSON line per record, each written with a single `write` so that lines
//! from concurrent calls never interleave.
//!
//! Durability: a record of a call that changes state (and of every call
//! whose method is not known to be read-only) is followed by an
//! `fdatasync` before the caller gets its status; a read-only call's record
//! is handed to the kernel (it survives a crash of Herald, not of the
//! machine) and reaches the disk with the next synced record.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why the audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}")]
pub struct AuditOpenError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// The open audit file and the count of records it failed to take.
#[derive(Debug)]
pub(super) struct AuditFile {
    path: PathBuf,
    file: Mutex<File>,
    failures: AtomicU64,
}

impl AuditFile {
    /// Opens `path` for appending, creating it (and its directory, 0700)
    /// if needed; the file is made 0600 whatever its mode was.
    pub(super) fn open(path: &Path) -> Result<Self, AuditOpenError> {
        let fail = |source| AuditOpenError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(fail(std::io::Error::other("is not a regular file")));
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
        Ok(AuditFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failures: AtomicU64::new(0),
        })
    }

    /// Appends `line` (which ends in a newline), synced to disk when
    /// `durable`. Blocking: call it from the blocking pool.
    pub(super) fn append(&self, line: &[u8], durable: bool) -> std::io::Result<()> {
        // A panic while holding the lock cannot leave a half-written state
        // that matters here (the file is append-only): keep using it.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line)?;
        if durable {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Counts a record that could not be written.
    pub(super) fn count_failure(&self) -> u64 {
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records that could not be written since start.
    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn creates_0600_appends_and_tightens_an_open_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let f = AuditFile::open(&path).unwrap();
        f.append(b"{\"a\":1}\n", true).unwrap();
        f.append(b"{\"a\":2}\n", false).unwrap();
        drop(f);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = AuditFile::open(&path).unwrap();
        f.append(b"{\"a\":3}\n", true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    #[test]
    fn a_directory_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = AuditFile::open(dir.path()).unwrap_err();
        assert_eq!(err.path, dir.path());
    }
}

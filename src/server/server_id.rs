//! This server's stable id among the servers of its trust domain: made
//! once (a random UUID) and kept in `server_id` in the data directory, so
//! that a restarted server is the same server — it owns the same
//! authorities (their keys are in the same `keys/`) — and a new data
//! directory is a new server. Never copy a data directory to start a
//! second server: both would claim the same authorities.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The file in the data directory.
pub const FILE: &str = "server_id";

/// Why the id could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum ServerIdError {
    /// Reading or writing the file failed.
    #[error("{FILE}: {0}")]
    Io(#[from] std::io::Error),
    /// The file holds something that is not an id.
    #[error("{FILE}: {0:?} is not a server id (1 to 64 of a-z, 0-9, '-'); remove the file to make a new one")]
    Invalid(String),
}

/// The id in `data_dir`, made (0600, written atomically) if absent.
pub fn load_or_create(data_dir: &Path) -> Result<String, ServerIdError> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return check(text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = data_dir.join(format!(".{FILE}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    // Of two processes starting on one directory, the first rename wins
    // and both read back what is there.
    if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
        std::fs::rename(&tmp, &path)?;
    }
    let _ = std::fs::remove_file(&tmp);
    check(std::fs::read_to_string(&path)?.trim())
}

fn check(id: &str) -> Result<String, ServerIdError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ServerIdError::Invalid(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path()).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), id);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "../etc\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("server_id") && err.contains("../etc"), "{err}");
    }
}

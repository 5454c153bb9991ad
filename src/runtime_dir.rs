//! Where Herald's sockets live, and how their directories are made safe.
//!
//! A socket in a directory that another local user can write to can be
//! swapped for theirs, or its `chmod` redirected through a symlink. So the
//! defaults live under a directory only we control: `/run/herald` for root,
//! `$XDG_RUNTIME_DIR/herald` for another user, or the data directory. A
//! socket directory that exists already must be ours and closed to writes
//! by others; anything else is refused, never repaired behind the
//! operator's back.

use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

/// Why a socket directory or socket is refused.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    /// The filesystem refused.
    #[error("socket directory {path}: {what}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something else than a directory (a symlink, say) sits there.
    #[error("socket directory {path} is not a directory (a symlink is refused too)")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory belongs to another user.
    #[error("socket directory {path} belongs to uid {owner}, not to this process (uid {me}); remove it or choose another path")]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// Group or others may write to the directory.
    #[error("socket directory {path} has mode {mode:o}: others could replace the socket; make it 0700 or 0755")]
    WritableByOthers {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Something else than a socket sits where the socket goes.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
}

/// The directory Herald's sockets go under by default, if there is one for
/// this user: `/run/herald` for root, `$XDG_RUNTIME_DIR/herald` otherwise.
pub fn runtime_dir() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/run/herald"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|v| PathBuf::from(v).join("herald"))
}

/// The default admin socket of a server whose data lives in `data_dir`.
pub fn default_admin_socket(data_dir: &Path) -> PathBuf {
    match runtime_dir() {
        Some(dir) => dir.join("server").join("admin.sock"),
        None => data_dir.join("admin.sock"),
    }
}

/// The admin socket a command line uses when none is given. Without a
/// runtime directory there is no data directory to fall back on, so it
/// names the root default, which the connection error then names too.
pub fn default_cli_admin_socket() -> PathBuf {
    runtime_dir()
        .unwrap_or_else(|| PathBuf::from("/run/herald"))
        .join("server")
        .join("admin.sock")
}

/// The Workload API socket a command line uses when none is given (as for
/// [`default_cli_admin_socket`]).
pub fn default_cli_workload_socket() -> PathBuf {
    runtime_dir()
        .unwrap_or_else(|| PathBuf::from("/run/herald"))
        .join("agent")
        .join("public")
        .join("api.sock")
}

/// The default Workload API socket of an agent whose data lives in `data_dir`.
pub fn default_workload_socket(data_dir: &Path) -> PathBuf {
    match runtime_dir() {
        Some(dir) => dir.join("agent").join("public").join("api.sock"),
        None => data_dir.join("public").join("api.sock"),
    }
}

/// Makes sure `dir` exists, is a real directory owned by this process's
/// user, and is writable by nobody else. Missing directories are created
/// with `mode` (0700, or 0755 where other users must reach a socket).
pub fn prepare_socket_dir(dir: &Path, mode: u32) -> Result<(), SocketDirError> {
    let io = |what, source| SocketDirError::Io {
        path: dir.to_path_buf(),
        what,
        source,
    };
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && std::fs::symlink_metadata(parent).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| io("creating its parent", e))?;
        }
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have narrowed the mode; state it exactly.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io("setting its mode", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating it", e)),
    }
    check_socket_dir(dir)
}

/// Checks an existing socket directory without following a symlink.
pub fn check_socket_dir(dir: &Path) -> Result<(), SocketDirError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| SocketDirError::Io {
        path: dir.to_path_buf(),
        what: "inspecting it",
        source,
    })?;
    if !meta.file_type().is_dir() {
        return Err(SocketDirError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SocketDirError::NotOurs {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(SocketDirError::WritableByOthers {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Binds a Unix socket at `path` with `mode`, in a directory prepared by
/// [`prepare_socket_dir`] with `dir_mode`. A stale socket is replaced;
/// anything else at `path` is refused. Because the directory is ours and
/// closed to others, nobody can swap the socket between the bind and the
/// `chmod`. Must be called inside a tokio runtime.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    dir_mode: u32,
) -> Result<tokio::net::UnixListener, SocketDirError> {
    let io = |what, source| SocketDirError::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_socket_dir(dir, dir_mode)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| io("removing a stale socket", e))?
        }
        Ok(_) => {
            return Err(SocketDirError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting the socket path", e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| io("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting the socket's mode", e))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_directory_and_refuses_unsafe_ones() {
        let (tmp, dir) = crate::testing::temp_path("a/b/sock");
        prepare_socket_dir(&dir, 0o700).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        // Idempotent.
        prepare_socket_dir(&dir, 0o700).unwrap();

        // A directory others can write to is refused, not repaired.
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_socket_dir(&open, 0o700).unwrap_err();
        assert!(
            matches!(err, SocketDirError::WritableByOthers { mode: 0o777, .. }),
            "{err}"
        );

        // A symlink to a safe directory is refused too: it could be swapped.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = prepare_socket_dir(&link, 0o700).unwrap_err();
        assert!(matches!(err, SocketDirError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let (_tmp, dir) = crate::testing::temp_path("theirs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !rustix::process::geteuid().is_root() {
            // Only root can give a directory away; elsewhere the ownership
            // check is exercised by the integration tests.
            return;
        }
        rustix::fs::chown(&dir, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        let err = prepare_socket_dir(&dir, 0o700).unwrap_err();
        assert!(
            matches!(err, SocketDirError::NotOurs { owner: 65534, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn binds_with_the_mode_and_refuses_to_replace_a_file() {
        let (tmp, path) = crate::testing::temp_path("s/api.sock");
        let l = bind_socket(&path, 0o777, 0o755).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o777);
        drop(l);
        // A stale socket is replaced.
        bind_socket(&path, 0o600, 0o755).unwrap();
        // A regular file is not.
        let file = tmp.path().join("s/file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            bind_socket(&file, 0o600, 0o755),
            Err(SocketDirError::NotASocket { .. })
        ));
    }
}

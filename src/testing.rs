//! Helpers shared by the unit tests of every module.

use std::path::PathBuf;

use tempfile::TempDir;

/// A fresh temporary directory and the path `name` inside it (not created);
/// the directory lives as long as the returned `TempDir`.
pub(crate) fn temp_path(name: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    (dir, path)
}

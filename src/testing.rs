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

/// Runs `openssl args...` in `dir` and returns its stdout; the test fails
/// with openssl's stderr if it does.
pub(crate) fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed to run these tests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

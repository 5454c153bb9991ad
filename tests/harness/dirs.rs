//! Where tests and benches put their files and which loopback ports they use.

use std::path::PathBuf;

/// A fresh directory under cargo's `target/tmp`: a real disk (so fsync is
/// real, unlike a tmpfs /tmp), with paths short enough for Unix sockets.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("create target/tmp");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("create a temp dir")
}

/// A loopback port that nothing listened on a moment ago: for a server to
/// bind later, or for a client to find closed.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

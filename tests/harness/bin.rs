//! The `herald` binary cargo built for this run, running it, and the facts
//! about this process that tests compare against (its uid, the clock).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `herald`, as cargo built it beside this test or bench, with the
/// developer's own `HERALD_*` settings removed so they cannot leak in.
pub fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("HERALD_LOG")
        .env_remove("HERALD_ADMIN_SOCKET");
    cmd
}

/// Runs `herald args...` to completion.
pub fn run(args: &[&str]) -> Output {
    herald().args(args).output().expect("spawn herald")
}

/// Runs `herald args...`, asserting success; its stdout.
#[track_caller]
pub fn run_ok(args: &[&str]) -> String {
    assert_success(args, &run(args))
}

/// Runs `herald args... --socket <socket>` (an admin command against the
/// server whose admin socket that is).
pub fn run_on_socket(socket: &Path, args: &[&str]) -> Output {
    herald()
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("spawn herald")
}

/// Asserts that `herald args...` succeeded; its stdout.
#[track_caller]
pub fn assert_success(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "herald {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts that `herald args...` exited with `code`, naming `needle` on
/// stderr, without a panic; its stderr.
#[track_caller]
pub fn assert_fails(args: &[&str], out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "herald {args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "herald {args:?}: expected {needle:?} in {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The uid this process acts as: what SO_PEERCRED tells an agent's
/// Workload API about it, and so what a `unix:uid:` selector must name.
/// Read as the owner of a file this process just created, which is the
/// kernel's own answer (no parsing of /proc, no field to pick wrongly).
pub fn my_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        use std::os::unix::fs::MetadataExt as _;
        let file = tempfile::tempfile().expect("create a temp file");
        file.metadata().expect("stat the temp file").uid()
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs() as i64
}

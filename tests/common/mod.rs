//! Helpers shared by the integration tests: run the real `herald` binary.

#![allow(dead_code)]

pub mod cluster;

use std::path::Path;
use std::process::{Command, Output};

/// The `herald` binary cargo built for this test run.
pub fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("HERALD_LOG");
    cmd
}

/// Runs `herald args...` and returns its output.
pub fn run(args: &[&str]) -> Output {
    herald().args(args).output().expect("spawn herald")
}

/// Runs `herald args...`, asserting success, and returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "herald {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Runs `openssl args...` in `dir`, returning (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed to run these tests");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

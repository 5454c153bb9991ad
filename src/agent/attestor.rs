//! The unix workload attestor: turns the kernel's view of a Workload API
//! caller (the SO_PEERCRED pid, uid and gid of its socket) into `unix`
//! selectors that registration entries match against.
//!
//! Everything is read from `/proc` and `/etc` (the crate forbids `unsafe`,
//! so no libc calls). The uid and gid come from SO_PEERCRED, which the
//! kernel vouches for; `/proc` supplies the rest. Because a pid can be
//! reused between the connect and our reads, the process start time is
//! read before and after, and the attestation fails if it changed.
//!
//! Selectors (all of kind `unix`), as SPIRE's unix attestor names them:
//! `uid:<n>`, `user:<name>`, `gid:<n>`, `group:<name>`,
//! `supplementary_gid:<n>`, `supplementary_group:<name>`, `path:<exe>`,
//! `sha256:<hex of the executable>`.
//!
//! A caller that calls again may be answered from `memo`, which remembers
//! an attestation only while it provably still describes the same process
//! running the same executable (the reasoning is in that module).
//!
//! The pieces: `proc_files` reads `/proc`, `names` the user and group
//! databases, `exe_hash` the executable's hash, `memo` the remembered
//! attestations. [`k8s`] is the optional
//! Kubernetes attestor, and [`WorkloadAttestor`] runs the attestors that
//! are on for one caller.

mod exe_hash;
pub mod k8s;
mod memo;
mod names;
mod proc_files;
mod workload;

use std::io;
use std::path::PathBuf;

pub use self::exe_hash::DEFAULT_SHA256_MAX_FILE_SIZE;
use self::exe_hash::{ExeHashes, ExeVersion};
use self::memo::AttestationMemo;
use self::names::NameDatabases;
use self::proc_files::{read_proc_file, read_start_time, status_effective_uid, status_groups};
pub use self::workload::WorkloadAttestor;
use crate::registration::Selector;

/// The selector kind this attestor produces.
pub const SELECTOR_KIND: &str = "unix";

/// Why a workload could not be attested. The Workload API answers all of
/// these with `Unavailable("workload attestation failed")` and logs the detail.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// SO_PEERCRED gave a pid that cannot name a process.
    #[error("invalid caller pid {0}")]
    BadPid(i32),
    /// The process exited before or during attestation.
    #[error("process {pid} no longer exists")]
    ProcessGone {
        /// The caller's pid.
        pid: i32,
    },
    /// A `/proc` or `/etc` file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("malformed {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// The pid now names a different process than the one that connected.
    #[error("process {pid} was replaced during attestation (start time {before}, then {after:?})")]
    PidReused {
        /// The caller's pid.
        pid: i32,
        /// Start time (clock ticks since boot) read first.
        before: u64,
        /// Start time read last; `None` if the process was gone by then.
        after: Option<u64>,
    },
    /// `/proc/<pid>/status` disagrees with the socket's peer credential.
    #[error("process {pid} runs with effective uid {status_uid}, but its socket peer credential says uid {peer_uid}")]
    UidMismatch {
        /// The caller's pid.
        pid: i32,
        /// The effective uid in `/proc/<pid>/status`.
        status_uid: u32,
        /// The uid from SO_PEERCRED.
        peer_uid: u32,
    },
    /// The Kubernetes attestor failed (the cause names the step).
    #[error("k8s workload attestation of process {pid} failed")]
    K8s {
        /// The caller's pid.
        pid: i32,
        /// What failed.
        #[source]
        source: k8s::K8sError,
    },
    /// The blocking task reading `/proc` panicked or was cancelled.
    #[error("the attestation task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Attests local processes by their unix credentials and executable.
#[derive(Debug)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    /// Executable hashes already computed.
    hashes: ExeHashes,
    /// Parsed `passwd` and `group`.
    names: NameDatabases,
    /// Attestations remembered per caller.
    memo: AttestationMemo,
}

/// One attestation and what a remembered one is checked against.
pub(super) struct Attested<T> {
    selectors: Vec<Selector>,
    extra: T,
    /// The start time read before and after.
    start_time: u64,
    /// The executable the path and hash selectors came from, if readable.
    exe: Option<ExeVersion>,
}

impl Default for UnixAttestor {
    fn default() -> Self {
        Self::new()
    }
}

// === impl UnixAttestor ===

impl UnixAttestor {
    /// An attestor reading the host's `/proc`, `/etc/passwd` and `/etc/group`.
    pub fn new() -> Self {
        UnixAttestor {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            hashes: ExeHashes::new(DEFAULT_SHA256_MAX_FILE_SIZE),
            names: NameDatabases::default(),
            memo: AttestationMemo::default(),
        }
    }

    /// Executables larger than `max` bytes get no `sha256` selector
    /// (default [`DEFAULT_SHA256_MAX_FILE_SIZE`], `unix_sha256_max_file_size`
    /// in agent.toml; 0 turns the selector off).
    pub fn with_sha256_max_file_size(mut self, max: u64) -> Self {
        self.hashes = ExeHashes::new(max);
        self
    }

    /// Selectors for the process `pid`, whose socket peer credential says
    /// `uid` and `gid`. Blocking: it reads files and may hash a large
    /// executable, so async callers run it on a blocking thread.
    pub fn attest(&self, pid: i32, uid: u32, gid: u32) -> Result<Vec<Selector>, AttestError> {
        self.attest_with(pid, uid, gid, |_| Ok(()))
            .map(|(selectors, ())| selectors)
    }

    /// Like [`UnixAttestor::attest`], also running `inside` on the pid
    /// between the two start-time reads, so that what it reads of the
    /// process (the k8s attestor's cgroup file) is covered by the pid-reuse
    /// check too.
    pub fn attest_with<T>(
        &self,
        pid: i32,
        uid: u32,
        gid: u32,
        inside: impl FnOnce(i32) -> Result<T, AttestError>,
    ) -> Result<(Vec<Selector>, T), AttestError> {
        self.attest_checked(pid, uid, gid, inside)
            .map(|a| (a.selectors, a.extra))
    }

    pub(super) fn attest_checked<T>(
        &self,
        pid: i32,
        uid: u32,
        gid: u32,
        inside: impl FnOnce(i32) -> Result<T, AttestError>,
    ) -> Result<Attested<T>, AttestError> {
        if pid <= 0 {
            return Err(AttestError::BadPid(pid));
        }
        let dir = self.proc_root.join(pid.to_string());
        let before = read_start_time(&dir, pid)?;

        let status_path = dir.join("status");
        let status = read_proc_file(&status_path, pid)?;
        let status_uid = status_effective_uid(&status).ok_or_else(|| AttestError::Malformed {
            path: status_path.clone(),
            reason: "no parsable Uid: line",
        })?;
        if status_uid != uid {
            return Err(AttestError::UidMismatch {
                pid,
                status_uid,
                peer_uid: uid,
            });
        }
        let supplementary = status_groups(&status).ok_or(AttestError::Malformed {
            path: status_path,
            reason: "Groups: line holds something other than numbers",
        })?;

        let mut selectors = Vec::new();
        let mut push = |value: String| {
            // Selector::new refuses only empty values and NUL characters;
            // a name or path like that is simply not offered as a selector.
            match Selector::new(SELECTOR_KIND, value) {
                Ok(s) => selectors.push(s),
                Err(e) => tracing::debug!(pid, error = %e, "skipping unusable selector"),
            }
        };

        push(format!("uid:{uid}"));
        if let Some(name) = self.names.lookup(&self.passwd, uid) {
            push(format!("user:{name}"));
        }
        push(format!("gid:{gid}"));
        if let Some(name) = self.names.lookup(&self.group, gid) {
            push(format!("group:{name}"));
        }
        for g in &supplementary {
            push(format!("supplementary_gid:{g}"));
            if let Some(name) = self.names.lookup(&self.group, *g) {
                push(format!("supplementary_group:{name}"));
            }
        }
        let exe = match self.hashes.exe_selectors(&dir) {
            Ok(facts) => {
                if let Some(path) = facts.path {
                    push(format!("path:{path}"));
                }
                if let Some(hash) = facts.sha256 {
                    push(format!("sha256:{hash}"));
                }
                Some(facts.version)
            }
            Err(e) => {
                tracing::debug!(pid, error = %e, "executable unreadable; no path or sha256 selector");
                None
            }
        };

        let extra = inside(pid)?;

        let after = match read_start_time(&dir, pid) {
            Ok(t) => Some(t),
            Err(AttestError::ProcessGone { .. }) => None,
            Err(e) => return Err(e),
        };
        if after != Some(before) {
            return Err(AttestError::PidReused { pid, before, after });
        }
        Ok(Attested {
            selectors,
            extra,
            start_time: before,
            exe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's effective uid and gid, as SO_PEERCRED gives them.
    pub(super) fn self_ids() -> (u32, u32) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |name: &str| -> u32 {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            line.split_ascii_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("Uid:"), field("Gid:"))
    }

    fn has(selectors: &[Selector], value: &str) -> bool {
        selectors
            .iter()
            .any(|s| s.kind() == "unix" && s.value() == value)
    }

    #[test]
    fn attests_the_test_process() {
        let (uid, gid) = self_ids();
        let pid = std::process::id() as i32;
        // A debug test binary is larger than the default hashing limit.
        let attestor = UnixAttestor::new().with_sha256_max_file_size(u64::MAX);
        let selectors = attestor.attest(pid, uid, gid).unwrap();

        assert!(has(&selectors, &format!("uid:{uid}")), "{selectors:?}");
        assert!(has(&selectors, &format!("gid:{gid}")), "{selectors:?}");
        let exe = std::env::current_exe().unwrap();
        assert!(
            has(&selectors, &format!("path:{}", exe.display())),
            "{selectors:?}"
        );
        let expected = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&exe).unwrap());
        let expected = format!("sha256:{}", hex::encode(expected.as_ref()));
        assert!(has(&selectors, &expected), "{selectors:?}");
        if uid == 0 {
            assert!(has(&selectors, "user:root"), "{selectors:?}");
        }

        // The second attestation is served from the hash cache and agrees.
        assert_eq!(attestor.hashes.len(), 1);
        assert_eq!(attestor.attest(pid, uid, gid).unwrap(), selectors);
    }

    #[test]
    fn attests_a_child_and_refuses_it_once_gone() {
        let (uid, gid) = self_ids();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let attestor = UnixAttestor::new();
        let selectors = attestor.attest(pid, uid, gid).unwrap();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(
            has(&selectors, &format!("path:{}", exe.display())),
            "{selectors:?}"
        );
        assert!(selectors.iter().any(|s| s.value().starts_with("sha256:")));

        child.kill().unwrap();
        child.wait().unwrap();
        let err = attestor.attest(pid, uid, gid).unwrap_err();
        assert!(matches!(err, AttestError::ProcessGone { .. }), "{err}");
    }

    #[test]
    fn wrong_peer_uid_is_refused() {
        let (uid, gid) = self_ids();
        let pid = std::process::id() as i32;
        let err = UnixAttestor::new()
            .attest(pid, uid.wrapping_add(1), gid)
            .unwrap_err();
        assert!(matches!(err, AttestError::UidMismatch { .. }), "{err}");
    }

    #[test]
    fn missing_process_is_an_error() {
        // pid_max is at most 2^22 on Linux, so this pid never exists.
        let err = UnixAttestor::new().attest(i32::MAX, 0, 0).unwrap_err();
        assert!(matches!(err, AttestError::ProcessGone { .. }), "{err}");
        let err = UnixAttestor::new().attest(0, 0, 0).unwrap_err();
        assert!(matches!(err, AttestError::BadPid(0)), "{err}");
    }
}

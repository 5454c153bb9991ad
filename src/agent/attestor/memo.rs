//! Attestations remembered per caller, so a workload that calls again is
//! not attested from scratch (~20–45 µs of `/proc` reads on a blocking
//! thread) when the answer is provably the one a fresh attestation of the
//! same process would give.
//!
//! # Why a remembered attestation is safe to serve
//!
//! An entry is keyed by the socket's peer credential (pid, uid, gid) and
//! holds an open descriptor of the `/proc/<pid>` directory, the version of
//! the executable the selectors were computed from, and the selectors. It
//! is served only when all of these hold:
//!
//! 1. **Same credential.** uid and gid are SO_PEERCRED's, recorded by the
//!    kernel when the caller connected, and part of the key: a connection
//!    made under another credential never reads this entry.
//! 2. **Same process.** An open `/proc/<pid>` directory refers to one
//!    process (the kernel's `struct pid`, the same handle
//!    `pidfd_send_signal(2)` accepts), not to the number: once that process
//!    is gone, every lookup through it fails (ENOENT for a zombie, ESRCH
//!    once reaped), even after the number is given to a new process
//!    (`tests::a_reused_pid_is_never_served_the_old_attestation`). A live
//!    process keeps its number, so the pid cannot name anyone else while
//!    the entry answers. The descriptor is opened before the attestation,
//!    and the process start time (field 22 of `stat`) read through it must
//!    equal the one the attestation read before and after its own reads
//!    (the unix attestor's pid-reuse check): the descriptor names the
//!    process that was attested. This is the (pid, start time) key of the
//!    brief without reading `stat` on every call.
//! 3. **Same executable.** `statx` of `exe` through the descriptor must
//!    give the same device, inode, size and mtime as the file whose path
//!    and SHA-256 went into the selectors (taken from that very open
//!    file). `execve(2)` of another file changes it, and so does
//!    replacing or rewriting the file; re-executing the same unchanged file
//!    gives the same executable selectors.
//! 4. **Young.** At most [`MAX_AGE`] old; then the caller is attested in
//!    full again.
//!
//! What a hit does *not* re-read, and why that is acceptable:
//!
//! - The process's current credentials (`/proc/<pid>/status`: effective
//!   uid, supplementary groups). A process that calls setuid(2) or
//!   setgroups(2) without exec keeps being served the entry made under
//!   the credential it connected with, for at most [`MAX_AGE`]. It is the
//!   same process, on a connection it opened with that credential, and the
//!   Workload API already attests a stream once for its whole life: a
//!   FetchX509SVID stream opened before such a change keeps delivering the
//!   same identities after it. A connection opened after the change
//!   carries the new peer credential, hence another key and a full
//!   attestation (with the effective-uid check).
//! - User and group names (`/etc/passwd`, `/etc/group`) and the
//!   executable's path after a rename: up to [`MAX_AGE`] stale.
//! - On a network or FUSE filesystem the executable's attributes are read
//!   from the kernel's cache (`AT_STATX_DONT_SYNC`) so that a hit never
//!   waits on a filesystem server on the async worker; a file changed on
//!   another client may be missed for up to [`MAX_AGE`].
//! - The k8s attestor's selectors are never remembered: with it on, every
//!   call is attested in full (see `WorkloadAttestor`).
//!
//! At most [`CAPACITY`] entries (each holds a descriptor). When full, the
//! oldest entry makes room. Any local user can churn the entries by
//! connecting from many processes; that only costs others a full
//! attestation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fd::OwnedFd;

use super::exe_hash::ExeVersion;
use super::proc_files::{open_proc_dir, start_time_at};
use super::{AttestError, UnixAttestor};
use crate::registration::Selector;

/// How long an entry answers before its caller is attested in full again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);

/// How many callers are remembered at once.
pub(super) const CAPACITY: usize = 256;

// === impl UnixAttestor ===

impl UnixAttestor {
    /// Like [`UnixAttestor::attest`], but answered from a remembered
    /// attestation of the same process when one provably still holds
    /// (`memo`), and remembering this one otherwise. Blocking on a miss.
    pub fn attest_remembered(
        &self,
        pid: i32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<Selector>, AttestError> {
        match self.recall(pid, uid, gid) {
            Some(selectors) => Ok(selectors),
            None => self.attest_and_remember(pid, uid, gid),
        }
    }

    /// The remembered selectors of this caller, if they still hold. Never
    /// blocks on a filesystem (one `statx` on procfs): async callers may
    /// call it on their own thread.
    pub(crate) fn recall(&self, pid: i32, uid: u32, gid: u32) -> Option<Vec<Selector>> {
        self.memo.recall(pid, uid, gid)
    }

    /// Attests in full and remembers the result. Blocking.
    pub(crate) fn attest_and_remember(
        &self,
        pid: i32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<Selector>, AttestError> {
        // Opened before the attestation: `remember` checks that it names
        // the process that was attested.
        let dir = (pid > 0)
            .then(|| open_proc_dir(&self.proc_root.join(pid.to_string())).ok())
            .flatten();
        let attested = self.attest_checked(pid, uid, gid, |_| Ok(()))?;
        if let (Some(dir), Some(exe)) = (dir, attested.exe) {
            let start = attested.start_time;
            self.memo
                .remember((pid, uid, gid), dir, start, exe, &attested.selectors);
        }
        Ok(attested.selectors)
    }
}

/// The socket peer credential an entry answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    pid: i32,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct Remembered {
    /// `/proc/<pid>` of the attested process.
    dir: OwnedFd,
    /// The executable the selectors were computed from.
    exe: ExeVersion,
    selectors: Vec<Selector>,
    at: Instant,
}

/// Remembered attestations by peer credential.
#[derive(Debug, Default)]
pub(super) struct AttestationMemo {
    entries: Mutex<HashMap<Key, Arc<Remembered>>>,
}

impl AttestationMemo {
    /// The selectors remembered for this peer credential, if every check of
    /// the module doc passes. Never blocks on a filesystem: one `statx` on
    /// procfs, with the executable's cached attributes.
    pub(super) fn recall(&self, pid: i32, uid: u32, gid: u32) -> Option<Vec<Selector>> {
        let key = Key { pid, uid, gid };
        let entry = self.lock().get(&key).cloned()?;
        let valid = entry.at.elapsed() < MAX_AGE
            && ExeVersion::of_process_cached(&entry.dir).is_ok_and(|now| now == entry.exe);
        if !valid {
            let mut entries = self.lock();
            // Only if no one replaced it meanwhile.
            if entries.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
                entries.remove(&key);
            }
            return None;
        }
        Some(entry.selectors.clone())
    }

    /// Remembers `selectors` of the process attested with start time
    /// `start_time`, whose executable was `exe`; `dir` is its `/proc/<pid>`,
    /// opened before the attestation. Nothing is remembered unless the start
    /// time read through `dir` is `start_time` (then `dir` names the attested
    /// process). Blocking: reads `stat`.
    pub(super) fn remember(
        &self,
        (pid, uid, gid): (i32, u32, u32),
        dir: OwnedFd,
        start_time: u64,
        exe: ExeVersion,
        selectors: &[Selector],
    ) {
        let read = start_time_at(&dir);
        if read != Some(start_time) {
            tracing::debug!(
                pid,
                start_time,
                ?read,
                "not remembered: the /proc/<pid> opened first names another process"
            );
            return;
        }
        let entry = Arc::new(Remembered {
            dir,
            exe,
            selectors: selectors.to_vec(),
            at: Instant::now(),
        });
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            let oldest = entries.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(Key { pid, uid, gid }, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Remembered>>> {
        // Entries are inserted and removed whole: a panic elsewhere cannot
        // leave one half-written.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[path = "memo_tests.rs"]
mod tests;

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

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::registration::Selector;

/// The selector kind this attestor produces.
pub const SELECTOR_KIND: &str = "unix";

/// How many executable hashes the cache keeps before it starts over.
const HASH_CACHE_LIMIT: usize = 4096;

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
    #[error("cannot read {path}: {source}")]
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
}

/// Identifies one version of an executable file: a file replaced or
/// rewritten in place gets a new key, so its hash is recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ExeKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A parsed passwd- or group-format file and the mtime it was read at.
type NameTable = (std::time::SystemTime, HashMap<u32, String>);

/// Attests local processes by their unix credentials and executable.
#[derive(Debug)]
pub struct UnixAttestor {
    proc_root: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
    /// SHA-256 (lowercase hex) of executables already hashed, so a large
    /// binary serving many connections is read once.
    hashes: Mutex<HashMap<ExeKey, String>>,
    /// Parsed name databases by file, with the mtime they were read at:
    /// re-read only when the file changes, not on every request.
    names: Mutex<HashMap<PathBuf, NameTable>>,
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
            hashes: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// Selectors for the process `pid`, whose socket peer credential says
    /// `uid` and `gid`. Blocking: it reads files and may hash a large
    /// executable, so async callers run it on a blocking thread.
    pub fn attest(&self, pid: i32, uid: u32, gid: u32) -> Result<Vec<Selector>, AttestError> {
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
        if let Some(name) = self.lookup(&self.passwd, uid) {
            push(format!("user:{name}"));
        }
        push(format!("gid:{gid}"));
        if let Some(name) = self.lookup(&self.group, gid) {
            push(format!("group:{name}"));
        }
        for g in &supplementary {
            push(format!("supplementary_gid:{g}"));
            if let Some(name) = self.lookup(&self.group, *g) {
                push(format!("supplementary_group:{name}"));
            }
        }
        match self.exe_selectors(&dir) {
            Ok((path, hash)) => {
                if let Some(path) = path {
                    push(format!("path:{path}"));
                }
                push(format!("sha256:{hash}"));
            }
            Err(e) => {
                tracing::debug!(pid, error = %e, "executable unreadable; no path or sha256 selector")
            }
        }

        let after = match read_start_time(&dir, pid) {
            Ok(t) => Some(t),
            Err(AttestError::ProcessGone { .. }) => None,
            Err(e) => return Err(e),
        };
        if after != Some(before) {
            return Err(AttestError::PidReused { pid, before, after });
        }
        Ok(selectors)
    }

    /// The name of id `id` in a passwd- or group-format file, if any.
    fn lookup(&self, file: &Path, id: u32) -> Option<String> {
        let mtime = match std::fs::metadata(file).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot read name database");
                return None;
            }
        };
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, table)) = names.get(file) {
            if *seen == mtime {
                return table.get(&id).cloned();
            }
        }
        let contents = match std::fs::read_to_string(file) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot read name database");
                return None;
            }
        };
        let table = name_table(&contents);
        let found = table.get(&id).cloned();
        names.insert(file.to_path_buf(), (mtime, table));
        found
    }

    /// The executable's path (when it is valid UTF-8) and SHA-256. The
    /// hash is read through `/proc/<pid>/exe` itself, which reaches the
    /// file even inside another mount namespace.
    fn exe_selectors(&self, dir: &Path) -> io::Result<(Option<String>, String)> {
        let exe = dir.join("exe");
        let path = std::fs::read_link(&exe)?;
        let path = path.to_str().map(str::to_owned);
        let mut file = File::open(&exe)?;
        let meta = file.metadata()?;
        let key = ExeKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        if let Some(hash) = self.cached_hash(&key) {
            return Ok((path, hash));
        }
        let hash = sha256_hex(&mut file)?;
        let mut cache = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= HASH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, hash.clone());
        Ok((path, hash))
    }

    fn cached_hash(&self, key: &ExeKey) -> Option<String> {
        // A poisoned lock only means another attestation panicked while
        // inserting; the map itself is still a valid cache.
        let cache = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).cloned()
    }
}

// === /proc parsing ===

/// Reads a file under `/proc/<pid>`, mapping "no such file" to `ProcessGone`.
fn read_proc_file(path: &Path, pid: i32) -> Result<String, AttestError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => AttestError::ProcessGone { pid },
        // ESRCH: the process exited while the file was being read.
        _ if source.raw_os_error() == Some(3) => AttestError::ProcessGone { pid },
        _ => AttestError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

fn read_start_time(dir: &Path, pid: i32) -> Result<u64, AttestError> {
    let path = dir.join("stat");
    let stat = read_proc_file(&path, pid)?;
    parse_start_time(&stat).ok_or(AttestError::Malformed {
        path,
        reason: "no start time after the command name",
    })
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`. The second field, the
/// command name in parentheses, may itself hold spaces and parentheses, so
/// counting starts after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state); field 22 is 19 fields further.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The effective uid (second number) of the `Uid:` line of `/proc/<pid>/status`,
/// the uid SO_PEERCRED reports.
fn status_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The supplementary gids of the `Groups:` line (empty if the line is absent
/// or empty); `None` if it holds something other than numbers.
fn status_groups(status: &str) -> Option<Vec<u32>> {
    let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) else {
        return Some(Vec::new());
    };
    line.split_ascii_whitespace()
        .map(|g| g.parse().ok())
        .collect()
}

/// The first name whose third `:`-separated field is `id`, in the format
/// shared by `/etc/passwd` and `/etc/group`.
#[cfg(test)]
fn name_for_id(contents: &str, id: u32) -> Option<String> {
    name_table(contents).remove(&id)
}

/// Every `id -> name` of a passwd- or group-format file; the first line for
/// an id wins, as with getpwuid.
fn name_table(contents: &str) -> HashMap<u32, String> {
    let mut table = HashMap::new();
    for l in contents.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = l.split(':');
        let (Some(name), Some(_password), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let (false, Ok(id)) = (name.is_empty(), id.trim().parse::<u32>()) {
            table.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    table
}

fn sha256_hex(reader: &mut impl Read) -> io::Result<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_ids() -> (u32, u32) {
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
        let attestor = UnixAttestor::new();
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
        assert_eq!(attestor.hashes.lock().unwrap().len(), 1);
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

    #[test]
    fn stat_parser_counts_after_the_last_parenthesis() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        assert_eq!(
            parse_start_time(&format!("77 (a) b (c) {tail}")),
            Some(424242)
        );
        assert_eq!(parse_start_time(&format!("77 (sh) {tail}")), Some(424242));
        assert_eq!(parse_start_time(&format!("77 ()) ) {tail}")), Some(424242));
        assert_eq!(parse_start_time("77 (sh) S 1 2"), None);
        assert_eq!(parse_start_time("77 no parenthesis"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_start_time(&own).is_some());
    }

    #[test]
    fn status_and_name_parsers() {
        let status =
            "Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n";
        assert_eq!(status_effective_uid(status), Some(1001));
        assert_eq!(status_groups(status), Some(vec![4, 24, 27]));
        assert_eq!(status_groups("Groups:\n"), Some(vec![]));
        assert_eq!(status_groups("Groups:\t4 x\n"), None);

        let passwd =
            "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n";
        assert_eq!(name_for_id(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_for_id(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_for_id(passwd, 7), None);
        assert_eq!(
            name_for_id("docker:x:999:alice,bob\n", 999).as_deref(),
            Some("docker")
        );
    }
}

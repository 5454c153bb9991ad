//! The executable selectors: a caller's executable path and SHA-256, the
//! hash cached per version of the file so a large binary serving many
//! connections is read once.
//!
//! Any local user can make the agent hash an executable of its choice (it
//! only has to run it and connect), so the work is bounded: files above a
//! configured size get no hash, and one version of a file is hashed by one
//! thread at a time, the others waiting for its result instead of reading
//! the file again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fd::AsFd;
use rustix::fs::{AtFlags, Statx, StatxFlags};

/// Default for `unix_sha256_max_file_size`: larger executables get no
/// `unix:sha256` selector (hashing one costs a second of disk and CPU per
/// new version, and any local user can make the agent do it).
pub const DEFAULT_SHA256_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// How many executable hashes the cache keeps before it starts over.
const HASH_CACHE_LIMIT: usize = 4096;

/// How many too-large executables are remembered as already reported
/// before the set starts over (each is then reported once more).
const TOO_LARGE_LIMIT: usize = 256;

/// Identifies one version of an executable file: a file replaced or
/// rewritten in place gets another, so its hash is recomputed (and a
/// remembered attestation no longer answers, `super::memo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ExeVersion {
    dev_major: u32,
    dev_minor: u32,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
}

/// What [`ExeVersion`] is made of.
const VERSION_FIELDS: StatxFlags = StatxFlags::INO
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME);

impl ExeVersion {
    fn from_statx(s: &Statx) -> Self {
        ExeVersion {
            dev_major: s.stx_dev_major,
            dev_minor: s.stx_dev_minor,
            ino: s.stx_ino,
            size: s.stx_size,
            mtime: s.stx_mtime.tv_sec,
            mtime_nsec: s.stx_mtime.tv_nsec,
        }
    }

    /// The version of an open file (may ask a network filesystem's server).
    pub(super) fn of_file(file: &File) -> io::Result<Self> {
        let s = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, VERSION_FIELDS)?;
        Ok(Self::from_statx(&s))
    }

    /// The version of the executable of the process whose `/proc/<pid>` is
    /// `dir`, from the attributes the kernel holds (`AT_STATX_DONT_SYNC`):
    /// never waits on a filesystem, so it may run on an async worker.
    pub(super) fn of_process_cached(dir: impl AsFd) -> io::Result<Self> {
        let s = rustix::fs::statx(dir, "exe", AtFlags::STATX_DONT_SYNC, VERSION_FIELDS)?;
        Ok(Self::from_statx(&s))
    }
}

/// A caller's executable as the selectors see it.
#[derive(Debug)]
pub(super) struct ExeFacts {
    /// Its path, when valid UTF-8.
    pub(super) path: Option<String>,
    /// Its SHA-256 (lowercase hex), unless larger than the limit.
    pub(super) sha256: Option<String>,
    /// The version of the very file that was hashed.
    pub(super) version: ExeVersion,
}

/// SHA-256 (lowercase hex) of executables already hashed, and the ones
/// being hashed right now.
#[derive(Debug)]
pub(super) struct ExeHashes {
    hashes: Mutex<HashMap<ExeVersion, String>>,
    /// One lock per file version being hashed; whoever holds it hashes.
    in_flight: Mutex<HashMap<ExeVersion, Arc<Mutex<()>>>>,
    /// Executables above the limit already reported at WARN: a workload
    /// calling again (a large debug build does, every few seconds) is
    /// reported at DEBUG, so the log says once why it has no sha256.
    too_large: Mutex<HashSet<ExeVersion>>,
    max_size: u64,
    /// Files actually read, to show that concurrent callers share one read.
    #[cfg(test)]
    reads: std::sync::atomic::AtomicUsize,
}

impl ExeHashes {
    /// A cache that hashes files of at most `max_size` bytes.
    pub(super) fn new(max_size: u64) -> Self {
        ExeHashes {
            hashes: Mutex::default(),
            in_flight: Mutex::default(),
            too_large: Mutex::default(),
            max_size,
            #[cfg(test)]
            reads: Default::default(),
        }
    }

    /// The executable's path (when it is valid UTF-8), SHA-256 (unless
    /// the file is larger than the limit) and version, for the process
    /// whose `/proc` directory is `dir`. The hash is read through
    /// `/proc/<pid>/exe` itself, which reaches the file even inside another
    /// mount namespace.
    pub(super) fn exe_selectors(&self, dir: &Path) -> io::Result<ExeFacts> {
        let exe = dir.join("exe");
        let path = std::fs::read_link(&exe)?;
        let path = path.to_str().map(str::to_owned);
        let mut file = File::open(&exe)?;
        let version = ExeVersion::of_file(&file)?;
        if version.size > self.max_size {
            let exe = path.as_deref().unwrap_or("(not UTF-8)");
            let (size, max) = (version.size, self.max_size);
            let why = "executable larger than unix_sha256_max_file_size: no sha256 selector";
            if self.first_report_of(version) {
                tracing::warn!(exe, size, max, "{why} (reported once per executable)");
            } else {
                tracing::debug!(exe, size, max, "{why}");
            }
            return Ok(ExeFacts {
                path,
                sha256: None,
                version,
            });
        }
        let key = version;
        if let Some(hash) = self.cached(&key) {
            return Ok(ExeFacts {
                path,
                sha256: Some(hash),
                version,
            });
        }
        let turn = self.in_flight().entry(key).or_default().clone();
        let hash = {
            // A poisoned turn only means another hasher panicked; this one
            // simply hashes the file itself.
            let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
            match self.cached(&key) {
                Some(hash) => Ok(hash),
                None => {
                    #[cfg(test)]
                    self.reads
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sha256_hex(&mut file).inspect(|hash| self.insert(key, hash.clone()))
                }
            }
        };
        // The last one out removes the turn; a later version gets a new one.
        drop(turn);
        let mut in_flight = self.in_flight();
        if in_flight
            .get(&key)
            .is_some_and(|t| Arc::strong_count(t) == 1)
        {
            in_flight.remove(&key);
        }
        Ok(ExeFacts {
            path,
            sha256: Some(hash?),
            version,
        })
    }

    /// Whether this too-large version is seen for the first time (since
    /// the bounded set last started over).
    fn first_report_of(&self, version: ExeVersion) -> bool {
        // As for `lock`: a poisoned set is still a valid set.
        let mut seen = self.too_large.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= TOO_LARGE_LIMIT && !seen.contains(&version) {
            seen.clear();
        }
        seen.insert(version)
    }

    fn cached(&self, key: &ExeVersion) -> Option<String> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: ExeVersion, hash: String) {
        let mut cache = self.lock();
        if cache.len() >= HASH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, hash);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ExeVersion, String>> {
        // A poisoned lock only means another attestation panicked while
        // inserting; the map itself is still a valid cache.
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<ExeVersion, Arc<Mutex<()>>>> {
        // As for `lock`: entries are inserted and removed whole.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many hashes are cached.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
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

    #[test]
    fn sha256_of_a_stream_longer_than_the_buffer() {
        let data = vec![7u8; 200 * 1024];
        let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
        assert_eq!(sha256_hex(&mut &data[..]).unwrap(), expected);
    }

    #[test]
    fn an_executable_above_the_limit_gets_no_hash() {
        let me = Path::new("/proc/self");
        let size = std::fs::metadata("/proc/self/exe").unwrap().len();
        let facts = ExeHashes::new(size - 1).exe_selectors(me).unwrap();
        assert!(facts.path.is_some());
        assert_eq!(facts.sha256, None);
        let facts = ExeHashes::new(size).exe_selectors(me).unwrap();
        assert_eq!(facts.sha256.map(|h| h.len()), Some(64));
    }

    #[test]
    fn a_too_large_executable_is_reported_once_per_version() {
        let (_dir, exe) = crate::testing::temp_path("bin");
        std::fs::write(&exe, b"v1").unwrap();
        let hashes = ExeHashes::new(0);
        let v1 = ExeVersion::of_file(&File::open(&exe).unwrap()).unwrap();
        assert!(hashes.first_report_of(v1));
        assert!(
            !hashes.first_report_of(v1),
            "the same file again: not reported"
        );
        std::fs::write(&exe, b"v2 is longer").unwrap();
        let v2 = ExeVersion::of_file(&File::open(&exe).unwrap()).unwrap();
        assert!(hashes.first_report_of(v2), "a new version is reported");
        let me = Path::new("/proc/self");
        hashes.exe_selectors(me).unwrap();
        hashes.exe_selectors(me).unwrap();
        assert_eq!(hashes.too_large.lock().unwrap().len(), 3);
    }

    #[test]
    fn concurrent_callers_hash_a_file_once() {
        // A file the test controls, hashed through a fake /proc/<pid>/exe.
        let (dir, exe) = crate::testing::temp_path("bin");
        std::fs::write(&exe, vec![1u8; 8 * 1024 * 1024]).unwrap();
        let proc_dir = dir.path().join("proc");
        std::fs::create_dir(&proc_dir).unwrap();
        std::os::unix::fs::symlink(&exe, proc_dir.join("exe")).unwrap();
        let hashes = ExeHashes::new(u64::MAX);
        let results: Vec<_> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| hashes.exe_selectors(&proc_dir).unwrap().sha256))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1] && w[0].is_some()));
        assert_eq!(hashes.len(), 1);
        assert_eq!(hashes.reads.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(hashes.in_flight().is_empty(), "turns are removed");
    }
}

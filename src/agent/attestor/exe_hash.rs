//! The executable selectors: a caller's executable path and SHA-256, the
//! hash cached per version of the file so a large binary serving many
//! connections is read once.
//!
//! Any local user can make the agent hash an executable of its choice (it
//! only has to run it and connect), so the work is bounded: files above a
//! configured size get no hash, and one version of a file is hashed by one
//! thread at a time, the others waiting for its result instead of reading
//! the file again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Default for `unix_sha256_max_file_size`: larger executables get no
/// `unix:sha256` selector (hashing one costs a second of disk and CPU per
/// new version, and any local user can make the agent do it).
pub const DEFAULT_SHA256_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// How many executable hashes the cache keeps before it starts over.
const HASH_CACHE_LIMIT: usize = 4096;

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

/// SHA-256 (lowercase hex) of executables already hashed, and the ones
/// being hashed right now.
#[derive(Debug)]
pub(super) struct ExeHashes {
    hashes: Mutex<HashMap<ExeKey, String>>,
    /// One lock per file version being hashed; whoever holds it hashes.
    in_flight: Mutex<HashMap<ExeKey, Arc<Mutex<()>>>>,
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
            max_size,
            #[cfg(test)]
            reads: Default::default(),
        }
    }

    /// The executable's path (when it is valid UTF-8) and SHA-256 (unless
    /// the file is larger than the limit), for the process whose `/proc`
    /// directory is `dir`. The hash is read through `/proc/<pid>/exe`
    /// itself, which reaches the file even inside another mount namespace.
    pub(super) fn exe_selectors(&self, dir: &Path) -> io::Result<(Option<String>, Option<String>)> {
        let exe = dir.join("exe");
        let path = std::fs::read_link(&exe)?;
        let path = path.to_str().map(str::to_owned);
        let mut file = File::open(&exe)?;
        let meta = file.metadata()?;
        if meta.size() > self.max_size {
            tracing::warn!(
                exe = path.as_deref().unwrap_or("(not UTF-8)"),
                size = meta.size(),
                max = self.max_size,
                "executable larger than unix_sha256_max_file_size: no sha256 selector"
            );
            return Ok((path, None));
        }
        let key = ExeKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        if let Some(hash) = self.cached(&key) {
            return Ok((path, Some(hash)));
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
        Ok((path, Some(hash?)))
    }

    fn cached(&self, key: &ExeKey) -> Option<String> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: ExeKey, hash: String) {
        let mut cache = self.lock();
        if cache.len() >= HASH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, hash);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ExeKey, String>> {
        // A poisoned lock only means another attestation panicked while
        // inserting; the map itself is still a valid cache.
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<ExeKey, Arc<Mutex<()>>>> {
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
        let (path, hash) = ExeHashes::new(size - 1).exe_selectors(me).unwrap();
        assert!(path.is_some());
        assert_eq!(hash, None);
        let (_, hash) = ExeHashes::new(size).exe_selectors(me).unwrap();
        assert_eq!(hash.map(|h| h.len()), Some(64));
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
                .map(|_| s.spawn(|| hashes.exe_selectors(&proc_dir).unwrap().1))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1] && w[0].is_some()));
        assert_eq!(hashes.len(), 1);
        assert_eq!(hashes.reads.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(hashes.in_flight().is_empty(), "turns are removed");
    }
}

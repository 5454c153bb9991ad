//! The executable selectors: a caller's executable path and SHA-256, the
//! hash cached per version of the file so a large binary serving many
//! connections is read once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Mutex;

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

/// SHA-256 (lowercase hex) of executables already hashed.
#[derive(Debug, Default)]
pub(super) struct ExeHashes {
    hashes: Mutex<HashMap<ExeKey, String>>,
}

impl ExeHashes {
    /// The executable's path (when it is valid UTF-8) and SHA-256, for the
    /// process whose `/proc` directory is `dir`. The hash is read through
    /// `/proc/<pid>/exe` itself, which reaches the file even inside another
    /// mount namespace.
    pub(super) fn exe_selectors(&self, dir: &Path) -> io::Result<(Option<String>, String)> {
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
        if let Some(hash) = self.cached(&key) {
            return Ok((path, hash));
        }
        let hash = sha256_hex(&mut file)?;
        let mut cache = self.lock();
        if cache.len() >= HASH_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, hash.clone());
        Ok((path, hash))
    }

    fn cached(&self, key: &ExeKey) -> Option<String> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExeKey, String>> {
        // A poisoned lock only means another attestation panicked while
        // inserting; the map itself is still a valid cache.
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
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
}

//! Where private keys live: apart from the datastore, so that a copy of the
//! store (a backup, a PostgreSQL replica) never holds a signing key.
//!
//! Two implementations: [`MemoryKeyManager`] for tests and throwaway dev
//! servers, and [`DiskKeyManager`], one 0600 PKCS#8 PEM file per key in a
//! 0700 directory, written atomically (temp file, fsync, rename, fsync dir)
//! so a crash leaves either the old key or the new one, never half of one.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::keys::{KeyError, KeyPair, KeyType};
use crate::spiffe::id::is_path_segment;

/// Why the key manager could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum KeyManagerError {
    /// Key names become file names, so they are restricted.
    #[error(
        "invalid key name {0:?}: use 1-128 characters from [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidName(String),
    /// No key is stored under that name.
    #[error("no key named {0:?} in the key manager")]
    NotFound(String),
    /// The key file exists but does not hold a usable key.
    #[error("key file {path} is unusable: {source}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyError,
    },
    /// A key file is readable by others than its owner.
    #[error("key file {path} has mode {mode:o}; private keys must be 0600")]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Generating the key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The filesystem refused.
    #[error("key directory {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Stores and hands out named private keys.
pub trait KeyManager: Send + Sync {
    /// Generates a key of `key_type`, stores it durably under `name` (replacing
    /// any key of that name) and returns it.
    fn generate(&self, name: &str, key_type: KeyType) -> Result<Arc<KeyPair>, KeyManagerError>;
    /// Loads the key stored under `name`.
    fn get(&self, name: &str) -> Result<Arc<KeyPair>, KeyManagerError>;
    /// Removes the key stored under `name`; removing a missing key is not an error.
    fn delete(&self, name: &str) -> Result<(), KeyManagerError>;
}

fn check_name(name: &str) -> Result<(), KeyManagerError> {
    // No leading dot: a key file is never hidden, nor `.` or `..`.
    if name.len() <= 128 && !name.starts_with('.') && is_path_segment(name) {
        Ok(())
    } else {
        Err(KeyManagerError::InvalidName(name.to_string()))
    }
}

// === impl MemoryKeyManager ===

/// Keys held only in memory: they die with the process.
#[derive(Default)]
pub struct MemoryKeyManager {
    keys: Mutex<HashMap<String, Arc<KeyPair>>>,
}

impl KeyManager for MemoryKeyManager {
    fn generate(&self, name: &str, key_type: KeyType) -> Result<Arc<KeyPair>, KeyManagerError> {
        check_name(name)?;
        let key = Arc::new(KeyPair::generate(key_type)?);
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(name.to_string(), key.clone());
        Ok(key)
    }

    fn get(&self, name: &str) -> Result<Arc<KeyPair>, KeyManagerError> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(name)
            .cloned()
            .ok_or_else(|| KeyManagerError::NotFound(name.to_string()))
    }

    fn delete(&self, name: &str) -> Result<(), KeyManagerError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(name);
        Ok(())
    }
}

// === impl DiskKeyManager ===

/// One 0600 PEM file per key under a 0700 directory.
pub struct DiskKeyManager {
    dir: PathBuf,
}

impl DiskKeyManager {
    /// Opens (creating with mode 0700 if needed) the key directory.
    pub fn open(dir: &Path) -> Result<Self, KeyManagerError> {
        let io = |source| KeyManagerError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(DiskKeyManager {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn write_atomically(&self, path: &Path, contents: &[u8]) -> Result<(), KeyManagerError> {
        crate::fsutil::write_atomic(path, contents, 0o600).map_err(|source| KeyManagerError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl KeyManager for DiskKeyManager {
    fn generate(&self, name: &str, key_type: KeyType) -> Result<Arc<KeyPair>, KeyManagerError> {
        check_name(name)?;
        let key = KeyPair::generate(key_type)?;
        self.write_atomically(&self.path(name), key.to_pkcs8_pem().as_bytes())?;
        Ok(Arc::new(key))
    }

    fn get(&self, name: &str) -> Result<Arc<KeyPair>, KeyManagerError> {
        check_name(name)?;
        let path = self.path(name);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyManagerError::NotFound(name.to_string()))
            }
            Err(source) => return Err(KeyManagerError::Io { path, source }),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyManagerError::LoosePermissions { path, mode });
        }
        let pem = fs::read_to_string(&path).map_err(|source| KeyManagerError::Io {
            path: path.clone(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|source| KeyManagerError::BadKeyFile {
            path: path.clone(),
            source,
        })?;
        Ok(Arc::new(key))
    }

    fn delete(&self, name: &str) -> Result<(), KeyManagerError> {
        check_name(name)?;
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyManagerError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_keys_are_0600_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let km = DiskKeyManager::open(&dir.path().join("keys")).unwrap();
        let k = km.generate("x509-ca-1", KeyType::EcP256).unwrap();
        let path = dir.path().join("keys/x509-ca-1.key");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(dir.path().join("keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let km2 = DiskKeyManager::open(&dir.path().join("keys")).unwrap();
        assert_eq!(
            km2.get("x509-ca-1").unwrap().public_key_spki(),
            k.public_key_spki()
        );
        km2.delete("x509-ca-1").unwrap();
        assert!(matches!(
            km2.get("x509-ca-1"),
            Err(KeyManagerError::NotFound(_))
        ));
    }

    #[test]
    fn rejects_traversal_loose_modes_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let km = DiskKeyManager::open(dir.path()).unwrap();
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(matches!(
                km.generate(bad, KeyType::EcP256),
                Err(KeyManagerError::InvalidName(_))
            ));
        }
        km.generate("k", KeyType::EcP256).unwrap();
        fs::set_permissions(dir.path().join("k.key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            km.get("k"),
            Err(KeyManagerError::LoosePermissions { .. })
        ));
        fs::write(dir.path().join("g.key"), "garbage").unwrap();
        fs::set_permissions(dir.path().join("g.key"), fs::Permissions::from_mode(0o600)).unwrap();
        let err = km.get("g").unwrap_err();
        assert!(matches!(err, KeyManagerError::BadKeyFile { .. }), "{err}");
    }

    #[test]
    fn memory_keys() {
        let km = MemoryKeyManager::default();
        let k = km.generate("a", KeyType::EcP384).unwrap();
        assert_eq!(km.get("a").unwrap().public_key_spki(), k.public_key_spki());
        km.delete("a").unwrap();
        assert!(km.get("a").is_err());
    }
}

//! The agent's own state on disk, so a restart needs no new join token:
//! its SVID chain (`agent_svid.pem`), its key (`agent_svid.key`, 0600) and
//! the last trust bundle it received (`bundle.json`, SPIFFE bundle JSON).
//! Files are replaced atomically (temp file, fsync, rename).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::connector::AgentCredential;
use crate::ca::keys::{der_to_pem, pem_blocks};
use crate::ca::KeyPair;
use crate::spiffe::{Bundle, TrustDomain};

/// Why the agent's data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialStoreError {
    /// The filesystem refused.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but is unusable.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
        /// The parser's complaint, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The agent's data directory.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// Opens (creating, 0700) the directory.
    pub fn open(dir: &Path) -> Result<Self, CredentialStoreError> {
        let io = |source| CredentialStoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(CredentialStore {
            dir: dir.to_path_buf(),
        })
    }

    fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), CredentialStoreError> {
        let path = self.dir.join(name);
        crate::fsutil::write_atomic(&path, contents, mode)
            .map_err(|source| CredentialStoreError::Io { path, source })
    }

    fn corrupt(
        &self,
        name: &str,
        reason: &'static str,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CredentialStoreError {
        CredentialStoreError::Corrupt {
            path: self.dir.join(name),
            reason,
            source,
        }
    }

    fn read(&self, name: &str) -> Result<Option<String>, CredentialStoreError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CredentialStoreError::Io { path, source }),
        }
    }

    /// Saves the agent credential (key first: a chain without its key is useless).
    pub fn save_credential(&self, cred: &AgentCredential) -> Result<(), CredentialStoreError> {
        self.write("agent_svid.key", cred.key.to_pkcs8_pem().as_bytes(), 0o600)?;
        let pem: String = cred
            .chain
            .iter()
            .map(|c| der_to_pem(c, "CERTIFICATE"))
            .collect();
        self.write("agent_svid.pem", pem.as_bytes(), 0o644)
    }

    /// Loads the saved credential, if any.
    pub fn load_credential(&self) -> Result<Option<AgentCredential>, CredentialStoreError> {
        let (Some(pem), Some(key_pem)) =
            (self.read("agent_svid.pem")?, self.read("agent_svid.key")?)
        else {
            return Ok(None);
        };
        let svid = "agent_svid.pem";
        let chain = pem_blocks(&pem, "CERTIFICATE")
            .map_err(|e| self.corrupt(svid, "is not PEM", Some(e.into())))?;
        let leaf = chain
            .first()
            .ok_or_else(|| self.corrupt(svid, "holds no certificate", None))?;
        let spiffe_id = crate::tls::spiffe_id_of(leaf)
            .map_err(|e| self.corrupt(svid, "has no SPIFFE ID", Some(e.into())))?;
        let facts = crate::ca::x509::cert_facts(leaf)
            .map_err(|e| self.corrupt(svid, "is not a certificate", Some(e.into())))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| self.corrupt("agent_svid.key", "is not a key", Some(e.into())))?;
        if key.public_key_spki() != facts.public_key_spki {
            return Err(self.corrupt("agent_svid.key", "does not match agent_svid.pem", None));
        }
        Ok(Some(AgentCredential {
            spiffe_id,
            chain,
            key: Arc::new(key),
            not_after: facts.not_after,
        }))
    }

    /// Forgets the credential (after the server says the agent was evicted).
    pub fn clear_credential(&self) -> Result<(), CredentialStoreError> {
        for name in ["agent_svid.pem", "agent_svid.key"] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CredentialStoreError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Saves the latest trust bundle.
    pub fn save_bundle(&self, bundle: &Bundle) -> Result<(), CredentialStoreError> {
        let json = bundle
            .to_spiffe_json()
            .map_err(|e| self.corrupt("bundle.json", "cannot be encoded", Some(e.into())))?;
        self.write("bundle.json", json.as_bytes(), 0o644)
    }

    /// Loads the saved trust bundle, if any.
    pub fn load_bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, CredentialStoreError> {
        let Some(json) = self.read("bundle.json")? else {
            return Ok(None);
        };
        Bundle::from_spiffe_json(td.clone(), json.as_bytes())
            .map(Some)
            .map_err(|e| self.corrupt("bundle.json", "is not a SPIFFE bundle", Some(e.into())))
    }
}

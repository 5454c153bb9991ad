//! A server data directory opened for local commands (`--data-dir`): the
//! sled store under `store/` and the 0600 key files under `keys/`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::CliError;
use crate::ca::DiskKeyManager;
use crate::server::authorities::{Authorities, CaSettings};
use crate::spiffe::TrustDomain;
use crate::store::{AuthorityKind, DataStore, SledStore};

/// The store and key manager of one data directory.
pub(super) struct DataDir {
    pub(super) store: SledStore,
    pub(super) keys: DiskKeyManager,
    dir: std::path::PathBuf,
}

impl DataDir {
    /// Opens (creating, mode 0700) the data directory.
    pub(super) fn open(dir: &Path) -> Result<Self, CliError> {
        let fail = |e: &dyn std::error::Error| {
            CliError::failed_in(format_args!("data directory {}", dir.display()), e)
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(&e))?;
        let store = SledStore::open(&dir.join("store")).map_err(|e| fail(&e))?;
        let keys = DiskKeyManager::open(&dir.join("keys")).map_err(|e| fail(&e))?;
        Ok(DataDir {
            store,
            keys,
            dir: dir.to_path_buf(),
        })
    }

    /// Loads (or, in a new directory, creates) the authorities of `td`.
    pub(super) fn authorities(
        &self,
        td: &TrustDomain,
        mut settings: CaSettings,
    ) -> Result<Authorities, CliError> {
        // The authorities of the server that owns this directory.
        settings.server_id = crate::server::server_id::load_or_create(&self.dir).map_err(|e| {
            CliError::failed_in(format_args!("data directory {}", self.dir.display()), &e)
        })?;
        Authorities::load_or_create(
            &self.store,
            &self.keys,
            td,
            settings,
            crate::clock::now_unix(),
        )
        .map_err(|e| CliError::failed(&e))
    }

    /// The trust domain whose CA this directory holds, if it holds one.
    pub(super) fn own_trust_domain(&self) -> Result<Option<TrustDomain>, CliError> {
        let records = self
            .store
            .list_authorities()
            .map_err(|e| CliError::failed(&e))?;
        for rec in records
            .iter()
            .rev()
            .filter(|r| r.kind == AuthorityKind::X509)
        {
            let Some(cert) = &rec.cert_der else { continue };
            let facts = crate::ca::x509::cert_facts(cert).map_err(|e| {
                CliError::failed_in(format_args!("CA journal record {}", rec.id), &e)
            })?;
            if let Some(td) = facts
                .uri_sans
                .iter()
                .find_map(|u| TrustDomain::parse(u).ok())
            {
                return Ok(Some(td));
            }
        }
        Ok(None)
    }
}

//! The embedded backend: one sled database in the server's data directory.
//!
//! Layout (one sled tree each; values are JSON unless noted):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `schema_version` | decimal ASCII |
//! | `entries` | entry id | `RegistrationEntry` |
//! | `entries_by_parent` | `parent\0id` | empty |
//! | `entries_by_selector` | `kind:value\0id` | empty |
//! | `entries_similar` | `spiffe_id\0parent_id\0sel\0sel…` (sorted, deduplicated) | entry id |
//! | `agents` | agent SPIFFE ID | `AttestedAgent` |
//! | `join_tokens` | token | `JoinToken` |
//! | `bundles` | trust domain name | SPIFFE bundle JSON plus JWT key expiries |
//! | `federation_relationships` | trust domain name | `FederationRelationship` |
//! | `authorities` | record id | `AuthorityRecord` |
//! | `issuance_groups` | serial but its last hex digit (see `issuance_log`) | the group's `IssuanceRecord`s, a JSON array |
//! | `issuances` | serial | `IssuanceRecord`: the log before groups, emptied into `issuance_groups` on open |
//! | `issuances_by_expiry` | `not_after` (order-preserving 8 bytes) + serial | the serials expiring then, written together, `\n`-separated (empty: the key's serial) |
//!
//! SPIFFE IDs, ids and selectors never contain NUL, so `\0` separates the
//! parts of index keys unambiguously and a prefix scan on `parent\0` finds
//! exactly that parent's rows.

mod agents;
mod bundles;
mod codec;
mod entries;
mod entry_queries;
mod group_commit;
mod issuance_log;
mod journal;

use std::path::Path;

use sled::Tree;

use codec::{delete_json, get_json, list_json, page_json};

use super::{
    AttestedAgent, AuthorityRecord, DataStore, EntryFilter, FederationRelationship, IssuanceRecord,
    JoinToken, Page, PageRequest, RegistrationEntry, Selector, StoreError, SCHEMA_VERSION,
};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

const META: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema_version";
const ENTRIES: &str = "entries";
const ENTRIES_BY_PARENT: &str = "entries_by_parent";
const ENTRIES_BY_SELECTOR: &str = "entries_by_selector";
const ENTRIES_SIMILAR: &str = "entries_similar";
const AGENTS: &str = "agents";
const JOIN_TOKENS: &str = "join_tokens";
const BUNDLES: &str = "bundles";
const FEDERATION: &str = "federation_relationships";
const AUTHORITIES: &str = "authorities";
const ISSUANCES: &str = "issuances";
const ISSUANCE_GROUPS: &str = "issuance_groups";
const ISSUANCES_BY_EXPIRY: &str = "issuances_by_expiry";

/// The embedded datastore. Cheap to share behind an `Arc`; sled handles
/// concurrency internally.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file. sled 0.34's flush ends in `sync_file_range` on
    /// Linux, which neither flushes the device's write cache nor the file's
    /// metadata (its size grows as segments are appended), so a power loss
    /// could lose a flushed write. We finish every flush with `fdatasync`.
    /// (Values too large for a log segment go to sled's `blobs/` files,
    /// which this does not cover; Herald's records are far below that size.)
    log_file: std::fs::File,
    /// Concurrent writers share their flushes.
    group: group_commit::GroupCommit,
    entries: Tree,
    entries_by_parent: Tree,
    entries_by_selector: Tree,
    entries_similar: Tree,
    agents: Tree,
    join_tokens: Tree,
    bundles: Tree,
    federation: Tree,
    authorities: Tree,
    issuances: Tree,
    issuance_groups: Tree,
    issuances_by_expiry: Tree,
}

impl SledStore {
    /// Opens (or creates, mode 0700) the datastore in `path`. A new directory
    /// is stamped with [`SCHEMA_VERSION`] before anything else is written;
    /// an existing one is refused if stamped with another version, so that a
    /// different Herald release never misreads our records.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_dir(path)?;
        let db = sled::open(path).map_err(StoreError::sled("open the database"))?;
        let meta = open_tree(&db, META)?;
        match meta
            .get(SCHEMA_KEY)
            .map_err(StoreError::sled("read the schema version"))?
        {
            Some(raw) => check_schema_version(&raw)?,
            None => {
                // A directory with records but no stamp was not written by
                // us (or lost its meta tree): refuse rather than guess.
                let foreign = db.tree_names().iter().any(|name| {
                    name.as_ref() != META.as_bytes() && name.as_ref() != b"__sled__default"
                });
                if foreign {
                    return Err(StoreError::Corrupt {
                        tree: META,
                        key: "schema_version".into(),
                        reason: "missing, although the data directory already holds trees".into(),
                    });
                }
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())
                    .map_err(StoreError::sled("write the schema version"))?;
                db.flush()
                    .map_err(StoreError::sled("flush the schema version"))?;
            }
        }
        let log_path = path.join("db");
        let log_file = std::fs::File::open(&log_path).map_err(|source| StoreError::Io {
            op: "open the log file for fdatasync",
            path: log_path.clone(),
            source,
        })?;
        // The directory entries of a new store must be durable too.
        std::fs::File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                op: "fsync the data directory",
                path: path.to_path_buf(),
                source,
            })?;
        let store = SledStore {
            log_file,
            group: group_commit::GroupCommit::default(),
            entries: open_tree(&db, ENTRIES)?,
            entries_by_parent: open_tree(&db, ENTRIES_BY_PARENT)?,
            entries_by_selector: open_tree(&db, ENTRIES_BY_SELECTOR)?,
            entries_similar: open_tree(&db, ENTRIES_SIMILAR)?,
            agents: open_tree(&db, AGENTS)?,
            join_tokens: open_tree(&db, JOIN_TOKENS)?,
            bundles: open_tree(&db, BUNDLES)?,
            federation: open_tree(&db, FEDERATION)?,
            authorities: open_tree(&db, AUTHORITIES)?,
            issuances: open_tree(&db, ISSUANCES)?,
            issuance_groups: open_tree(&db, ISSUANCE_GROUPS)?,
            issuances_by_expiry: open_tree(&db, ISSUANCES_BY_EXPIRY)?,
            db,
        };
        store.upgrade_issuance_log()?;
        Ok(store)
    }

    /// Makes every write so far durable; the last step of every write
    /// path. Writers finishing together share one flush (group commit).
    fn flush(&self, op: &'static str) -> Result<(), StoreError> {
        self.group.commit(|| {
            self.db.flush().map_err(StoreError::sled(op))?;
            self.log_file.sync_data().map_err(|source| StoreError::Io {
                op,
                path: std::path::PathBuf::from("db"),
                source,
            })
        })
    }
}

fn open_tree(db: &sled::Db, name: &'static str) -> Result<Tree, StoreError> {
    db.open_tree(name).map_err(StoreError::sled("open a tree"))
}

fn check_schema_version(raw: &[u8]) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        tree: META,
        key: "schema_version".into(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
    let found: u32 = text
        .parse()
        .map_err(|e| corrupt(format!("{text:?} is not a version number: {e}")))?;
    if found != SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchemaVersion {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StoreError::Io {
            op: "create",
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })
}

// === impl DataStore ===

impl DataStore for SledStore {
    fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        self.create_entries_impl(entries)
    }

    fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        self.update_entry_impl(entry)
    }

    fn delete_entries(
        &self,
        ids: &[String],
    ) -> Result<Vec<Result<RegistrationEntry, StoreError>>, StoreError> {
        self.delete_entries_impl(ids)
    }

    fn prune_expired_entries(&self, now: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.prune_expired_entries_impl(now)
    }

    fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        get_json(&self.entries, ENTRIES, id.as_bytes())
    }

    fn list_entries(
        &self,
        filter: &EntryFilter,
        page: &PageRequest,
    ) -> Result<Page<RegistrationEntry>, StoreError> {
        self.list_entries_impl(filter, page)
    }

    fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_by_index(&self.entries_by_parent, parent.as_str(), |e| {
            &e.parent_id == parent
        })
    }

    fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_by_index(&self.entries_by_selector, &selector.to_string(), |e| {
            e.selectors.contains(selector)
        })
    }

    fn count_entries(&self) -> Result<u64, StoreError> {
        Ok(self.entries.len() as u64)
    }

    fn attest_agent(&self, agent: &AttestedAgent) -> Result<(), StoreError> {
        self.attest_agent_impl(agent)
    }

    fn update_agent(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError> {
        self.update_agent_impl(id, change)
    }

    fn get_agent(&self, id: &SpiffeId) -> Result<Option<AttestedAgent>, StoreError> {
        get_json(&self.agents, AGENTS, id.as_str().as_bytes())
    }

    fn list_agents(&self, page: &PageRequest) -> Result<Page<AttestedAgent>, StoreError> {
        page_json(&self.agents, AGENTS, page)
    }

    fn delete_agent(&self, id: &SpiffeId) -> Result<AttestedAgent, StoreError> {
        let _span = tracing::debug_span!("store.delete_agent", agent_id = id.as_str()).entered();
        delete_json(
            self,
            &self.agents,
            AGENTS,
            "agent",
            id.as_str().as_bytes(),
            id.as_str(),
        )
    }

    fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        self.create_join_token_impl(token)
    }

    fn consume_join_token(&self, token: &str, now: i64) -> Result<JoinToken, StoreError> {
        self.consume_join_token_impl(token, now)
    }

    fn prune_join_tokens(&self, now: i64) -> Result<usize, StoreError> {
        self.prune_join_tokens_impl(now)
    }

    fn set_bundle(&self, bundle: &Bundle) -> Result<(), StoreError> {
        self.set_bundle_impl(bundle)
    }

    fn swap_bundle(&self, bundle: &Bundle, expected: u64) -> Result<bool, StoreError> {
        self.swap_bundle_impl(bundle, expected)
    }

    fn get_bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        self.get_bundle_impl(td)
    }

    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        self.list_bundles_impl()
    }

    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        self.delete_bundle_impl(td)
    }

    fn put_federation_relationship(&self, rel: &FederationRelationship) -> Result<(), StoreError> {
        self.put_federation_relationship_impl(rel)
    }

    fn get_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<FederationRelationship>, StoreError> {
        get_json(&self.federation, FEDERATION, td.name().as_bytes())
    }

    fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, StoreError> {
        list_json(&self.federation, FEDERATION)
    }

    fn delete_federation_relationship(
        &self,
        td: &TrustDomain,
    ) -> Result<FederationRelationship, StoreError> {
        let _span = tracing::debug_span!(
            "store.delete_federation_relationship",
            trust_domain = td.name()
        )
        .entered();
        delete_json(
            self,
            &self.federation,
            FEDERATION,
            "federation relationship",
            td.name().as_bytes(),
            td.name(),
        )
    }

    fn put_authority(&self, record: &AuthorityRecord) -> Result<(), StoreError> {
        self.put_authority_impl(record)
    }

    fn list_authorities(&self) -> Result<Vec<AuthorityRecord>, StoreError> {
        let mut records: Vec<AuthorityRecord> = list_json(&self.authorities, AUTHORITIES)?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    fn delete_authority(&self, id: &str) -> Result<AuthorityRecord, StoreError> {
        let _span = tracing::debug_span!("store.delete_authority", authority_id = id).entered();
        delete_json(
            self,
            &self.authorities,
            AUTHORITIES,
            "authority",
            id.as_bytes(),
            id,
        )
    }

    fn append_issuances(&self, records: &[IssuanceRecord]) -> Result<(), StoreError> {
        self.append_issuances_impl(records)
    }

    fn get_issuance(&self, serial: &str) -> Result<Option<IssuanceRecord>, StoreError> {
        self.get_issuance_impl(&serial.to_ascii_lowercase())
    }

    fn count_issuances(&self) -> Result<u64, StoreError> {
        self.count_issuances_impl()
    }

    fn prune_issuances(&self, before: i64) -> Result<usize, StoreError> {
        self.prune_issuances_impl(before)
    }
}

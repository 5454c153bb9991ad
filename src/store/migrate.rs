//! `herald store migrate`: copies one server's sled store, offline, into an
//! empty PostgreSQL database, record family by record family, keeping every
//! field (entry revisions included).

use super::postgres::PostgresStore;
use super::{DataStore, EntryFilter, PageRequest, SledStore, StoreError, MAX_PAGE_SIZE};

/// How many records of each family were copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationCounts {
    /// Registration entries.
    pub entries: usize,
    /// Attested agents.
    pub agents: usize,
    /// Unused join tokens.
    pub join_tokens: usize,
    /// Bundles, own and federated.
    pub bundles: usize,
    /// Federation relationships.
    pub federation_relationships: usize,
    /// CA journal records.
    pub authorities: usize,
    /// Issuance log records.
    pub issuances: usize,
}

/// Why a migration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target already holds records; nothing was written.
    #[error("the target database is not empty; migrate only into a new, empty database")]
    TargetNotEmpty,
    /// Reading the source or writing the target failed, in `family`. The
    /// target may hold part of the copy: drop and recreate it, then retry.
    #[error("copying {family}: {source}")]
    Copy {
        /// The record family being copied.
        family: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// Copies every record of `from` into `to`, which must be empty.
pub fn sled_to_postgres(
    from: &SledStore,
    to: &PostgresStore,
) -> Result<MigrationCounts, MigrateError> {
    let fail = |family: &'static str| move |source| MigrateError::Copy { family, source };
    if !to.is_empty().map_err(fail("the target database"))? {
        return Err(MigrateError::TargetNotEmpty);
    }
    let mut n = MigrationCounts::default();

    let mut page = PageRequest {
        size: MAX_PAGE_SIZE,
        token: None,
    };
    loop {
        let got = from
            .list_entries(&EntryFilter::default(), &page)
            .map_err(fail("registration entries"))?;
        to.import_entries(&got.items)
            .map_err(fail("registration entries"))?;
        n.entries += got.items.len();
        match got.next_token {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    let mut page = PageRequest {
        size: MAX_PAGE_SIZE,
        token: None,
    };
    loop {
        let got = from.list_agents(&page).map_err(fail("agents"))?;
        for agent in &got.items {
            to.attest_agent(agent).map_err(fail("agents"))?;
        }
        n.agents += got.items.len();
        match got.next_token {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    for token in from.export_join_tokens().map_err(fail("join tokens"))? {
        to.create_join_token(token).map_err(fail("join tokens"))?;
        n.join_tokens += 1;
    }
    for bundle in from.list_bundles().map_err(fail("bundles"))? {
        to.set_bundle(&bundle).map_err(fail("bundles"))?;
        n.bundles += 1;
    }
    for rel in from
        .list_federation_relationships()
        .map_err(fail("federation relationships"))?
    {
        to.put_federation_relationship(&rel)
            .map_err(fail("federation relationships"))?;
        n.federation_relationships += 1;
    }
    for rec in from.list_authorities().map_err(fail("the CA journal"))? {
        to.put_authority(&rec).map_err(fail("the CA journal"))?;
        n.authorities += 1;
    }
    let issuances = from.export_issuances().map_err(fail("the issuance log"))?;
    for chunk in issuances.chunks(MAX_PAGE_SIZE) {
        to.append_issuances(chunk)
            .map_err(fail("the issuance log"))?;
    }
    n.issuances = issuances.len();
    Ok(n)
}

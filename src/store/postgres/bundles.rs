//! Trust bundles, own and federated, keyed by trust domain name and kept in
//! their [`StoredBundle`] form (re-validated on every read).

use tokio_postgres::types::Json;

use super::codec::{column, record};
use super::PostgresStore;
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::common::set_bundle_span;
use crate::store::stored_bundle::{trust_domain_of, StoredBundle};
use crate::store::StoreError;

const TABLE: &str = "bundles";

fn decode(row: &tokio_postgres::Row) -> Result<Bundle, StoreError> {
    let name: String = column(row, 0, TABLE)?;
    let td = trust_domain_of(TABLE, name.as_bytes())?;
    let stored: StoredBundle = record(row, 1, TABLE, &name)?;
    stored.into_bundle(td, TABLE)
}

impl PostgresStore {
    pub(super) async fn set_bundle_impl(&self, bundle: &Bundle) -> Result<(), StoreError> {
        const OP: &str = "write a bundle";
        let td = bundle.trust_domain.name();
        let _span = set_bundle_span(bundle);
        let stored = StoredBundle::from_bundle(bundle)?;
        let sequence = i64::try_from(bundle.sequence).unwrap_or(i64::MAX);
        let client = self.client(OP).await?;
        client
            .execute(
                "INSERT INTO bundles (trust_domain, sequence, record) VALUES ($1, $2, $3)
                 ON CONFLICT (trust_domain) DO UPDATE
                 SET sequence = excluded.sequence, record = excluded.record",
                &[&td, &sequence, &Json(&stored)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        Ok(())
    }

    /// The compare-and-swap of [`crate::store::DataStore::swap_bundle`]:
    /// an insert that a primary key makes create-only, or an update whose
    /// `WHERE sequence = expected` PostgreSQL re-checks on the latest row
    /// version after waiting for a concurrent writer, so of two racing
    /// swaps from the same sequence exactly one succeeds.
    pub(super) async fn swap_bundle_impl(
        &self,
        bundle: &Bundle,
        expected: u64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "swap a bundle";
        let td = bundle.trust_domain.name();
        let _span = set_bundle_span(bundle);
        let stored = StoredBundle::from_bundle(bundle)?;
        let sequence = i64::try_from(bundle.sequence).unwrap_or(i64::MAX);
        let expected = i64::try_from(expected).unwrap_or(i64::MAX);
        let client = self.client(OP).await?;
        let written = if expected == 0 {
            client
                .execute(
                    "INSERT INTO bundles (trust_domain, sequence, record) VALUES ($1, $2, $3)
                     ON CONFLICT (trust_domain) DO NOTHING",
                    &[&td, &sequence, &Json(&stored)],
                )
                .await
        } else {
            client
                .execute(
                    "UPDATE bundles SET sequence = $2, record = $3
                     WHERE trust_domain = $1 AND sequence = $4",
                    &[&td, &sequence, &Json(&stored), &expected],
                )
                .await
        }
        .map_err(StoreError::pg(OP))?;
        Ok(written == 1)
    }

    pub(super) async fn get_bundle_impl(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<Bundle>, StoreError> {
        const OP: &str = "read a bundle";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "SELECT trust_domain, record FROM bundles WHERE trust_domain = $1",
                &[&td.name()],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        row.as_ref().map(decode).transpose()
    }

    pub(super) async fn list_bundles_impl(&self) -> Result<Vec<Bundle>, StoreError> {
        const OP: &str = "list bundles";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT trust_domain, record FROM bundles ORDER BY trust_domain",
                &[],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        rows.iter().map(decode).collect()
    }

    pub(super) async fn delete_bundle_impl(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        const OP: &str = "delete a bundle";
        let _span = tracing::debug_span!("store.delete_bundle", trust_domain = td.name()).entered();
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "DELETE FROM bundles WHERE trust_domain = $1 RETURNING trust_domain, record",
                &[&td.name()],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "bundle",
                id: td.name().to_owned(),
            })?;
        decode(&row)
    }
}

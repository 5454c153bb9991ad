//! Federation relationships, keyed by the foreign trust domain's name.

use tokio_postgres::types::Json;

use super::codec::{column, record};
use super::PostgresStore;
use crate::spiffe::TrustDomain;
use crate::store::common::check_relationship;
use crate::store::{FederationRelationship, StoreError};

const TABLE: &str = "federation_relationships";
const KIND: &str = "federation relationship";

fn decode(row: &tokio_postgres::Row) -> Result<FederationRelationship, StoreError> {
    let name: String = column(row, 0, TABLE)?;
    record(row, 1, TABLE, &name)
}

impl PostgresStore {
    pub(super) async fn put_federation_relationship_impl(
        &self,
        rel: &FederationRelationship,
    ) -> Result<(), StoreError> {
        const OP: &str = "write a federation relationship";
        let td = rel.trust_domain.name();
        let _span =
            tracing::debug_span!("store.put_federation_relationship", trust_domain = td).entered();
        check_relationship(rel)?;
        let client = self.client(OP).await?;
        client
            .execute(
                "INSERT INTO federation_relationships (trust_domain, record) VALUES ($1, $2)
                 ON CONFLICT (trust_domain) DO UPDATE SET record = excluded.record",
                &[&td, &Json(rel)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        Ok(())
    }

    pub(super) async fn get_federation_relationship_impl(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<FederationRelationship>, StoreError> {
        const OP: &str = "read a federation relationship";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "SELECT trust_domain, record FROM federation_relationships WHERE trust_domain = $1",
                &[&td.name()],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        row.as_ref().map(decode).transpose()
    }

    pub(super) async fn list_federation_relationships_impl(
        &self,
    ) -> Result<Vec<FederationRelationship>, StoreError> {
        const OP: &str = "list federation relationships";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT trust_domain, record FROM federation_relationships ORDER BY trust_domain",
                &[],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        rows.iter().map(decode).collect()
    }

    pub(super) async fn delete_federation_relationship_impl(
        &self,
        td: &TrustDomain,
    ) -> Result<FederationRelationship, StoreError> {
        const OP: &str = "delete a federation relationship";
        let _span = tracing::debug_span!(
            "store.delete_federation_relationship",
            trust_domain = td.name()
        )
        .entered();
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "DELETE FROM federation_relationships WHERE trust_domain = $1
                 RETURNING trust_domain, record",
                &[&td.name()],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| StoreError::NotFound {
                kind: KIND,
                id: td.name().to_owned(),
            })?;
        decode(&row)
    }
}

//! Attested agents. Attestation is an insert that a primary key makes
//! create-only; a change is a compare-and-swap done under the row's lock
//! (`SELECT … FOR UPDATE`), so a concurrent change, on this server or
//! another, waits instead of being overwritten.

use tokio_postgres::types::Json;

use super::codec::{column, into_page, limit_plus_one, record};
use super::PostgresStore;
use crate::spiffe::SpiffeId;
use crate::store::common::{agent_not_found, check_agent_change, page_size};
use crate::store::{AttestedAgent, Page, PageRequest, StoreError};

const TABLE: &str = "agents";

impl PostgresStore {
    pub(super) async fn attest_agent_impl(&self, agent: &AttestedAgent) -> Result<(), StoreError> {
        const OP: &str = "attest an agent";
        let id = agent.spiffe_id.as_str();
        let _span = tracing::debug_span!("store.attest_agent", agent_id = id).entered();
        let client = self.client(OP).await?;
        let inserted = client
            .execute(
                "INSERT INTO agents (spiffe_id, banned, record) VALUES ($1, $2, $3)
                 ON CONFLICT (spiffe_id) DO NOTHING",
                &[&id, &agent.banned, &Json(agent)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        if inserted == 1 {
            return Ok(());
        }
        // The ID has a record: banned or live, it is not taken over.
        let banned = client
            .query_opt("SELECT banned FROM agents WHERE spiffe_id = $1", &[&id])
            .await
            .map_err(StoreError::pg(OP))?;
        match banned {
            Some(row) if column::<bool>(&row, 0, TABLE)? => {
                Err(StoreError::AgentBanned { id: id.to_owned() })
            }
            _ => Err(StoreError::AlreadyExists {
                kind: "agent",
                id: id.to_owned(),
            }),
        }
    }

    pub(super) async fn update_agent_impl(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError> {
        const OP: &str = "update an agent";
        let _span = tracing::debug_span!("store.update_agent", agent_id = id.as_str()).entered();
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(StoreError::pg(OP))?;
        // The row lock makes this read-modify-write a compare-and-swap that
        // never has to retry: nobody changes the row until we commit.
        let row = tx
            .query_opt(
                "SELECT record FROM agents WHERE spiffe_id = $1 FOR UPDATE",
                &[&id.as_str()],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| agent_not_found(id))?;
        let current: AttestedAgent = record(&row, 0, TABLE, id.as_str())?;
        let next = change(&current)?;
        check_agent_change(&current, &next)?;
        tx.execute(
            "UPDATE agents SET banned = $2, record = $3 WHERE spiffe_id = $1",
            &[&id.as_str(), &next.banned, &Json(&next)],
        )
        .await
        .map_err(StoreError::pg(OP))?;
        tx.commit().await.map_err(StoreError::pg(OP))?;
        Ok(next)
    }

    pub(super) async fn get_agent_impl(
        &self,
        id: &SpiffeId,
    ) -> Result<Option<AttestedAgent>, StoreError> {
        const OP: &str = "read an agent";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached("SELECT record FROM agents WHERE spiffe_id = $1")
            .await
            .map_err(StoreError::pg(OP))?;
        let row = client
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(StoreError::pg(OP))?;
        row.map(|row| record(&row, 0, TABLE, id.as_str()))
            .transpose()
    }

    pub(super) async fn list_agents_impl(
        &self,
        page: &PageRequest,
    ) -> Result<Page<AttestedAgent>, StoreError> {
        const OP: &str = "list agents";
        let size = page_size(page);
        let after = page.token.clone().unwrap_or_default();
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT spiffe_id, record FROM agents WHERE spiffe_id > $1
                 ORDER BY spiffe_id LIMIT $2",
                &[&after, &limit_plus_one(size)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        let agents = rows
            .iter()
            .map(|row| record(row, 1, TABLE, &column::<String>(row, 0, TABLE)?))
            .collect::<Result<Vec<AttestedAgent>, _>>()?;
        Ok(into_page(agents, size, |a| a.spiffe_id.as_str().to_owned()))
    }

    pub(super) async fn delete_agent_impl(
        &self,
        id: &SpiffeId,
    ) -> Result<AttestedAgent, StoreError> {
        const OP: &str = "delete an agent";
        let _span = tracing::debug_span!("store.delete_agent", agent_id = id.as_str()).entered();
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "DELETE FROM agents WHERE spiffe_id = $1 RETURNING record",
                &[&id.as_str()],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| agent_not_found(id))?;
        record(&row, 0, TABLE, id.as_str())
    }
}

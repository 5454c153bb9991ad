//! The [`Cluster`] side of the PostgreSQL store: the change feed (see
//! `feed.rs`), server heartbeats and which agents each server serves, with
//! the bundle sequence each acknowledged. Heartbeats use the database's
//! clock, so servers' clocks need not agree.

use super::codec::column;
use super::PostgresStore;
use crate::store::{ChangeFeed, Cluster, Presence, StoreError};

/// Servers not seen for this long are forgotten, with their agent rows.
const FORGET_AFTER_SECS: f64 = 86_400.0;

impl Cluster for PostgresStore {
    fn watch_changes(&self) -> ChangeFeed {
        super::feed::start(self)
    }

    fn record_presence(
        &self,
        server_id: &str,
        presence: &[Presence],
        reset: bool,
    ) -> Result<(), StoreError> {
        self.run(self.record_presence_impl(server_id, presence, reset))
    }

    fn acked_elsewhere(
        &self,
        server_id: &str,
        alive_secs: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.run(self.acked_elsewhere_impl(server_id, alive_secs))
    }
}

impl PostgresStore {
    async fn record_presence_impl(
        &self,
        server_id: &str,
        presence: &[Presence],
        reset: bool,
    ) -> Result<(), StoreError> {
        const OP: &str = "record agent presence";
        let _span = tracing::debug_span!("store.record_presence", changes = presence.len(), reset)
            .entered();
        let mut here: Vec<&str> = Vec::new();
        let mut acked: Vec<i64> = Vec::new();
        let mut gone: Vec<&str> = Vec::new();
        for (agent, seq) in presence {
            match seq {
                Some(s) => {
                    here.push(agent);
                    acked.push(i64::try_from(*s).unwrap_or(i64::MAX));
                }
                None => gone.push(agent),
            }
        }
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.map_err(StoreError::pg(OP))?;
        tx.execute(
            "INSERT INTO servers (server_id) VALUES ($1)
             ON CONFLICT (server_id) DO UPDATE SET seen_at = now(),
                 started_at = CASE WHEN $2 THEN now() ELSE servers.started_at END",
            &[&server_id, &reset],
        )
        .await
        .map_err(StoreError::pg(OP))?;
        if reset {
            tx.execute(
                "DELETE FROM agent_presence WHERE server_id = $1",
                &[&server_id],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        }
        if !gone.is_empty() {
            tx.execute(
                "DELETE FROM agent_presence WHERE server_id = $1 AND agent_id = ANY($2)",
                &[&server_id, &gone],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        }
        if !here.is_empty() {
            // The caller names each agent once; an upsert of the same key
            // twice in one statement would be refused.
            tx.execute(
                "INSERT INTO agent_presence (server_id, agent_id, acked_sequence)
                 SELECT $1, a, s FROM unnest($2::text[], $3::int8[]) AS t(a, s)
                 ON CONFLICT (server_id, agent_id)
                 DO UPDATE SET acked_sequence = excluded.acked_sequence",
                &[&server_id, &here, &acked],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        }
        tx.execute(
            "DELETE FROM servers WHERE seen_at < now() - make_interval(secs => $1)",
            &[&FORGET_AFTER_SECS],
        )
        .await
        .map_err(StoreError::pg(OP))?;
        tx.commit().await.map_err(StoreError::pg(OP))
    }

    async fn acked_elsewhere_impl(
        &self,
        server_id: &str,
        alive_secs: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        const OP: &str = "read other servers' agents";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                "SELECT p.agent_id, max(p.acked_sequence)
                 FROM agent_presence p JOIN servers s USING (server_id)
                 WHERE p.server_id <> $1 AND s.seen_at > now() - make_interval(secs => $2)
                 GROUP BY p.agent_id ORDER BY p.agent_id",
                &[&server_id, &f64::from(alive_secs)],
            )
            .await
            .map_err(StoreError::pg(OP))?;
        rows.iter()
            .map(|row| {
                let agent: String = column(row, 0, "agent_presence")?;
                let seq: i64 = column(row, 1, "agent_presence")?;
                Ok((agent, u64::try_from(seq).unwrap_or(0)))
            })
            .collect()
    }
}

//! Single-use join tokens. The table keys a token by the SHA-256 of its
//! value, so the database never holds a usable secret; consuming is one
//! `DELETE … RETURNING`, which exactly one of any number of concurrent
//! callers (on any server) gets a row from.

use super::codec::{column, violates};
use super::PostgresStore;
use crate::spiffe::SpiffeId;
use crate::store::common::{check_join_token, secret_prefix};
use crate::store::{JoinToken, StoreError};

const TABLE: &str = "join_tokens";
const KIND: &str = "join token";

/// The key a token is stored under.
pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

impl PostgresStore {
    pub(super) async fn create_join_token_impl(&self, token: JoinToken) -> Result<(), StoreError> {
        const OP: &str = "create a join token";
        let prefix = secret_prefix(&token.token);
        let _span =
            tracing::debug_span!("store.create_join_token", token_prefix = %prefix).entered();
        check_join_token(&token)?;
        let client = self.client(OP).await?;
        let agent_id = token.agent_id.as_ref().map(|a| a.as_str());
        let written = client
            .execute(
                "INSERT INTO join_tokens (token_hash, expires_at, agent_id) VALUES ($1, $2, $3)",
                &[&token_hash(&token.token), &token.expires_at, &agent_id],
            )
            .await;
        match written {
            Ok(_) => Ok(()),
            // Never replaced: an existing token keeps its expiry.
            Err(e) if violates(&e, "join_tokens_pkey") => Err(StoreError::AlreadyExists {
                kind: KIND,
                id: prefix,
            }),
            Err(e) => Err(StoreError::pg(OP)(e)),
        }
    }

    pub(super) async fn consume_join_token_impl(
        &self,
        token: &str,
        now: i64,
    ) -> Result<JoinToken, StoreError> {
        const OP: &str = "consume a join token";
        let prefix = secret_prefix(token);
        let _span =
            tracing::debug_span!("store.consume_join_token", token_prefix = %prefix).entered();
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "DELETE FROM join_tokens WHERE token_hash = $1 RETURNING expires_at, agent_id",
                &[&token_hash(token)],
            )
            .await
            .map_err(StoreError::pg(OP))?
            .ok_or_else(|| StoreError::NotFound {
                kind: KIND,
                id: prefix.clone(),
            })?;
        let expires_at: i64 = column(&row, 0, TABLE)?;
        let agent_id = column::<Option<String>>(&row, 1, TABLE)?
            .map(|s| {
                SpiffeId::parse(&s).map_err(|e| StoreError::Corrupt {
                    tree: TABLE,
                    key: prefix.clone(),
                    reason: format!("agent_id: {e}"),
                })
            })
            .transpose()?;
        if expires_at <= now {
            tracing::debug!(expires_at, "join token expired");
            return Err(StoreError::TokenExpired {
                token_prefix: prefix,
                expires_at,
            });
        }
        tracing::debug!("join token consumed");
        Ok(JoinToken {
            token: token.to_owned(),
            expires_at,
            agent_id,
        })
    }

    pub(super) async fn prune_join_tokens_impl(&self, now: i64) -> Result<usize, StoreError> {
        const OP: &str = "prune join tokens";
        let _span = tracing::debug_span!("store.prune_join_tokens", now).entered();
        let client = self.client(OP).await?;
        let removed = client
            .execute("DELETE FROM join_tokens WHERE expires_at <= $1", &[&now])
            .await
            .map_err(StoreError::pg(OP))?;
        tracing::debug!(removed, "pruned expired join tokens");
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

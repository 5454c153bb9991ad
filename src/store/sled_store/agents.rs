//! Attested agents and single-use join tokens.
//!
//! Join token values are secrets: they appear in logs and errors only as a
//! short prefix.

use super::codec::{decode, encode, secret_prefix};
use super::{SledStore, AGENTS, JOIN_TOKENS};
use crate::spiffe::SpiffeId;
use crate::store::common::{check_agent_change, check_join_token};
use crate::store::{AttestedAgent, JoinToken, StoreError};

const TOKEN_KIND: &str = "join token";

impl SledStore {
    pub(super) fn attest_agent_impl(&self, agent: &AttestedAgent) -> Result<(), StoreError> {
        let id = agent.spiffe_id.as_str();
        let _span = tracing::debug_span!("store.attest_agent", agent_id = id).entered();
        let bytes = encode("agent", id, agent)?;
        loop {
            let current = self
                .agents
                .get(id.as_bytes())
                .map_err(StoreError::sled("read an agent"))?;
            if let Some(old) = &current {
                let old: AttestedAgent = decode(AGENTS, id.as_bytes(), old)?;
                if old.banned {
                    return Err(StoreError::AgentBanned { id: id.to_string() });
                }
                return Err(StoreError::AlreadyExists {
                    kind: "agent",
                    id: id.to_string(),
                });
            }
            let swapped = self
                .agents
                .compare_and_swap(id.as_bytes(), current, Some(bytes.clone()))
                .map_err(StoreError::sled("write an agent"))?;
            if swapped.is_ok() {
                return self.flush("flush an agent");
            }
        }
    }

    pub(super) fn update_agent_impl(
        &self,
        id: &SpiffeId,
        change: &mut dyn FnMut(&AttestedAgent) -> Result<AttestedAgent, StoreError>,
    ) -> Result<AttestedAgent, StoreError> {
        let key = id.as_str().as_bytes();
        let _span = tracing::debug_span!("store.update_agent", agent_id = id.as_str()).entered();
        loop {
            let bytes = existing(&self.agents, key, ("read an agent", "agent"), || {
                id.to_string()
            })?;
            let current: AttestedAgent = decode(AGENTS, key, &bytes)?;
            let next = change(&current)?;
            check_agent_change(&current, &next)?;
            let encoded = encode("agent", id.as_str(), &next)?;
            let swapped = self
                .agents
                .compare_and_swap(key, Some(&bytes), Some(encoded))
                .map_err(StoreError::sled("update an agent"))?;
            if swapped.is_ok() {
                self.flush("flush an agent")?;
                return Ok(next);
            }
        }
    }

    pub(super) fn create_join_token_impl(&self, token: JoinToken) -> Result<(), StoreError> {
        let prefix = secret_prefix(&token.token);
        let _span =
            tracing::debug_span!("store.create_join_token", token_prefix = %prefix).entered();
        check_join_token(&token)?;
        let bytes = encode(TOKEN_KIND, &prefix, &token)?;
        // Insert only if absent, so that an existing token is never
        // silently replaced (and its expiry extended).
        let swapped = self
            .join_tokens
            .compare_and_swap(token.token.as_bytes(), None::<&[u8]>, Some(bytes))
            .map_err(StoreError::sled("create a join token"))?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists {
                kind: TOKEN_KIND,
                id: prefix,
            });
        }
        self.flush("flush a join token")
    }

    pub(super) fn consume_join_token_impl(
        &self,
        token: &str,
        now: i64,
    ) -> Result<JoinToken, StoreError> {
        let prefix = secret_prefix(token);
        let _span =
            tracing::debug_span!("store.consume_join_token", token_prefix = %prefix).entered();
        let key = token.as_bytes();
        loop {
            let bytes = existing(
                &self.join_tokens,
                key,
                ("read a join token", TOKEN_KIND),
                || prefix.clone(),
            )?;
            let stored: JoinToken = decode(JOIN_TOKENS, prefix.as_bytes(), &bytes)?;
            // The removal is a compare-and-swap against the value we read:
            // of several concurrent consumers exactly one swaps; the others
            // loop, find the key gone and get NotFound.
            let swapped = self
                .join_tokens
                .compare_and_swap(key, Some(&bytes), None::<&[u8]>)
                .map_err(StoreError::sled("consume a join token"))?;
            if swapped.is_err() {
                continue;
            }
            self.flush("flush a consumed join token")?;
            if stored.expires_at <= now {
                tracing::debug!(expires_at = stored.expires_at, "join token expired");
                return Err(StoreError::TokenExpired {
                    token_prefix: prefix,
                    expires_at: stored.expires_at,
                });
            }
            tracing::debug!("join token consumed");
            return Ok(stored);
        }
    }

    /// Every join token (for `herald store migrate`). A token that does
    /// not decode is reported by its prefix only.
    pub fn export_join_tokens(&self) -> Result<Vec<JoinToken>, StoreError> {
        self.join_tokens
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(StoreError::sled("scan join tokens"))?;
                let prefix = secret_prefix(&String::from_utf8_lossy(&key));
                decode(JOIN_TOKENS, prefix.as_bytes(), &bytes)
            })
            .collect()
    }

    pub(super) fn prune_join_tokens_impl(&self, now: i64) -> Result<usize, StoreError> {
        let _span = tracing::debug_span!("store.prune_join_tokens", now).entered();
        let mut expired = Vec::new();
        for item in self.join_tokens.iter() {
            let (key, bytes) = item.map_err(StoreError::sled("scan join tokens"))?;
            let prefix = secret_prefix(&String::from_utf8_lossy(&key));
            let token: JoinToken = decode(JOIN_TOKENS, prefix.as_bytes(), &bytes)?;
            if token.expires_at <= now {
                expired.push((key, bytes));
            }
        }
        let mut removed = 0;
        for (key, bytes) in expired {
            // Skips a token consumed since the scan.
            let swapped = self
                .join_tokens
                .compare_and_swap(&key, Some(&bytes), None::<&[u8]>)
                .map_err(StoreError::sled("prune join tokens"))?;
            if swapped.is_ok() {
                removed += 1;
            }
        }
        self.flush("flush pruned join tokens")?;
        tracing::debug!(removed, "pruned expired join tokens");
        Ok(removed)
    }
}

/// The stored value at `key`, or `NotFound` naming the record (`id` is
/// called only then), failing a sled read as `op`.
fn existing(
    tree: &sled::Tree,
    key: &[u8],
    (op, kind): (&'static str, &'static str),
    id: impl FnOnce() -> String,
) -> Result<sled::IVec, StoreError> {
    tree.get(key)
        .map_err(StoreError::sled(op))?
        .ok_or_else(|| StoreError::NotFound { kind, id: id() })
}

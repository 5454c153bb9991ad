//! Rules both backends apply the same way: page sizes, how a secret is
//! shown, what makes two registration entries "similar", and the checks a
//! record passes before either writes it.

use super::{
    AttestedAgent, AuthorityRecord, FederationRelationship, JoinToken, PageRequest, StoreError,
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use crate::registration::RegistrationEntry;
use crate::spiffe::{Bundle, SpiffeId};

/// The error for an agent ID with no record.
pub(crate) fn agent_not_found(id: &SpiffeId) -> StoreError {
    StoreError::NotFound {
        kind: "agent",
        id: id.to_string(),
    }
}

/// Logs the outcome of a batch of entry creations, the same for both
/// backends.
pub(crate) fn log_created<T>(results: &[Result<T, StoreError>]) {
    let created = results.iter().filter(|r| r.is_ok()).count();
    tracing::debug!(
        created,
        failed = results.len() - created,
        "created registration entries"
    );
}

/// The span of one bundle write, the same for both backends.
pub(crate) fn set_bundle_span(bundle: &Bundle) -> tracing::span::EnteredSpan {
    tracing::debug_span!(
        "store.set_bundle",
        trust_domain = bundle.trust_domain.name(),
        sequence = bundle.sequence
    )
    .entered()
}

/// The span of one CA journal write, the same for both backends.
pub(crate) fn put_authority_span(record: &AuthorityRecord) -> tracing::span::EnteredSpan {
    tracing::debug_span!(
        "store.put_authority",
        authority_id = %record.id,
        kind = ?record.kind,
        state = ?record.state,
        tainted = record.tainted
    )
    .entered()
}

/// The number of items a page request asks for, defaulted and capped.
pub(crate) fn page_size(page: &PageRequest) -> usize {
    match page.size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// The first four characters of a secret: enough to tell tokens apart in
/// logs and error messages, too few to use.
pub(crate) fn secret_prefix(secret: &str) -> String {
    secret.chars().take(4).collect()
}

/// The canonical form of "same SPIFFE ID, parent ID and selector set":
/// `spiffe_id\0parent_id\0sel\0sel…` with the selectors sorted and
/// deduplicated. SPIFFE IDs and selectors never contain NUL, so two entries
/// have the same key exactly when they are similar.
pub(crate) fn similar_key(entry: &RegistrationEntry) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(entry.spiffe_id.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(entry.parent_id.as_str().as_bytes());
    for selector in entry.selector_set() {
        key.push(0);
        key.extend_from_slice(selector.to_string().as_bytes());
    }
    key
}

/// A new entry as both backends store it: a UUID v4 id if it has none,
/// revision 1, and checked.
pub(crate) fn new_entry(mut entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
    if entry.id.is_empty() {
        entry.id = uuid::Uuid::new_v4().to_string();
    }
    entry.revision = 1;
    entry.validate()?;
    Ok(entry)
}

/// What an agent update may not do: change the ID, or lift a ban.
pub(crate) fn check_agent_change(
    current: &AttestedAgent,
    next: &AttestedAgent,
) -> Result<(), StoreError> {
    let id = &current.spiffe_id;
    if next.spiffe_id != *id {
        return Err(StoreError::Invalid {
            record: format!("agent {id}"),
            field: "spiffe_id",
            reason: "cannot be changed".into(),
        });
    }
    if current.banned && !next.banned {
        return Err(StoreError::AgentBanned { id: id.to_string() });
    }
    Ok(())
}

/// A join token must have a value.
pub(crate) fn check_join_token(token: &JoinToken) -> Result<(), StoreError> {
    if token.token.is_empty() {
        return Err(StoreError::Invalid {
            record: "join token".into(),
            field: "token",
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// A federation relationship must say where the bundle is served.
pub(crate) fn check_relationship(rel: &FederationRelationship) -> Result<(), StoreError> {
    if rel.bundle_endpoint_url.is_empty() {
        return Err(StoreError::Invalid {
            record: format!("federation relationship with {:?}", rel.trust_domain.name()),
            field: "bundle_endpoint_url",
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// A CA journal record must have an id.
pub(crate) fn check_authority(record: &AuthorityRecord) -> Result<(), StoreError> {
    if record.id.is_empty() {
        return Err(StoreError::Invalid {
            record: format!("authority record (key {:?})", record.key_id),
            field: "id",
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

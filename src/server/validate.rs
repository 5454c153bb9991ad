//! Checks on what an administrator sends the admin API, before anything
//! reaches the store: registration entries (SPIRE's entry rules, see
//! `shared/spec/SPIFFE.md` §8.2), SPIFFE IDs of workloads, DNS names.
//!
//! Every error names the field it is about (`spiffe_id: …`, `selectors[1].type:
//! …`) so that an operator can fix a batch of entries without guessing; the
//! API maps them to `InvalidArgument`.

mod dns;
#[cfg(test)]
mod tests;

use std::fmt;

pub use self::dns::{check_wildcard_overlap, validate_dns_name};

use crate::proto::admin;
use crate::registration::node_alias::{check_alias_entry, is_alias_entry};
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{SpiffeId, TrustDomain};

/// Refuses a `value` longer than `max` bytes, naming `field`.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    Ok(())
}

/// The path under which the server's and agents' own IDs live; no entry or
/// minted SVID may claim an ID there (SPIRE reserves `/spire` the same way).
pub const RESERVED_PATH: &str = "/herald";

/// Largest SVID TTL an entry may ask for: one year, in seconds.
pub const MAX_SVID_TTL: i32 = 31_536_000;

/// Longest hint, in bytes (SPIRE's limit).
pub const MAX_HINT_LEN: usize = 1024;

/// Longest entry ID an administrator may choose (SPIRE's limit).
pub const MAX_ENTRY_ID_LEN: usize = 255;

/// Something an administrator sent that the API refuses; always an
/// `InvalidArgument`, with the field first in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field, in the proto's spelling (`spiffe_id`, `selectors[0].type`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<ValidationError> for tonic::Status {
    fn from(e: ValidationError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Checks an entry from the API and turns it into a store record; an
/// entry parented to the server is a node alias and passes the alias rules
/// too ([`check_alias_entry`]). Returns the record
/// (`created_at` and `revision` are left at 0 for the caller and the store
/// to fill in). `known_bundles` are the trust domains the server holds a
/// bundle for; `federates_with` may only name those.
pub fn validate_entry(
    td: &TrustDomain,
    entry: &admin::Entry,
    known_bundles: &[TrustDomain],
) -> Result<RegistrationEntry, ValidationError> {
    if !entry.id.is_empty() {
        validate_entry_id(&entry.id)?;
    }
    let spiffe_id = workload_id(td, "spiffe_id", &entry.spiffe_id)?;
    let parent_id = member_id(td, "parent_id", &entry.parent_id)?;
    let selectors = validate_selectors(&entry.selectors)?;
    let x509_svid_ttl = ttl("x509_svid_ttl", entry.x509_svid_ttl)?;
    let jwt_svid_ttl = ttl("jwt_svid_ttl", entry.jwt_svid_ttl)?;
    for (i, name) in entry.dns_names.iter().enumerate() {
        validate_dns_name(name).map_err(|r| ValidationError::new(format!("dns_names[{i}]"), r))?;
    }
    let mut federates_with = Vec::with_capacity(entry.federates_with.len());
    for (i, name) in entry.federates_with.iter().enumerate() {
        let field = || format!("federates_with[{i}]");
        let fed = TrustDomain::parse(name).map_err(|e| {
            ValidationError::new(
                field(),
                format!("{name:?} is not a valid trust domain name: {e}"),
            )
        })?;
        if &fed == td {
            return Err(ValidationError::new(
                field(),
                format!("{fed} is this server's own trust domain; list only foreign ones"),
            ));
        }
        if !known_bundles.contains(&fed) {
            return Err(ValidationError::new(
                "federates_with",
                format!("no bundle for trust domain {fed}; federate with it first"),
            ));
        }
        if !federates_with.contains(&fed) {
            federates_with.push(fed);
        }
    }
    if entry.hint.len() > MAX_HINT_LEN {
        return Err(ValidationError::new(
            "hint",
            format!(
                "is {} bytes long; at most {MAX_HINT_LEN} are allowed",
                entry.hint.len()
            ),
        ));
    }
    if entry.expires_at < 0 {
        return Err(ValidationError::new(
            "expires_at",
            format!(
                "{} is negative; use unix seconds, or 0 for never",
                entry.expires_at
            ),
        ));
    }
    let record = RegistrationEntry {
        id: entry.id.clone(),
        x509_svid_ttl,
        jwt_svid_ttl,
        dns_names: entry.dns_names.clone(),
        admin: entry.admin,
        downstream: entry.downstream,
        federates_with,
        hint: entry.hint.clone(),
        expires_at: (entry.expires_at != 0).then_some(entry.expires_at),
        ..RegistrationEntry::new(spiffe_id, parent_id, selectors)
    };
    // Parented to the server: a node alias, which names agents.
    if is_alias_entry(&record) {
        check_alias_entry(&record).map_err(|r| ValidationError::new(r.field, r.reason))?;
    }
    Ok(record)
}

/// An administrator-chosen entry ID: printable ASCII without spaces, at
/// most [`MAX_ENTRY_ID_LEN`] bytes.
pub fn validate_entry_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new("id", "must not be empty"));
    }
    check_len("id", id, MAX_ENTRY_ID_LEN)?;
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ValidationError::new(
            "id",
            format!("{id:?} contains {c:?}; only printable ASCII without spaces is allowed"),
        ));
    }
    Ok(())
}

/// Parses `value` as a SPIFFE ID of `td` with a non-empty path (a member of
/// the trust domain, such as a parent ID).
pub fn member_id(td: &TrustDomain, field: &str, value: &str) -> Result<SpiffeId, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let id = SpiffeId::parse(value).map_err(|e| {
        ValidationError::new(field, format!("{value:?} is not a valid SPIFFE ID: {e}"))
    })?;
    if id.trust_domain() != td {
        return Err(ValidationError::new(
            field,
            format!(
                "{id} is not in trust domain {td}; this server only manages its own trust domain"
            ),
        ));
    }
    if id.is_trust_domain_id() {
        return Err(ValidationError::new(
            field,
            format!("{id} has no path; use spiffe://{td}/<path>"),
        ));
    }
    Ok(id)
}

/// Like [`member_id`], and not under [`RESERVED_PATH`]: an ID a workload
/// may be given.
pub fn workload_id(
    td: &TrustDomain,
    field: &str,
    value: &str,
) -> Result<SpiffeId, ValidationError> {
    let id = member_id(td, field, value)?;
    if is_reserved(&id) {
        return Err(ValidationError::new(
            field,
            format!("{id} is under the reserved path {RESERVED_PATH}, which holds the server's and agents' own IDs"),
        ));
    }
    Ok(id)
}

/// Whether `id` lies under [`RESERVED_PATH`].
pub fn is_reserved(id: &SpiffeId) -> bool {
    let path = id.path();
    path == RESERVED_PATH
        || path
            .strip_prefix(RESERVED_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// At least one selector; each with a type of `[a-z0-9_-]+` and a
/// non-empty value.
pub fn validate_selectors(selectors: &[admin::Selector]) -> Result<Vec<Selector>, ValidationError> {
    if selectors.is_empty() {
        return Err(ValidationError::new(
            "selectors",
            "must contain at least one selector",
        ));
    }
    selectors
        .iter()
        .enumerate()
        .map(|(i, s)| validate_selector(&format!("selectors[{i}]"), s))
        .collect()
}

/// One selector; `field` prefixes the error (`selectors[2]`).
pub fn validate_selector(field: &str, s: &admin::Selector) -> Result<Selector, ValidationError> {
    if s.r#type.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.type"),
            "must not be empty",
        ));
    }
    if let Some(c) = s
        .r#type
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(ValidationError::new(
            format!("{field}.type"),
            format!(
                "{:?} contains {c:?}; only a-z, 0-9, '_' and '-' are allowed",
                s.r#type
            ),
        ));
    }
    if s.value.is_empty() {
        return Err(ValidationError::new(
            format!("{field}.value"),
            format!("must not be empty (selector type {:?})", s.r#type),
        ));
    }
    if s.value.contains('\0') {
        return Err(ValidationError::new(
            format!("{field}.value"),
            "must not contain a NUL character",
        ));
    }
    Selector::new(&s.r#type, &s.value).map_err(|e| ValidationError::new(field, e))
}

fn ttl(field: &str, value: i32) -> Result<u32, ValidationError> {
    if (0..=MAX_SVID_TTL).contains(&value) {
        // In range, so non-negative: the conversion cannot fail.
        Ok(value.unsigned_abs())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "{value} out of range; use 0 (the server default) to {MAX_SVID_TTL} seconds (one year)"
            ),
        ))
    }
}

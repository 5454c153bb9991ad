//! Checks on what an administrator sends the admin API, before anything
//! reaches the store: registration entries (SPIRE's entry rules, see
//! `shared/spec/SPIFFE.md` §8.2), SPIFFE IDs of workloads, DNS names.
//!
//! Every error names the field it is about (`spiffe_id: …`, `selectors[1].type:
//! …`) so that an operator can fix a batch of entries without guessing; the
//! API maps them to `InvalidArgument`.

use std::fmt;

use crate::proto::admin;
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{SpiffeId, TrustDomain};

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

/// Checks an entry from the API and turns it into a store record
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
    Ok(RegistrationEntry {
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
    })
}

/// An administrator-chosen entry ID: printable ASCII without spaces, at
/// most [`MAX_ENTRY_ID_LEN`] bytes.
pub fn validate_entry_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new("id", "must not be empty"));
    }
    if id.len() > MAX_ENTRY_ID_LEN {
        return Err(ValidationError::new(
            "id",
            format!(
                "is {} bytes long; at most {MAX_ENTRY_ID_LEN} are allowed",
                id.len()
            ),
        ));
    }
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

/// A hostname for a DNS SAN: dot-separated labels of letters, digits and
/// inner hyphens, 63 bytes each, 253 in all, with an optional leading `*.`.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.is_empty() {
        return Err(format!("{name:?} is not a valid DNS name: it is empty"));
    }
    if name.len() > 253 {
        return Err(format!(
            "{name:?} is not a valid DNS name: it is {} bytes long; at most 253 are allowed",
            name.len()
        ));
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid DNS name: label {label:?} must be 1-63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(())
}

/// Rejects a wildcard DNS name that also covers another name of the same
/// list (`*.example.org` with `a.example.org`), as SPIRE's mint does.
pub fn check_wildcard_overlap(names: &[String]) -> Result<(), String> {
    for wildcard in names {
        let Some(base) = wildcard.strip_prefix("*.") else {
            continue;
        };
        for other in names {
            if other == wildcard {
                continue;
            }
            let covered = other
                .split_once('.')
                .is_some_and(|(first, rest)| first != "*" && rest.eq_ignore_ascii_case(base));
            if covered {
                return Err(format!(
                    "wildcard {wildcard:?} overlaps {other:?}; keep one of them"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn good() -> admin::Entry {
        admin::Entry {
            spiffe_id: "spiffe://example.org/web".into(),
            parent_id: "spiffe://example.org/herald/agent/join_token/abc".into(),
            selectors: vec![admin::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            ..Default::default()
        }
    }

    fn err(entry: &admin::Entry) -> ValidationError {
        validate_entry(&td(), entry, &[TrustDomain::new("other.org").unwrap()]).unwrap_err()
    }

    fn assert_field(entry: admin::Entry, field: &str, needle: &str) {
        let e = err(&entry);
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
        let status: tonic::Status = e.into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }

    #[test]
    fn a_good_entry_becomes_a_record() {
        let mut e = good();
        e.x509_svid_ttl = 60;
        e.jwt_svid_ttl = MAX_SVID_TTL;
        e.dns_names = vec!["web.example.org".into(), "*.svc.example.org".into()];
        e.federates_with = vec!["other.org".into(), "spiffe://other.org".into()];
        e.hint = "h".repeat(MAX_HINT_LEN);
        e.expires_at = 0;
        e.id = "my-entry_1".into();
        let r = validate_entry(&td(), &e, &[TrustDomain::new("other.org").unwrap()]).unwrap();
        assert_eq!(r.spiffe_id.as_str(), "spiffe://example.org/web");
        assert_eq!(r.x509_svid_ttl, 60);
        assert_eq!(r.jwt_svid_ttl, MAX_SVID_TTL as u32);
        assert_eq!(r.federates_with.len(), 1, "duplicates collapse");
        assert_eq!(r.expires_at, None);
        assert_eq!(r.selectors[0].to_string(), "unix:uid:1000");
        e.expires_at = 5;
        let r = validate_entry(&td(), &e, &[TrustDomain::new("other.org").unwrap()]).unwrap();
        assert_eq!(r.expires_at, Some(5));
    }

    #[test]
    fn spiffe_id_rules() {
        for (id, needle) in [
            ("spiffe://Example.org/x", "is not a valid SPIFFE ID"),
            ("", "must not be empty"),
            ("http://example.org/x", "is not a valid SPIFFE ID"),
            ("spiffe://other.org/x", "not in trust domain example.org"),
            ("spiffe://example.org", "has no path"),
            ("spiffe://example.org/herald", "reserved path"),
            ("spiffe://example.org/herald/agent/x", "reserved path"),
        ] {
            let mut e = good();
            e.spiffe_id = id.into();
            assert_field(e, "spiffe_id", needle);
        }
        // Only the exact segment is reserved.
        let mut e = good();
        e.spiffe_id = "spiffe://example.org/heraldry".into();
        validate_entry(&td(), &e, &[]).unwrap();
    }

    #[test]
    fn parent_id_rules() {
        for (id, needle) in [
            ("spiffe://example.org/a//b", "is not a valid SPIFFE ID"),
            ("spiffe://other.org/agent", "not in trust domain"),
            ("spiffe://example.org", "has no path"),
            ("", "must not be empty"),
        ] {
            let mut e = good();
            e.parent_id = id.into();
            assert_field(e, "parent_id", needle);
        }
    }

    #[test]
    fn selector_rules() {
        let mut e = good();
        e.selectors.clear();
        assert_field(e, "selectors", "at least one");
        let sel = |t: &str, v: &str| admin::Selector {
            r#type: t.into(),
            value: v.into(),
        };
        for (s, field, needle) in [
            (sel("", "x"), "selectors[1].type", "must not be empty"),
            (sel("Unix", "x"), "selectors[1].type", "only a-z"),
            (sel("a:b", "x"), "selectors[1].type", "only a-z"),
            (sel("unix", ""), "selectors[1].value", "must not be empty"),
            (sel("unix", "a\0b"), "selectors[1].value", "NUL"),
        ] {
            let mut e = good();
            e.selectors.push(s);
            assert_field(e, field, needle);
        }
    }

    #[test]
    fn ttl_rules() {
        for v in [-1, MAX_SVID_TTL + 1, i32::MIN, i32::MAX] {
            let mut e = good();
            e.x509_svid_ttl = v;
            assert_field(e, "x509_svid_ttl", "out of range");
            let mut e = good();
            e.jwt_svid_ttl = v;
            assert_field(e, "jwt_svid_ttl", "out of range");
        }
    }

    #[test]
    fn dns_name_rules() {
        for bad in [
            "",
            "*.",
            "bad name",
            "-a.org",
            "a..org",
            "a.*.org",
            "*.*.org",
            &"a".repeat(64),
        ] {
            let mut e = good();
            e.dns_names = vec!["ok.org".into(), bad.to_string()];
            assert_field(e, "dns_names[1]", "not a valid DNS name");
        }
        for ok in ["a", "a-b.example.org", "*.example.org", "xn--bcher-kva.de"] {
            validate_dns_name(ok).unwrap();
        }
    }

    #[test]
    fn wildcard_overlap() {
        let v = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_wildcard_overlap(&v(&["*.a.org", "b.a.org"])).is_err());
        assert!(check_wildcard_overlap(&v(&["*.a.org", "a.org", "c.b.a.org"])).is_ok());
    }

    #[test]
    fn federates_with_rules() {
        let mut e = good();
        e.federates_with = vec!["unknown.org".into()];
        let msg = err(&e).to_string();
        assert_eq!(
            msg,
            "federates_with: no bundle for trust domain unknown.org; federate with it first"
        );
        let mut e = good();
        e.federates_with = vec!["Bad.Org".into()];
        assert_field(e, "federates_with[0]", "not a valid trust domain");
        let mut e = good();
        e.federates_with = vec!["example.org".into()];
        assert_field(e, "federates_with[0]", "own trust domain");
    }

    #[test]
    fn hint_expiry_and_id_rules() {
        let mut e = good();
        e.hint = "h".repeat(MAX_HINT_LEN + 1);
        assert_field(e, "hint", "at most 1024");
        let mut e = good();
        e.expires_at = -1;
        assert_field(e, "expires_at", "negative");
        let mut e = good();
        e.id = "has space".into();
        assert_field(e, "id", "printable ASCII");
        let mut e = good();
        e.id = "x".repeat(MAX_ENTRY_ID_LEN + 1);
        assert_field(e, "id", "at most 255");
    }
}

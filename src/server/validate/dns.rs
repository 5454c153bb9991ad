//! DNS names for the DNS SANs of SVIDs: each a valid hostname (or a
//! wildcard over one), and no wildcard covering another name of the list.

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

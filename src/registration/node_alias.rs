//! Node aliases (SPIRE's node-alias entries): an entry whose parent is the
//! server's own ID names, by node selectors, every agent whose attestation
//! gave it at least those selectors. Its SPIFFE ID (the alias) can then be
//! the parent of workload entries, which every such agent receives: one
//! entry covers a whole cluster, or every machine a CA certified.
//!
//! Herald's server ID is `spiffe://<td>/herald/server` (SPIRE's is
//! `/spire/server`). An alias entry is never issued an SVID: the agents it
//! names keep their own IDs, so the fields that shape an SVID are refused.

use std::collections::BTreeSet;

use super::{RegistrationEntry, Selector};
use crate::spiffe::{IdError, SpiffeId, TrustDomain};

/// The path of the server's own SPIFFE ID, the parent of alias entries.
pub const SERVER_PATH: &str = "/herald/server";

/// The selector types node attestors produce, the only ones an alias entry
/// may use (`x509pop`; `k8s_psat`). A workload selector (`unix`, `k8s`)
/// never describes an agent, so an alias using one would match nothing.
pub const NODE_SELECTOR_TYPES: &[&str] = &["x509pop", "k8s_psat"];

/// The server's SPIFFE ID in `td`.
pub fn server_id(td: &TrustDomain) -> Result<SpiffeId, IdError> {
    SpiffeId::new(td, SERVER_PATH)
}

/// Whether `id` is the server's own ID (of its trust domain).
pub fn is_server_id(id: &SpiffeId) -> bool {
    id.path() == SERVER_PATH
}

/// Whether `entry` is a node alias entry: its parent is the server.
pub fn is_alias_entry(entry: &RegistrationEntry) -> bool {
    is_server_id(&entry.parent_id)
}

/// Whether an agent with `agent_selectors` belongs to an alias with
/// `alias_selectors`: it shows every one of them (order and repetition do
/// not matter). An alias with no selectors names no agent.
pub fn alias_matches(alias_selectors: &[Selector], agent_selectors: &[Selector]) -> bool {
    if alias_selectors.is_empty() {
        return false;
    }
    let agent: BTreeSet<&Selector> = agent_selectors.iter().collect();
    alias_selectors.iter().all(|s| agent.contains(s))
}

/// Why an alias entry is refused: the field and the reason, for the API
/// layer to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRule {
    /// The field at fault, in the proto's spelling.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The checks only alias entries have: node selector types only, and none
/// of the fields that shape an SVID (no SVID is issued for an alias).
pub fn check_alias_entry(entry: &RegistrationEntry) -> Result<(), AliasRule> {
    let rule = |field: &str, reason: String| AliasRule {
        field: field.into(),
        reason,
    };
    for (i, s) in entry.selectors.iter().enumerate() {
        if !NODE_SELECTOR_TYPES.contains(&s.kind()) {
            return Err(rule(
                &format!("selectors[{i}].type"),
                format!(
                    "{:?} is not a node selector type; a node alias entry (parent {}) names agents by what their attestation showed: {}",
                    s.kind(),
                    entry.parent_id,
                    NODE_SELECTOR_TYPES.join(", ")
                ),
            ));
        }
    }
    let svid_fields = [
        ("admin", entry.admin),
        ("downstream", entry.downstream),
        ("dns_names", !entry.dns_names.is_empty()),
        ("federates_with", !entry.federates_with.is_empty()),
        ("x509_svid_ttl", entry.x509_svid_ttl != 0),
        ("jwt_svid_ttl", entry.jwt_svid_ttl != 0),
    ];
    if let Some((field, _)) = svid_fields.iter().find(|(_, set)| *set) {
        return Err(rule(
            field,
            format!(
                "must not be set on a node alias entry (parent {}): no SVID is issued for an alias; set it on the workload entries under {}",
                entry.parent_id, entry.spiffe_id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn alias(selectors: &[&str]) -> RegistrationEntry {
        RegistrationEntry::new(
            SpiffeId::parse("spiffe://example.org/cluster/prod").unwrap(),
            server_id(&TrustDomain::new("example.org").unwrap()).unwrap(),
            selectors.iter().map(|s| sel(s)).collect(),
        )
    }

    #[test]
    fn an_agent_belongs_when_it_shows_every_alias_selector() {
        let agent = [
            sel("x509pop:subject:cn:db-1"),
            sel("x509pop:ca:fingerprint:ab"),
        ];
        assert!(alias_matches(&[sel("x509pop:ca:fingerprint:ab")], &agent));
        assert!(alias_matches(&agent, &agent));
        let more = [sel("x509pop:ca:fingerprint:ab"), sel("x509pop:san:dns:x")];
        assert!(!alias_matches(&more, &agent));
        assert!(!alias_matches(&[], &agent), "an empty alias names nobody");
        assert!(!alias_matches(&[sel("x509pop:ca:fingerprint:ab")], &[]));
    }

    #[test]
    fn the_server_id_is_the_alias_parent() {
        let e = alias(&["x509pop:subject:cn:a"]);
        assert_eq!(e.parent_id.as_str(), "spiffe://example.org/herald/server");
        assert!(is_alias_entry(&e));
        let mut w = e.clone();
        w.parent_id = SpiffeId::parse("spiffe://example.org/herald/agent/x").unwrap();
        assert!(!is_alias_entry(&w));
    }

    #[test]
    fn alias_entries_take_node_selectors_and_no_svid_fields() {
        assert_eq!(
            check_alias_entry(&alias(&["x509pop:subject:cn:a", "k8s_psat:cluster:prod"])),
            Ok(())
        );
        let err = check_alias_entry(&alias(&["x509pop:subject:cn:a", "unix:uid:0"])).unwrap_err();
        assert_eq!(err.field, "selectors[1].type");
        assert!(
            err.reason.contains("\"unix\" is not a node selector type"),
            "{}",
            err.reason
        );
        let mut admin = alias(&["x509pop:subject:cn:a"]);
        admin.admin = true;
        assert_eq!(check_alias_entry(&admin).unwrap_err().field, "admin");
        let mut dns = alias(&["x509pop:subject:cn:a"]);
        dns.dns_names = vec!["a.example.org".into()];
        let err = check_alias_entry(&dns).unwrap_err();
        assert_eq!(err.field, "dns_names");
        assert!(err.reason.contains("no SVID is issued for an alias"));
        let mut ttl = alias(&["x509pop:subject:cn:a"]);
        ttl.x509_svid_ttl = 60;
        assert_eq!(check_alias_entry(&ttl).unwrap_err().field, "x509_svid_ttl");
    }
}

//! The node alias entries (see [`crate::registration::node_alias`]) as the
//! server matches agents against them: read with one index query (the
//! entries whose parent is the server), each alias filed under its rarest
//! selector, so an agent with `k` node selectors is matched with `k` hash
//! lookups and a subset check per candidate, however many aliases exist.
//!
//! Sync streams share one [`NodeAliases`] per version of the entries
//! ([`crate::server::state::ServerState::node_aliases`], reloaded after an
//! entry change); signing reads a fresh one, so it judges by current
//! records (`authorized.rs`).

use std::collections::{BTreeSet, HashMap};

use crate::registration::node_alias::{alias_matches, server_id};
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::store::{entry_expired, DataStore, StoreError};

/// One alias entry, as much of it as matching needs.
#[derive(Debug, Clone)]
struct Alias {
    spiffe_id: SpiffeId,
    selectors: Vec<Selector>,
    expires_at: Option<i64>,
}

/// Every node alias entry of the trust domain, indexed by selector.
#[derive(Debug, Default)]
pub struct NodeAliases {
    aliases: Vec<Alias>,
    /// Each alias under one of its selectors (the one fewest aliases
    /// share): every agent an alias names shows that selector too.
    by_selector: HashMap<Selector, Vec<usize>>,
}

impl NodeAliases {
    /// The alias entries of `td` as the store holds them now.
    pub fn load(store: &dyn DataStore, td: &TrustDomain) -> Result<Self, StoreError> {
        let server = server_id(td).map_err(|e| StoreError::Invalid {
            record: format!("the server ID of {td}"),
            field: "trust_domain",
            reason: e.to_string(),
        })?;
        Ok(NodeAliases::new(store.entries_by_parent(&server)?))
    }

    /// The index over `entries` (alias entries; any with no selector is
    /// left out, as it names no agent).
    pub fn new(entries: Vec<RegistrationEntry>) -> Self {
        let aliases: Vec<Alias> = entries
            .into_iter()
            .filter(|e| !e.selectors.is_empty())
            .map(|e| Alias {
                spiffe_id: e.spiffe_id,
                selectors: e.selectors,
                expires_at: e.expires_at,
            })
            .collect();
        let mut count: HashMap<&Selector, usize> = HashMap::new();
        for a in &aliases {
            for s in a.selectors.iter().collect::<BTreeSet<_>>() {
                *count.entry(s).or_default() += 1;
            }
        }
        let mut by_selector: HashMap<Selector, Vec<usize>> = HashMap::new();
        for (i, a) in aliases.iter().enumerate() {
            // Not empty (filtered above); the rarest, ties by order.
            let key = a.selectors.iter().min_by_key(|s| (count.get(s), *s));
            if let Some(key) = key {
                by_selector.entry(key.clone()).or_default().push(i);
            }
        }
        NodeAliases {
            aliases,
            by_selector,
        }
    }

    /// Whether there is no alias at all (matching then needs no agent
    /// record).
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }

    /// The alias IDs naming an agent with `selectors` at `now` (expired
    /// alias entries name nobody), sorted, without repeats.
    pub fn matching(&self, selectors: &[Selector], now: i64) -> Vec<SpiffeId> {
        let mut out: BTreeSet<&SpiffeId> = BTreeSet::new();
        for s in selectors.iter().collect::<BTreeSet<_>>() {
            for &i in self.by_selector.get(s).into_iter().flatten() {
                let a = &self.aliases[i];
                if !entry_expired(a.expires_at, now) && alias_matches(&a.selectors, selectors) {
                    out.insert(&a.spiffe_id);
                }
            }
        }
        out.into_iter().cloned().collect()
    }

    /// The first expiry after `now` among the alias entries: what an
    /// agent is authorized for may change then.
    pub fn next_expiry(&self, now: i64) -> Option<i64> {
        self.aliases
            .iter()
            .filter_map(|a| a.expires_at.filter(|t| *t != 0 && *t > now))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn alias(id: &str, selectors: &[&str], expires_at: Option<i64>) -> RegistrationEntry {
        RegistrationEntry {
            expires_at,
            ..RegistrationEntry::new(
                SpiffeId::parse(&format!("spiffe://example.org/{id}")).unwrap(),
                SpiffeId::parse("spiffe://example.org/herald/server").unwrap(),
                selectors.iter().map(|s| sel(s)).collect(),
            )
        }
    }

    fn names(ids: Vec<SpiffeId>) -> Vec<String> {
        ids.into_iter().map(|i| i.path().to_string()).collect()
    }

    #[test]
    fn agents_match_the_aliases_whose_selectors_they_all_show() {
        let index = NodeAliases::new(vec![
            alias("prod", &["k8s_psat:cluster:prod"], None),
            alias(
                "prod-a",
                &["k8s_psat:cluster:prod", "k8s_psat:agent_ns:a"],
                None,
            ),
            alias("dev", &["k8s_psat:cluster:dev"], None),
            // Two entries may grant one alias ID: it is named once.
            alias(
                "prod",
                &["k8s_psat:cluster:prod", "k8s_psat:agent_ns:b"],
                None,
            ),
            alias("old", &["k8s_psat:cluster:prod"], Some(100)),
        ]);
        let agent = [
            sel("k8s_psat:cluster:prod"),
            sel("k8s_psat:agent_ns:b"),
            sel("k8s_psat:node-name:n1"),
        ];
        assert_eq!(names(index.matching(&agent, 50)), ["/old", "/prod"]);
        assert_eq!(names(index.matching(&agent, 100)), ["/prod"], "expired");
        let agent_a = [sel("k8s_psat:cluster:prod"), sel("k8s_psat:agent_ns:a")];
        assert_eq!(names(index.matching(&agent_a, 200)), ["/prod", "/prod-a"]);
        assert!(index.matching(&[sel("x509pop:subject:cn:x")], 0).is_empty());
        assert!(index.matching(&[], 0).is_empty());
        assert_eq!(index.next_expiry(50), Some(100));
        assert_eq!(index.next_expiry(100), None);
    }

    /// Each alias is filed once, under the selector fewest aliases use.
    #[test]
    fn an_alias_is_filed_under_its_rarest_selector() {
        let index = NodeAliases::new(vec![
            alias(
                "a",
                &["x509pop:ca:fingerprint:r", "x509pop:subject:cn:a"],
                None,
            ),
            alias(
                "b",
                &["x509pop:ca:fingerprint:r", "x509pop:subject:cn:b"],
                None,
            ),
            alias("all", &["x509pop:ca:fingerprint:r"], None),
        ]);
        let filed: usize = index.by_selector.values().map(Vec::len).sum();
        assert_eq!(filed, 3);
        assert_eq!(index.by_selector[&sel("x509pop:subject:cn:a")], [0]);
        assert_eq!(index.by_selector[&sel("x509pop:ca:fingerprint:r")], [2]);
        assert!(NodeAliases::new(Vec::new()).is_empty());
    }
}

//! Which registration entries an agent may receive and sign for.
//!
//! An agent is authorized for every entry whose parent is the agent itself,
//! and, transitively, for entries whose parent is the SPIFFE ID of an entry it
//! is already authorized for (SPIRE's node-alias and nesting model). Expired
//! entries are left out. Nothing else: deny unless an entry allows.

use std::collections::{BTreeMap, HashSet};

use crate::registration::RegistrationEntry;
use crate::spiffe::SpiffeId;
use crate::store::{DataStore, StoreError};

/// The entries `agent` is authorized for at `now`, by entry ID.
pub fn authorized_entries(
    store: &dyn DataStore,
    agent: &SpiffeId,
    now: i64,
) -> Result<BTreeMap<String, RegistrationEntry>, StoreError> {
    let mut out = BTreeMap::new();
    let mut seen: HashSet<SpiffeId> = HashSet::new();
    let mut frontier = vec![agent.clone()];
    seen.insert(agent.clone());
    while let Some(parent) = frontier.pop() {
        for entry in store.entries_by_parent(&parent)? {
            if entry.expires_at.is_some_and(|t| t != 0 && t <= now) {
                continue;
            }
            if seen.insert(entry.spiffe_id.clone()) {
                frontier.push(entry.spiffe_id.clone());
            }
            out.insert(entry.id.clone(), entry);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Selector;
    use crate::store::SledStore;

    fn entry(id: &str, spiffe: &str, parent: &str) -> RegistrationEntry {
        RegistrationEntry {
            id: id.into(),
            ..RegistrationEntry::new(
                SpiffeId::parse(spiffe).unwrap(),
                SpiffeId::parse(parent).unwrap(),
                vec![Selector::parse(&format!("unix:uid:{id}")).unwrap()],
            )
        }
    }

    #[test]
    fn direct_nested_and_foreign_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let agent = "spiffe://example.org/herald/agent/a";
        store
            .create_entry(entry("1", "spiffe://example.org/node-alias", agent))
            .unwrap();
        store
            .create_entry(entry(
                "2",
                "spiffe://example.org/web",
                "spiffe://example.org/node-alias",
            ))
            .unwrap();
        store
            .create_entry(entry(
                "3",
                "spiffe://example.org/other",
                "spiffe://example.org/herald/agent/b",
            ))
            .unwrap();
        let mut expired = entry("4", "spiffe://example.org/old", agent);
        expired.expires_at = Some(100);
        store.create_entry(expired).unwrap();
        // A cycle must not loop forever.
        store
            .create_entry(entry(
                "5",
                "spiffe://example.org/node-alias",
                "spiffe://example.org/web",
            ))
            .unwrap();
        let got = authorized_entries(&store, &SpiffeId::parse(agent).unwrap(), 1000).unwrap();
        let ids: Vec<_> = got.keys().cloned().collect();
        assert_eq!(ids, vec!["1", "2", "5"]);
    }
}

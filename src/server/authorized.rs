//! Which registration entries an agent may receive and sign for.
//!
//! An agent is authorized for every entry whose parent is the agent itself
//! or a node alias naming it (an alias entry, parented to the server, whose
//! node selectors the agent's attestation all showed: see
//! [`crate::registration::node_alias`]), and, transitively, for entries
//! whose parent is the SPIFFE ID of an entry it is already authorized for
//! (SPIRE's nesting model). The alias entries themselves are not sent: no
//! workload is issued an alias ID. Expired entries are left out. Nothing
//! else: deny unless an entry allows.
//!
//! Signing asks [`signable_entries`], which judges each requested entry by
//! its current record, never by a set computed earlier: an agent's Sync
//! stream recomputes its set only as fast as the agent reads, and a slow
//! reader must not keep an expired, deleted or re-parented entry signable.

use std::collections::{BTreeMap, HashSet};

use super::node_aliases::NodeAliases;
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::SpiffeId;
use crate::store::{entry_expired, DataStore, StoreError};

/// The entries `agent` is authorized for at `now`, by entry ID, with the
/// node aliases as the store holds them now.
pub fn authorized_entries(
    store: &dyn DataStore,
    agent: &SpiffeId,
    now: i64,
) -> Result<BTreeMap<String, RegistrationEntry>, StoreError> {
    let aliases = aliases_of(store, agent, now)?;
    authorized_under(store, agent, &aliases, now)
}

/// The node selectors `agent`'s attestation recorded (none if it has no
/// record).
pub fn agent_selectors(
    store: &dyn DataStore,
    agent: &SpiffeId,
) -> Result<Vec<Selector>, StoreError> {
    Ok(store
        .get_agent(agent)?
        .map(|a| a.selectors)
        .unwrap_or_default())
}

/// The alias IDs naming `agent` at `now`, read from the store now. An
/// agent without node selectors (a join token's) costs one lookup.
pub fn aliases_of(
    store: &dyn DataStore,
    agent: &SpiffeId,
    now: i64,
) -> Result<Vec<SpiffeId>, StoreError> {
    let selectors = agent_selectors(store, agent)?;
    if selectors.is_empty() {
        return Ok(Vec::new());
    }
    Ok(NodeAliases::load(store, agent.trust_domain())?.matching(&selectors, now))
}

/// The entries authorized for `agent` when `aliases` are the alias IDs
/// naming it: those under the agent or an alias, and, transitively, those
/// under the SPIFFE ID of one of them.
///
/// Walked one nesting level at a time, each level one store call
/// ([`DataStore::entries_by_parents`]): on PostgreSQL, asking for the
/// children of each entry in turn cost a round trip per entry the agent
/// holds, on every recomputation of its set.
pub fn authorized_under(
    store: &dyn DataStore,
    agent: &SpiffeId,
    aliases: &[SpiffeId],
    now: i64,
) -> Result<BTreeMap<String, RegistrationEntry>, StoreError> {
    let mut out = BTreeMap::new();
    let mut seen: HashSet<SpiffeId> = HashSet::new();
    let mut level = Vec::with_capacity(1 + aliases.len());
    for root in std::iter::once(agent).chain(aliases) {
        if seen.insert(root.clone()) {
            level.push(root.clone());
        }
    }
    while !level.is_empty() {
        let mut next = Vec::new();
        for entry in store.entries_by_parents(&level)? {
            if entry_expired(entry.expires_at, now) {
                continue;
            }
            if seen.insert(entry.spiffe_id.clone()) {
                next.push(entry.spiffe_id.clone());
            }
            out.insert(entry.id.clone(), entry);
        }
        level = next;
    }
    Ok(out)
}

/// Those of `ids` that `agent` may have an SVID signed for at `now`, by
/// entry ID, as the store holds them now. The entries are read in one
/// call; one whose parent is the agent needs nothing more; one whose
/// parent is an alias naming the agent is judged by the aliases and the
/// agent record, read at most once per call; a nested one by a fresh
/// [`authorized_entries`] walk, made at most once per call.
pub fn signable_entries(
    store: &dyn DataStore,
    agent: &SpiffeId,
    ids: &[String],
    now: i64,
) -> Result<BTreeMap<String, RegistrationEntry>, StoreError> {
    let mut out = BTreeMap::new();
    let mut aliases: Option<Vec<SpiffeId>> = None;
    let mut walked: Option<BTreeMap<String, RegistrationEntry>> = None;
    // One read for the whole batch (one query on PostgreSQL), each id once.
    for entry in store.get_entries(ids)? {
        if entry_expired(entry.expires_at, now) {
            continue;
        }
        if &entry.parent_id == agent {
            out.insert(entry.id.clone(), entry);
            continue;
        }
        let naming = match &mut aliases {
            Some(a) => a,
            None => aliases.insert(aliases_of(store, agent, now)?),
        };
        if naming.contains(&entry.parent_id) {
            out.insert(entry.id.clone(), entry);
            continue;
        }
        let all = match &mut walked {
            Some(all) => all,
            None => walked.insert(authorized_under(store, agent, naming, now)?),
        };
        if let Some(entry) = all.remove(&entry.id) {
            out.insert(entry.id.clone(), entry);
        }
    }
    Ok(out)
}

/// What a batch of entry writes can change, for telling which agents'
/// sets it touches without recomputing each one: the written entries'
/// parents (for deletions, the parents they had) and their IDs.
///
/// An agent's set changes only if a written entry hangs under the agent
/// or under the SPIFFE ID of an entry already in its set (a creation, or
/// an entry moved in), or is itself in the set (an update, a deletion, an
/// entry moved out or renamed): see [`EntryChanges::touches`]. With a
/// thousand agents connected, one entry written wakes one Sync stream's
/// recomputation instead of a thousand.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EntryChanges {
    parents: HashSet<String>,
    ids: HashSet<String>,
    /// A node alias was written: it names agents by their selectors, so
    /// any agent may be touched.
    alias: bool,
}

/// What an agent's Sync stream keeps of each entry it sent: enough to
/// diff the next recomputation (the revision), to tell which writes touch
/// the agent (the SPIFFE ID) and to wake at the next expiry. A fifth of
/// the whole entry, held for every entry of every connected agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// The entry's revision when it was sent.
    pub revision: u64,
    /// Its SPIFFE ID (entries nested under it belong to the agent too).
    pub spiffe_id: Box<str>,
    /// When it stops applying, if ever.
    pub expires_at: Option<i64>,
}

/// An agent's entries as its Sync stream last sent them, by entry ID.
pub type SentEntries = BTreeMap<Box<str>, SentEntry>;

/// The part of `entries` a Sync stream keeps.
pub fn sent_form(entries: &BTreeMap<String, RegistrationEntry>) -> SentEntries {
    entries
        .iter()
        .map(|(id, e)| {
            let sent = SentEntry {
                revision: e.revision,
                spiffe_id: e.spiffe_id.as_str().into(),
                expires_at: e.expires_at,
            };
            (id.as_str().into(), sent)
        })
        .collect()
}

impl EntryChanges {
    /// Notes an entry as written (created, updated: its new record;
    /// deleted: the record it had).
    pub fn record(&mut self, entry: &RegistrationEntry) {
        self.parents.insert(entry.parent_id.as_str().to_owned());
        self.ids.insert(entry.id.clone());
        self.alias |= crate::registration::node_alias::is_alias_entry(entry);
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the writes may change the set of `agent`, whose set was
    /// `current` (as [`authorized_entries`] computed it) before them.
    pub fn touches(&self, agent: &SpiffeId, current: &SentEntries) -> bool {
        self.alias
            || self.parents.contains(agent.as_str())
            || current
                .iter()
                .any(|(id, e)| self.ids.contains(&**id) || self.parents.contains(&*e.spiffe_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Selector;
    use crate::store::{SledStore, TimedStore};

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

    /// How many calls of `op` `latency` observed, as a scrape shows them.
    fn calls(latency: &crate::store::StoreLatency, op: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("store", "store calls", latency.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let count = format!("store_count{{op=\"{op}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&count))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// The set is walked one store call per nesting level, however many
    /// entries a level holds: on PostgreSQL each call is a round trip, and
    /// one per entry made every change cost a round trip per entry the
    /// agent holds.
    #[test]
    fn the_walk_asks_the_store_once_per_nesting_level() {
        let dir = tempfile::tempdir().unwrap();
        let latency = crate::server::metrics::ServerMetrics::default().store_latency();
        let store = TimedStore::new(SledStore::open(dir.path()).unwrap(), latency.clone());
        let agent = "spiffe://example.org/herald/agent/a";
        for i in 0..50 {
            let spiffe = format!("spiffe://example.org/w{i}");
            store
                .create_entry(entry(&i.to_string(), &spiffe, agent))
                .unwrap();
        }
        store
            .create_entry(entry(
                "nested",
                "spiffe://example.org/nested",
                "spiffe://example.org/w7",
            ))
            .unwrap();
        let got = authorized_entries(&store, &SpiffeId::parse(agent).unwrap(), 1000).unwrap();
        assert_eq!(got.len(), 51);
        let calls = |op| calls(&latency, op);
        assert_eq!(calls("entries_by_parent"), 0, "one call per entry");
        // The agent's level, its 50 entries' level, the nested entry's.
        assert_eq!(calls("entries_by_parents"), 3);
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// What a Sync stream cached before the changes authorizes nothing
    /// the store no longer does: signing judges by current records.
    #[test]
    fn signing_sees_deletion_expiry_and_reparenting_a_cached_set_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let agent_s = "spiffe://example.org/herald/agent/a";
        let agent = SpiffeId::parse(agent_s).unwrap();
        store
            .create_entry(entry("alias", "spiffe://example.org/node-alias", agent_s))
            .unwrap();
        store
            .create_entry(entry(
                "nested",
                "spiffe://example.org/web",
                "spiffe://example.org/node-alias",
            ))
            .unwrap();
        store
            .create_entry(entry("gone", "spiffe://example.org/gone", agent_s))
            .unwrap();
        let mut expiring = entry("expiring", "spiffe://example.org/exp", agent_s);
        expiring.expires_at = Some(2000);
        store.create_entry(expiring).unwrap();
        let moved = store
            .create_entry(entry("moved", "spiffe://example.org/moved", agent_s))
            .unwrap();

        let all = ids(&["alias", "nested", "gone", "expiring", "moved"]);
        // What a stream computed (and a stalled one would keep) at 1000.
        let cached = authorized_entries(&store, &agent, 1000).unwrap();
        assert_eq!(cached.len(), 5);
        let now = signable_entries(&store, &agent, &all, 1000).unwrap();
        assert_eq!(now.len(), 5, "{:?}", now.keys());

        store.delete_entries(&ids(&["gone", "alias"])).unwrap();
        store
            .update_entry(RegistrationEntry {
                parent_id: SpiffeId::parse("spiffe://example.org/herald/agent/b").unwrap(),
                ..moved
            })
            .unwrap();
        // The cached set still has all five; at 2000 none is signable:
        // deleted, nested under a deleted alias, expired, re-parented.
        assert_eq!(cached.len(), 5);
        let later = signable_entries(&store, &agent, &all, 2000).unwrap();
        assert!(later.is_empty(), "{:?}", later.keys());
        // Unknown and repeated IDs are simply not signable.
        let odd = signable_entries(&store, &agent, &ids(&["nope", "nope"]), 2000).unwrap();
        assert!(odd.is_empty());
    }

    fn attested(store: &SledStore, agent: &str, selectors: &[&str]) {
        store
            .attest_agent(&crate::store::AttestedAgent {
                spiffe_id: SpiffeId::parse(agent).unwrap(),
                attestation_type: "x509pop".into(),
                serial: "01".into(),
                expires_at: 10_000,
                banned: false,
                selectors: selectors
                    .iter()
                    .map(|s| Selector::parse(s).unwrap())
                    .collect(),
                created_at: 0,
                updated_at: 0,
            })
            .unwrap();
    }

    fn alias(id: &str, spiffe: &str, selectors: &[&str]) -> RegistrationEntry {
        RegistrationEntry {
            id: id.into(),
            ..RegistrationEntry::new(
                SpiffeId::parse(spiffe).unwrap(),
                SpiffeId::parse("spiffe://example.org/herald/server").unwrap(),
                selectors
                    .iter()
                    .map(|s| Selector::parse(s).unwrap())
                    .collect(),
            )
        }
    }

    /// Agents get the entries under every alias whose selectors they all
    /// show (and what nests under those), never the alias entry itself;
    /// signing follows the aliases as they are now.
    #[test]
    fn entries_under_a_node_alias_reach_exactly_the_agents_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (a, b, c) = (
            "spiffe://example.org/herald/agent/x509pop/a",
            "spiffe://example.org/herald/agent/x509pop/b",
            "spiffe://example.org/herald/agent/join_token/c",
        );
        attested(
            &store,
            a,
            &["x509pop:ca:fingerprint:f1", "x509pop:subject:cn:a"],
        );
        attested(
            &store,
            b,
            &["x509pop:ca:fingerprint:f2", "x509pop:subject:cn:b"],
        );
        attested(&store, c, &[]);
        let fleet = "spiffe://example.org/fleet";
        store
            .create_entry(alias("alias", fleet, &["x509pop:ca:fingerprint:f1"]))
            .unwrap();
        store
            .create_entry(alias(
                "alias-cn-b",
                fleet,
                &["x509pop:subject:cn:b", "x509pop:ca:fingerprint:f2"],
            ))
            .unwrap();
        store
            .create_entry(entry("web", "spiffe://example.org/web", fleet))
            .unwrap();
        store
            .create_entry(entry(
                "nested",
                "spiffe://example.org/sub",
                "spiffe://example.org/web",
            ))
            .unwrap();
        let keys = |agent: &str| -> Vec<String> {
            authorized_entries(&store, &SpiffeId::parse(agent).unwrap(), 1000)
                .unwrap()
                .into_keys()
                .collect()
        };
        assert_eq!(keys(a), ["nested", "web"]);
        assert_eq!(keys(b), ["nested", "web"]);
        assert!(keys(c).is_empty(), "no selectors, no alias");
        let signable = |agent: &str| -> Vec<String> {
            signable_entries(
                &store,
                &SpiffeId::parse(agent).unwrap(),
                &ids(&["web", "nested", "alias"]),
                1000,
            )
            .unwrap()
            .into_keys()
            .collect()
        };
        assert_eq!(
            signable(a),
            ["nested", "web"],
            "an alias entry is never signable"
        );
        assert!(signable(c).is_empty());

        // The alias naming a is gone: a loses both, b keeps them.
        store.delete_entries(&ids(&["alias"])).unwrap();
        assert!(keys(a).is_empty());
        assert!(signable(a).is_empty());
        assert_eq!(keys(b), ["nested", "web"]);
        // An expired alias names nobody.
        let mut expiring = store.get_entry("alias-cn-b").unwrap().unwrap();
        expiring.expires_at = Some(500);
        store.update_entry(expiring).unwrap();
        assert!(keys(b).is_empty());
    }

    /// Every kind of write that changes an agent's set touches it; writes
    /// under other agents do not.
    #[test]
    fn entry_changes_touch_exactly_the_agents_whose_sets_can_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let a = SpiffeId::parse("spiffe://example.org/herald/agent/a").unwrap();
        let b = SpiffeId::parse("spiffe://example.org/herald/agent/b").unwrap();
        let alias = store
            .create_entry(entry(
                "alias",
                "spiffe://example.org/node-alias",
                a.as_str(),
            ))
            .unwrap();
        let set_a = sent_form(&authorized_entries(&store, &a, 1000).unwrap());
        let set_b = sent_form(&authorized_entries(&store, &b, 1000).unwrap());
        let touched = |written: &[&RegistrationEntry]| {
            let mut c = EntryChanges::default();
            for e in written {
                c.record(e);
            }
            (c.touches(&a, &set_a), c.touches(&b, &set_b))
        };
        // Created under agent a, and under a's alias (nested).
        let direct = entry("d", "spiffe://example.org/d", a.as_str());
        let nested = entry(
            "n",
            "spiffe://example.org/n",
            "spiffe://example.org/node-alias",
        );
        assert_eq!(touched(&[&direct]), (true, false));
        assert_eq!(touched(&[&nested]), (true, false));
        // The alias itself updated, renamed or deleted (its own record).
        let renamed = RegistrationEntry {
            spiffe_id: SpiffeId::parse("spiffe://example.org/renamed").unwrap(),
            ..alias.clone()
        };
        assert_eq!(touched(&[&renamed]), (true, false));
        // Moved from a to b: its new record names b, its ID is in a's set.
        let moved = RegistrationEntry {
            parent_id: b.clone(),
            ..alias.clone()
        };
        assert_eq!(touched(&[&moved]), (true, true));
        // Elsewhere: nobody.
        let other = entry("o", "spiffe://example.org/o", "spiffe://example.org/nobody");
        assert_eq!(touched(&[&other]), (false, false));
        assert!(EntryChanges::default().is_empty());
    }
}

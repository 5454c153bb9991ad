//! Registration entries that give a workload identities it was not meant
//! to have, and entries that no agent will ever receive.
//!
//! A workload gets an entry's SPIFFE ID when the entry's selectors are all
//! among the workload's (SPIFFE.md, registration entries), on an agent the
//! entry is authorized for: its parent, or an agent authorized for an entry
//! whose SPIFFE ID is the parent, or an agent a node alias names (an entry
//! parented to the server, whose node selectors the agent all shows;
//! `server/authorized.rs`). So two entries
//! that one agent can receive, with different SPIFFE IDs, where one's
//! selectors are a subset of the other's, hand a workload matching the
//! larger set both identities.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Finding, Inventory, Object, Severity};
use crate::proto::admin;
use crate::registration::node_alias::SERVER_PATH;

/// The prefix of every agent ID the server grants, after the trust domain.
const AGENT_PATH: &str = "/herald/agent/";

/// Selector overlaps and parents, over the entries that have not expired.
/// Node alias entries (parented to the server) are not given to workloads:
/// they stand for the agents whose selectors they name.
pub(super) fn check(inv: &Inventory) -> Vec<Finding> {
    let live: Vec<&admin::Entry> = inv
        .entries
        .iter()
        .filter(|e| e.expires_at == 0 || e.expires_at > inv.now)
        .collect();
    let server = format!("spiffe://{}{SERVER_PATH}", inv.trust_domain);
    let (aliases, workloads): (Vec<&admin::Entry>, Vec<&admin::Entry>) =
        live.iter().partition(|e| e.parent_id == server);
    let named = alias_agents(inv, &aliases);
    let mut out = overlaps(&workloads, &named);
    out.extend(parents(inv, &workloads, &live));
    out.extend(idle_aliases(&aliases, &named));
    out
}

/// An entry's selectors as `type:value` strings.
fn selector_set(e: &admin::Entry) -> BTreeSet<String> {
    selector_strings(&e.selectors)
}

fn selector_strings(selectors: &[admin::Selector]) -> BTreeSet<String> {
    selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect()
}

/// For each alias ID, the agents (not banned) whose selectors include every
/// selector of an alias entry granting it.
fn alias_agents<'a>(
    inv: &Inventory,
    aliases: &[&'a admin::Entry],
) -> HashMap<&'a str, BTreeSet<String>> {
    let agents: Vec<(&str, BTreeSet<String>)> = inv
        .agents
        .iter()
        .filter(|a| !a.banned)
        .map(|a| (a.id.as_str(), selector_strings(&a.selectors)))
        .collect();
    let mut out: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for alias in aliases {
        let wanted = selector_set(alias);
        let members = out.entry(alias.spiffe_id.as_str()).or_default();
        for (id, have) in &agents {
            if !wanted.is_empty() && wanted.is_subset(have) {
                members.insert(id.to_string());
            }
        }
    }
    out
}

/// The IDs at the top of each entry's parent chain: the agents (directly,
/// or named by a node alias; an alias naming none stands for itself), or
/// IDs nothing stands for, from which the entry can be reached.
fn roots(
    entries: &[&admin::Entry],
    named: &HashMap<&str, BTreeSet<String>>,
) -> Vec<BTreeSet<String>> {
    let mut parents_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in entries {
        parents_of
            .entry(e.spiffe_id.as_str())
            .or_default()
            .push(e.parent_id.as_str());
    }
    entries
        .iter()
        .map(|e| {
            let mut found = BTreeSet::new();
            let mut seen: HashSet<&str> = HashSet::new();
            let mut stack = vec![e.parent_id.as_str()];
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                let alias = named.get(id);
                match alias {
                    Some(agents) if agents.is_empty() => {
                        found.insert(id.to_string());
                    }
                    Some(agents) => found.extend(agents.iter().cloned()),
                    None => {}
                }
                match parents_of.get(id) {
                    Some(ps) => stack.extend(ps.iter().copied()),
                    None if alias.is_none() => {
                        found.insert(id.to_string());
                    }
                    None => {}
                }
            }
            found
        })
        .collect()
}

/// Pairs of entries one agent can receive whose selector sets nest.
fn overlaps(entries: &[&admin::Entry], named: &HashMap<&str, BTreeSet<String>>) -> Vec<Finding> {
    let sets: Vec<BTreeSet<String>> = entries.iter().map(|e| selector_set(e)).collect();
    let mut by_root: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, rs) in roots(entries, named).into_iter().enumerate() {
        for r in rs {
            by_root.entry(r).or_default().push(i);
        }
    }
    let mut reported: HashSet<(usize, usize)> = HashSet::new();
    let mut out = Vec::new();
    let mut groups: Vec<&Vec<usize>> = by_root.values().collect();
    groups.sort();
    for group in groups {
        let mut posting: HashMap<&str, Vec<usize>> = HashMap::new();
        for &i in group {
            for s in &sets[i] {
                posting.entry(s.as_str()).or_default().push(i);
            }
        }
        for &small in group {
            // Every superset of `small`'s set holds its rarest selector.
            let Some(candidates) = sets[small]
                .iter()
                .filter_map(|s| posting.get(s.as_str()))
                .min_by_key(|p| p.len())
            else {
                continue;
            };
            for &large in candidates {
                if small == large || entries[small].spiffe_id == entries[large].spiffe_id {
                    continue;
                }
                if !sets[small].is_subset(&sets[large]) {
                    continue;
                }
                let identical = sets[small] == sets[large];
                let key = if identical {
                    (small.min(large), small.max(large))
                } else {
                    (small, large)
                };
                if reported.insert(key) {
                    out.push(overlap(entries[key.0], entries[key.1], identical));
                }
            }
        }
    }
    out
}

fn overlap(small: &admin::Entry, large: &admin::Entry, identical: bool) -> Finding {
    let (severity, message, remedy) = match identical {
        true => (
            Severity::Error,
            format!(
                "has the same selectors as entry {} ({}), on an agent both can reach: every workload that matches one gets both SPIFFE IDs, and cannot tell which to use",
                large.id, large.spiffe_id
            ),
            "give each entry a selector the other's workloads lack, or delete the one that is not meant".to_string(),
        ),
        false => (
            Severity::Warning,
            format!(
                "its selectors are a subset of entry {}'s ({}), on an agent both can reach: a workload matching that entry also gets {}",
                large.id, large.spiffe_id, small.spiffe_id
            ),
            format!(
                "if {} is not meant for the workloads of entry {}, add a selector to this entry that they lack",
                small.spiffe_id, large.id
            ),
        ),
    };
    Finding {
        severity,
        check: "selector_overlap",
        object: Object::entry(small),
        message,
        remedy,
    }
}

/// Entries whose parent is neither an attested agent nor another entry's
/// SPIFFE ID (an alias's included, from `live`): no agent receives them,
/// so no workload gets their identity.
fn parents(inv: &Inventory, entries: &[&admin::Entry], live: &[&admin::Entry]) -> Vec<Finding> {
    let agents: HashSet<&str> = inv.agents.iter().map(|a| a.id.as_str()).collect();
    let granted: HashSet<&str> = live.iter().map(|e| e.spiffe_id.as_str()).collect();
    let agent_prefix = format!("spiffe://{}{AGENT_PATH}", inv.trust_domain);
    let mut out = Vec::new();
    for e in entries {
        let parent = e.parent_id.as_str();
        if agents.contains(parent) || granted.contains(parent) {
            continue;
        }
        let finding = if parent.starts_with(&agent_prefix) {
            Finding {
                severity: Severity::Info,
                check: "entry_parent",
                object: Object::entry(e),
                message: format!(
                    "its parent {parent} is an agent ID, but no agent with it has attested yet; the entry waits for that agent"
                ),
                remedy: "nothing, if that agent is still to come; otherwise re-parent or delete the entry".into(),
            }
        } else {
            Finding {
                severity: Severity::Warning,
                check: "entry_parent",
                object: Object::entry(e),
                message: format!(
                    "its parent {parent} is no attested agent and no entry's SPIFFE ID: no agent receives this entry, so no workload gets {}",
                    e.spiffe_id
                ),
                remedy: "set the parent to the agent (or node alias entry) of the nodes where the workload runs".into(),
            }
        };
        out.push(finding);
    }
    out
}

/// Node alias entries that name no attested agent: the entries under
/// them reach no workload until such an agent attests.
fn idle_aliases(
    aliases: &[&admin::Entry],
    named: &HashMap<&str, BTreeSet<String>>,
) -> Vec<Finding> {
    aliases
        .iter()
        .filter(|a| named.get(a.spiffe_id.as_str()).is_none_or(BTreeSet::is_empty))
        .map(|a| Finding {
            severity: Severity::Info,
            check: "node_alias",
            object: Object::entry(a),
            message: format!(
                "this node alias names no attested agent: none shows all of {}; the entries under {} wait for one",
                selector_set(a).into_iter().collect::<Vec<_>>().join(", "),
                a.spiffe_id
            ),
            remedy: "nothing, if those nodes are still to come; otherwise compare with the selectors `herald agent show` lists".into(),
        })
        .collect()
}

#[cfg(test)]
#[path = "entries_tests.rs"]
mod tests;

//! Agents behind on the trust bundle, and agents not seen for long.
//!
//! A prepared authority becomes active only once every connected agent
//! acknowledged the bundle that carries it, or at the activation deadline
//! (`server/rotation.rs`); an agent that lags past it hands its workloads
//! a bundle that cannot verify the new SVIDs. An agent gone for long is
//! either a node that died (evict it, so its entries stop being signable)
//! or one that cannot reach the server.

use std::collections::BTreeSet;

use super::{human_secs, Finding, Inventory, Object, Options, Severity};

/// Bundle acknowledgements and last contact.
pub(super) fn check(inv: &Inventory, opts: &Options) -> Vec<Finding> {
    let seq = inv.authorities.bundle_sequence;
    let mut lagging: BTreeSet<&str> = inv
        .authorities
        .lagging_agents
        .iter()
        .map(String::as_str)
        .collect();
    lagging.extend(
        inv.agents
            .iter()
            .filter(|a| a.connected && a.acked_bundle_sequence < seq)
            .map(|a| a.id.as_str()),
    );
    let mut out: Vec<Finding> = lagging
        .into_iter()
        .map(|id| Finding {
            severity: Severity::Warning,
            check: "agent_bundle_ack",
            object: Object::Agent { id: id.into() },
            message: format!(
                "connected, but has not acknowledged the current bundle (sequence {seq}): a new authority waits for it, and is activated without it at the deadline, when its workloads cannot verify the new SVIDs"
            ),
            remedy: "look at the agent's log for Sync errors; restart it, or evict it if the node is gone (herald agent evict --spiffe-id ...)".into(),
        })
        .collect();
    for a in inv.agents.iter().filter(|a| !a.connected && !a.banned) {
        let away = inv.now - a.last_seen_at;
        if away > opts.stale_agent_after {
            out.push(Finding {
                severity: Severity::Warning,
                check: "agent_stale",
                object: Object::Agent { id: a.id.clone() },
                message: format!(
                    "not connected, and not seen for {} (longer than {}): the entries parented to it stay signable for whoever holds its credential",
                    human_secs(away),
                    human_secs(opts.stale_agent_after)
                ),
                remedy: format!(
                    "if the node is gone, herald agent evict --spiffe-id {}; otherwise find why it cannot reach the server",
                    a.id
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vet::testdata::{agent, inventory, AGENT, DAY, NOW, OPTS};

    fn checks(inv: &Inventory) -> Vec<(&'static str, Object)> {
        check(inv, &OPTS)
            .into_iter()
            .map(|f| (f.check, f.object))
            .collect()
    }

    fn obj(id: &str) -> Object {
        Object::Agent { id: id.into() }
    }

    #[test]
    fn a_connected_agent_that_acknowledged_is_fine() {
        assert!(checks(&inventory()).is_empty());
    }

    #[test]
    fn a_connected_agent_behind_the_bundle_is_lagging_once() {
        let mut inv = inventory();
        inv.authorities.bundle_sequence = 4;
        inv.authorities.lagging_agents = vec![AGENT.into()];
        let f = check(&inv, &OPTS);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].severity, f[0].check),
            (Severity::Warning, "agent_bundle_ack")
        );
        assert!(f[0].message.contains("sequence 4"));
    }

    #[test]
    fn a_disconnected_agent_is_not_lagging_but_stale_after_the_threshold() {
        let mut inv = inventory();
        inv.authorities.bundle_sequence = 4;
        let mut a = agent(AGENT);
        a.connected = false;
        a.acked_bundle_sequence = 0;
        a.last_seen_at = NOW - DAY;
        inv.agents = vec![a.clone()];
        assert!(
            checks(&inv).is_empty(),
            "exactly the threshold is not stale"
        );
        a.last_seen_at = NOW - DAY - 1;
        inv.agents = vec![a];
        assert_eq!(checks(&inv), [("agent_stale", obj(AGENT))]);
    }

    #[test]
    fn a_banned_agent_is_expected_to_be_gone() {
        let mut inv = inventory();
        let mut a = agent(AGENT);
        a.connected = false;
        a.banned = true;
        a.last_seen_at = NOW - 30 * DAY;
        inv.agents = vec![a];
        assert!(checks(&inv).is_empty());
    }
}

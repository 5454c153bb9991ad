//! The overview: the trust domain at a glance. Its authorities on a
//! rotation timeline (prepared, active, old, with when the next one is
//! prepared and activated: `server::rotation`'s schedule), the bundle and
//! the share of connected agents that acknowledged it, the outage budget,
//! and how many entries, agents, relationships and findings there are.

use serde::Serialize;

use crate::proto::admin;
use crate::server::rotation::Window;
use crate::server::state::ServerState;
use crate::vet::{vet, Inventory, Options, Severity};

#[derive(Debug, Serialize)]
pub(super) struct Overview {
    trust_domain: String,
    now: i64,
    bundle: BundleView,
    authorities: Vec<Authority>,
    /// Per kind, when the active authority's successor is prepared and
    /// activated.
    schedule: Vec<Schedule>,
    settings: Settings,
    upstream: Vec<Upstream>,
    outage_budget: Option<OutageBudget>,
    counts: Counts,
}

#[derive(Debug, Serialize)]
struct BundleView {
    sequence: u64,
    agents_connected: usize,
    agents_acked: usize,
    /// Connected agents that have not acknowledged it.
    lagging: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Authority {
    kind: String,
    id: String,
    state: String,
    tainted: bool,
    not_before: i64,
    not_after: i64,
    /// X.509: the CA certificate's serial; JWT: the key ID. Public.
    key_id: String,
    bundle_sequence: u64,
}

#[derive(Debug, Serialize)]
struct Schedule {
    kind: String,
    prepare_at: i64,
    activate_at: i64,
}

#[derive(Debug, Serialize)]
struct Settings {
    ca_ttl: i64,
    default_x509_svid_ttl: i64,
    default_jwt_svid_ttl: i64,
}

#[derive(Debug, Serialize)]
struct Upstream {
    serial: String,
    not_after: i64,
    root: bool,
}

/// How long workloads keep valid X509-SVIDs if this server stopped now:
/// agents renew an SVID before half its lifetime, so a connected agent
/// holds each one with at least half of it left, and none outlives the
/// active authority.
#[derive(Debug, Serialize)]
struct OutageBudget {
    seconds: i64,
    until: i64,
    /// The shortest X509-SVID lifetime of any entry.
    shortest_x509_svid_ttl: i64,
    /// Whether the active authority's expiry is what limits it.
    limited_by_authority: bool,
    /// The connected agent whose own SVID expires first: it must renew it
    /// before then, or attest again.
    earliest_agent: Option<AgentExpiry>,
}

#[derive(Debug, Serialize)]
struct AgentExpiry {
    id: String,
    svid_expires_at: i64,
}

#[derive(Debug, Serialize)]
struct Counts {
    entries: usize,
    agents: usize,
    agents_connected: usize,
    agents_banned: usize,
    relationships: usize,
    findings: FindingCounts,
}

#[derive(Debug, Serialize)]
pub(super) struct FindingCounts {
    pub(super) error: usize,
    pub(super) warning: usize,
    pub(super) info: usize,
}

impl FindingCounts {
    pub(super) fn of(findings: &[crate::vet::Finding]) -> Self {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        FindingCounts {
            error: count(Severity::Error),
            warning: count(Severity::Warning),
            info: count(Severity::Info),
        }
    }
}

pub(super) fn overview(state: &ServerState, inv: &Inventory) -> Overview {
    let shown = &inv.authorities;
    let sequence = shown.bundle_sequence;
    let (agents_connected, agents_acked) = state.agent_ack_counts(sequence);
    let authorities: Vec<Authority> = shown.authorities.iter().map(authority).collect();
    let schedule = authorities
        .iter()
        .filter(|a| a.state == "active")
        .map(|a| {
            let w = Window {
                not_before: a.not_before,
                not_after: a.not_after,
            };
            Schedule {
                kind: a.kind.clone(),
                prepare_at: w.prepare_at(),
                activate_at: w.activate_at(),
            }
        })
        .collect();
    Overview {
        trust_domain: inv.trust_domain.clone(),
        now: inv.now,
        bundle: BundleView {
            sequence,
            agents_connected,
            agents_acked,
            lagging: shown.lagging_agents.clone(),
        },
        outage_budget: outage_budget(inv, &authorities),
        authorities,
        schedule,
        settings: Settings {
            ca_ttl: shown.ca_ttl,
            default_x509_svid_ttl: shown.default_x509_svid_ttl,
            default_jwt_svid_ttl: shown.default_jwt_svid_ttl,
        },
        upstream: shown
            .upstream_certificates
            .iter()
            .map(|u| Upstream {
                serial: u.serial.clone(),
                not_after: u.not_after,
                root: u.root,
            })
            .collect(),
        counts: Counts {
            entries: inv.entries.len(),
            agents: inv.agents.len(),
            agents_connected: inv.agents.iter().filter(|a| a.connected).count(),
            agents_banned: inv.agents.iter().filter(|a| a.banned).count(),
            relationships: inv.relationships.len(),
            findings: FindingCounts::of(&vet(inv, &Options::default())),
        },
    }
}

fn authority(a: &admin::AuthorityInfo) -> Authority {
    Authority {
        kind: a.kind.clone(),
        id: a.id.clone(),
        state: a.state.clone(),
        tainted: a.tainted,
        not_before: a.not_before,
        not_after: a.not_after,
        key_id: a.key_id.clone(),
        bundle_sequence: a.bundle_sequence,
    }
}

/// `None` when no entry exists (no workload to lose an SVID).
fn outage_budget(inv: &Inventory, authorities: &[Authority]) -> Option<OutageBudget> {
    let default_ttl = inv.authorities.default_x509_svid_ttl;
    let shortest = inv
        .entries
        .iter()
        .map(|e| match i64::from(e.x509_svid_ttl) {
            0 => default_ttl,
            ttl => ttl,
        })
        .min()?;
    let by_renewal = shortest / 2;
    let active_x509 = authorities
        .iter()
        .find(|a| a.kind == "x509" && a.state == "active")
        .map(|a| (a.not_after - inv.now).max(0));
    let limited_by_authority = active_x509.is_some_and(|left| left < by_renewal);
    let seconds = active_x509.map_or(by_renewal, |left| left.min(by_renewal));
    let earliest_agent = inv
        .agents
        .iter()
        .filter(|a| a.connected && !a.banned)
        .min_by_key(|a| a.x509svid_expires_at)
        .map(|a| AgentExpiry {
            id: a.id.clone(),
            svid_expires_at: a.x509svid_expires_at,
        });
    Some(OutageBudget {
        seconds,
        until: inv.now + seconds,
        shortest_x509_svid_ttl: shortest,
        limited_by_authority,
        earliest_agent,
    })
}

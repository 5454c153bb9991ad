//! The agents, entries, federation and findings views.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::overview::FindingCounts;
use crate::ops::dashboard::{EntryField, EntryQuery};
use crate::proto::admin;
use crate::server::state::ServerState;
use crate::spiffe::SpiffeId;
use crate::vet::{vet, Finding, Inventory, Options};

#[derive(Debug, Serialize)]
pub(super) struct Agents {
    now: i64,
    bundle_sequence: u64,
    agents: Vec<AgentRow>,
}

#[derive(Debug, Serialize)]
struct AgentRow {
    id: String,
    attestation_type: String,
    selectors: Vec<String>,
    /// The agent SVID's serial (public, as on the certificate).
    serial: String,
    svid_expires_at: i64,
    banned: bool,
    connected: bool,
    acked_bundle_sequence: u64,
    /// Connected and holding the current bundle.
    bundle_acked: bool,
    last_seen_at: i64,
    /// Entries its Sync stream last sent it (connected agents only).
    entries: Option<usize>,
}

pub(super) fn agents(state: &ServerState, inv: &Inventory) -> Agents {
    let sequence = inv.authorities.bundle_sequence;
    let mut agents: Vec<AgentRow> = inv
        .agents
        .iter()
        .map(|a| AgentRow {
            id: a.id.clone(),
            attestation_type: a.attestation_type.clone(),
            selectors: selectors(&a.selectors),
            serial: a.x509svid_serial_number.clone(),
            svid_expires_at: a.x509svid_expires_at,
            banned: a.banned,
            connected: a.connected,
            acked_bundle_sequence: a.acked_bundle_sequence,
            bundle_acked: a.connected && a.acked_bundle_sequence >= sequence,
            last_seen_at: a.last_seen_at,
            entries: authorized(state, &a.id).map(|e| e.len()),
        })
        .collect();
    // Connected first, banned last, then by ID.
    agents.sort_by(|a, b| (!a.connected, a.banned, &a.id).cmp(&(!b.connected, b.banned, &b.id)));
    Agents {
        now: inv.now,
        bundle_sequence: sequence,
        agents,
    }
}

fn authorized(
    state: &ServerState,
    agent: &str,
) -> Option<std::sync::Arc<crate::server::state::AuthorizedEntries>> {
    state.authorized_for(&SpiffeId::parse(agent).ok()?)
}

fn selectors(s: &[admin::Selector]) -> Vec<String> {
    s.iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect()
}

#[derive(Debug, Serialize)]
pub(super) struct Entries {
    now: i64,
    q: String,
    field: &'static str,
    page: usize,
    page_size: usize,
    pages: usize,
    /// Entries that match.
    matched: usize,
    /// Entries in all.
    total: usize,
    entries: Vec<EntryRow>,
}

#[derive(Debug, Serialize)]
struct EntryRow {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
    x509_svid_ttl: i32,
    jwt_svid_ttl: i32,
    federates_with: Vec<String>,
    admin: bool,
    downstream: bool,
    expires_at: i64,
    dns_names: Vec<String>,
    hint: String,
    created_at: i64,
    revision: i64,
    /// The agents that hold it: connected agents it was last sent to, and
    /// its parent when that is an attested agent.
    agents: Vec<EntryAgent>,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct EntryAgent {
    id: String,
    connected: bool,
}

pub(super) fn entries(state: &ServerState, inv: &Inventory, q: &EntryQuery) -> Entries {
    let mut matched: Vec<(&admin::Entry, Vec<String>)> = inv
        .entries
        .iter()
        .map(|e| (e, selectors(&e.selectors)))
        .filter(|(e, s)| q.matches(&e.spiffe_id, &e.parent_id, s))
        .collect();
    matched.sort_by(|(a, _), (b, _)| (&a.spiffe_id, &a.id).cmp(&(&b.spiffe_id, &b.id)));
    let window = q.window(matched.len());
    let holders = holders(state, inv);
    let agents: BTreeMap<&str, bool> = inv
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.connected))
        .collect();
    let rows = matched[window]
        .iter()
        .map(|(e, selectors)| {
            let mut held: BTreeSet<EntryAgent> = holders
                .get(e.id.as_str())
                .into_iter()
                .flatten()
                .map(|id| EntryAgent {
                    id: id.to_string(),
                    connected: true,
                })
                .collect();
            if let Some(connected) = agents.get(e.parent_id.as_str()) {
                if !held.iter().any(|h| h.id == e.parent_id) {
                    held.insert(EntryAgent {
                        id: e.parent_id.clone(),
                        connected: *connected,
                    });
                }
            }
            EntryRow {
                id: e.id.clone(),
                spiffe_id: e.spiffe_id.clone(),
                parent_id: e.parent_id.clone(),
                selectors: selectors.clone(),
                x509_svid_ttl: e.x509_svid_ttl,
                jwt_svid_ttl: e.jwt_svid_ttl,
                federates_with: e.federates_with.clone(),
                admin: e.admin,
                downstream: e.downstream,
                expires_at: e.expires_at,
                dns_names: e.dns_names.clone(),
                hint: e.hint.clone(),
                created_at: e.created_at,
                revision: e.revision_number,
                agents: held.into_iter().collect(),
            }
        })
        .collect();
    Entries {
        now: inv.now,
        q: q.q.clone(),
        field: match q.field {
            EntryField::Any => "any",
            EntryField::SpiffeId => "spiffe_id",
            EntryField::Selector => "selector",
            EntryField::Parent => "parent",
        },
        page: q.page,
        page_size: q.page_size,
        pages: matched.len().div_ceil(q.page_size),
        matched: matched.len(),
        total: inv.entries.len(),
        entries: rows,
    }
}

/// Entry ID -> the connected agents whose Sync stream last sent it.
fn holders<'a>(state: &ServerState, inv: &'a Inventory) -> BTreeMap<String, Vec<&'a str>> {
    let mut out: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for agent in inv.agents.iter().filter(|a| a.connected) {
        if let Some(entries) = authorized(state, &agent.id) {
            for id in entries.keys() {
                out.entry(id.to_string()).or_default().push(&agent.id);
            }
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub(super) struct Federation {
    now: i64,
    relationships: Vec<Relationship>,
    /// Every federated bundle, with or without a relationship.
    bundles: Vec<FederatedBundle>,
}

#[derive(Debug, Serialize)]
struct Relationship {
    trust_domain: String,
    bundle_endpoint_url: String,
    profile: &'static str,
    endpoint_spiffe_id: String,
    /// `ok` (last refresh succeeded), `failing`, or `pending` (not tried
    /// yet).
    status: &'static str,
    last_attempt_at: i64,
    last_success_at: i64,
    last_error: String,
    consecutive_failures: u32,
    next_refresh_at: i64,
    bundle_sequence: u64,
    /// Entries that federate with it.
    entries: usize,
}

#[derive(Debug, Serialize)]
struct FederatedBundle {
    trust_domain: String,
    sequence: u64,
    relationship: bool,
    entries: usize,
}

pub(super) fn federation(inv: &Inventory) -> Federation {
    use admin::federation_relationship::BundleEndpointProfile as P;
    let federating = |td: &str| {
        inv.entries
            .iter()
            .filter(|e| e.federates_with.iter().any(|f| f == td))
            .count()
    };
    let relationships = inv
        .relationships
        .iter()
        .map(|r| {
            let status = r.refresh_status.clone().unwrap_or_default();
            let (profile, endpoint_spiffe_id) = match &r.bundle_endpoint_profile {
                Some(P::HttpsSpiffe(p)) => ("https_spiffe", p.endpoint_spiffe_id.clone()),
                Some(P::HttpsWeb(_)) | None => ("https_web", String::new()),
            };
            Relationship {
                trust_domain: r.trust_domain.clone(),
                bundle_endpoint_url: r.bundle_endpoint_url.clone(),
                profile,
                endpoint_spiffe_id,
                status: if status.consecutive_failures > 0 {
                    "failing"
                } else if status.last_success_at > 0 {
                    "ok"
                } else {
                    "pending"
                },
                last_attempt_at: status.last_attempt_at,
                last_success_at: status.last_success_at,
                last_error: status.last_error,
                consecutive_failures: status.consecutive_failures,
                next_refresh_at: status.next_refresh_at,
                bundle_sequence: status.bundle_sequence,
                entries: federating(&r.trust_domain),
            }
        })
        .collect();
    let bundles = inv
        .federated_bundles
        .iter()
        .map(|b| FederatedBundle {
            trust_domain: b.trust_domain.clone(),
            sequence: b.sequence_number,
            relationship: inv
                .relationships
                .iter()
                .any(|r| r.trust_domain == b.trust_domain),
            entries: federating(&b.trust_domain),
        })
        .collect();
    Federation {
        now: inv.now,
        relationships,
        bundles,
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Findings {
    now: i64,
    counts: FindingCounts,
    findings: Vec<Finding>,
}

pub(super) fn findings(inv: &Inventory) -> Findings {
    let findings = vet(inv, &Options::default());
    Findings {
        now: inv.now,
        counts: FindingCounts::of(&findings),
        findings,
    }
}

//! Vetting a live trust domain: the mistakes `herald check --socket` looks
//! for in what a running server holds, before they take workloads down.
//!
//! Everything here is a pure function of plain data (the admin API's
//! messages, as the server answered them, and the time of the check), so
//! each check is tested without a server. The command line fetches the
//! [`Inventory`] and prints the findings (`cli/check_live.rs`).
//!
//! One file per family of checks:
//! - [`entries`]: selector sets that hand a workload identities it was not
//!   meant to have, and entries whose parent nothing can stand for;
//! - [`ttl`]: SVID lifetimes longer than the authority that signs them can
//!   live;
//! - [`federation`]: `federates_with` naming a trust domain with no bundle,
//!   and federated bundles gone stale;
//! - [`agents`]: agents behind on the bundle, and agents not seen for long;
//! - [`expiry`]: authorities and upstream certificates about to expire.

use serde::Serialize;

use crate::proto::admin;

pub mod agents;
pub mod entries;
pub mod expiry;
pub mod federation;
pub mod ttl;

/// What a running server holds, as its admin API shows it.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The server's trust domain name (`example.org`).
    pub trust_domain: String,
    /// Every registration entry.
    pub entries: Vec<admin::Entry>,
    /// Every attested agent.
    pub agents: Vec<admin::Agent>,
    /// Bundles of foreign trust domains.
    pub federated_bundles: Vec<admin::Bundle>,
    /// Federation relationships, with their refresh status.
    pub relationships: Vec<admin::FederationRelationship>,
    /// The authorities, the CA settings and the upstream certificates.
    pub authorities: admin::ShowAuthoritiesResponse,
    /// When the inventory was taken, unix seconds.
    pub now: i64,
}

/// The operator's thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// An authority or upstream certificate expiring sooner than this
    /// (seconds) is reported.
    pub expiry_horizon: i64,
    /// An agent not seen for longer than this (seconds) is reported.
    pub stale_agent_after: i64,
}

impl Default for Options {
    /// The defaults of `herald check --socket` (`--expiry-horizon 7d`,
    /// `--stale-agent-after 24h`), which the dashboard uses too.
    fn default() -> Self {
        Options {
            expiry_horizon: 7 * 86_400,
            stale_agent_after: 86_400,
        }
    }
}

/// How much a finding matters. Ordered: errors first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is broken or will break: `herald check` exits 1.
    Error,
    /// Likely a mistake, or a problem in the making.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// What a finding is about. In JSON, `kind` says which and the other
/// fields identify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    /// A registration entry.
    Entry {
        /// The entry ID.
        id: String,
        /// The SPIFFE ID it grants.
        spiffe_id: String,
    },
    /// An attested agent.
    Agent {
        /// The agent's SPIFFE ID.
        id: String,
    },
    /// A foreign trust domain.
    TrustDomain {
        /// Its name.
        name: String,
    },
    /// One of the server's authorities.
    Authority {
        /// `x509` or `jwt`.
        authority_kind: String,
        /// The authority's journal ID.
        id: String,
        /// `prepared`, `active` or `old`.
        state: String,
    },
    /// A certificate of the upstream authority.
    UpstreamCertificate {
        /// Its serial, lowercase hex.
        serial: String,
    },
    /// The server's own settings.
    Server {
        /// Its trust domain.
        trust_domain: String,
    },
}

impl Object {
    /// The object of an entry.
    pub fn entry(e: &admin::Entry) -> Object {
        Object::Entry {
            id: e.id.clone(),
            spiffe_id: e.spiffe_id.clone(),
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Entry { id, spiffe_id } => write!(f, "entry {id} ({spiffe_id})"),
            Object::Agent { id } => write!(f, "agent {id}"),
            Object::TrustDomain { name } => write!(f, "trust domain {name}"),
            Object::Authority {
                authority_kind,
                id,
                state,
            } => write!(f, "{state} {authority_kind} authority {id}"),
            Object::UpstreamCertificate { serial } => {
                write!(f, "upstream certificate (serial {serial})")
            }
            Object::Server { trust_domain } => write!(f, "server of {trust_domain}"),
        }
    }
}

/// One thing `herald check` found: how much it matters, what it is about,
/// why it matters and what to do. The JSON field names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// Which check found it (`selector_overlap`, `svid_ttl`, ...).
    pub check: &'static str,
    /// What it is about.
    pub object: Object,
    /// What is wrong and why it matters.
    pub message: String,
    /// What to do about it.
    pub remedy: String,
}

/// Runs every check; the findings come errors first, then by check.
pub fn vet(inv: &Inventory, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(entries::check(inv));
    out.extend(ttl::check(inv));
    out.extend(federation::check(inv));
    out.extend(agents::check(inv, opts));
    out.extend(expiry::check(inv, opts));
    out.sort_by(|a, b| (a.severity, a.check).cmp(&(b.severity, b.check)));
    out
}

/// A duration in seconds as people read it: `3d4h`, `25m`, `10s`.
pub fn human_secs(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let parts = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut rest = secs;
    let mut out = String::new();
    // Two units from the largest are precise enough for a report.
    let mut units = 0;
    for (unit, name) in parts {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
            units += 1;
        } else if units > 0 {
            units += 1;
        }
        if units == 2 {
            break;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(90), "1m30s");
        assert_eq!(human_secs(86_400 * 3 + 3_600 * 4 + 5), "3d4h");
        assert_eq!(human_secs(7_200), "2h");
    }

    #[test]
    fn errors_come_first_and_serialize_with_stable_names() {
        let inv = testdata::inventory();
        let mut inv = inv;
        inv.entries = vec![
            testdata::entry("a", "/web", testdata::AGENT, &["unix:uid:1"]),
            testdata::entry("b", "/db", testdata::AGENT, &["unix:uid:1"]),
        ];
        inv.entries[0].federates_with = vec!["nowhere.org".into()];
        let found = vet(&inv, &testdata::OPTS);
        assert!(found.len() >= 2, "{found:?}");
        assert!(found.windows(2).all(|w| w[0].severity <= w[1].severity));
        let json = serde_json::to_value(&found[0]).unwrap();
        for field in ["severity", "check", "object", "message", "remedy"] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }
        assert_eq!(json["severity"], "error");
        assert_eq!(json["object"]["kind"], "entry");
    }
}

use super::*;
use crate::vet::testdata::{entry, inventory, AGENT, NOW};

fn found(entries: Vec<admin::Entry>) -> Vec<Finding> {
    let mut inv = inventory();
    inv.entries = entries;
    check(&inv)
}

fn of(found: &[Finding], check: &str) -> Vec<(Severity, Object)> {
    found
        .iter()
        .filter(|f| f.check == check)
        .map(|f| (f.severity, f.object.clone()))
        .collect()
}

fn obj(id: &str, path: &str) -> Object {
    Object::Entry {
        id: id.into(),
        spiffe_id: format!("spiffe://example.org{path}"),
    }
}

#[test]
fn identical_selectors_with_different_ids_are_an_error_reported_once() {
    let f = found(vec![
        entry("a", "/web", AGENT, &["unix:uid:1", "unix:gid:2"]),
        entry("b", "/db", AGENT, &["unix:gid:2", "unix:uid:1"]),
    ]);
    assert_eq!(
        of(&f, "selector_overlap"),
        [(Severity::Error, obj("a", "/web"))]
    );
    assert!(f[0].message.contains("entry b"), "{}", f[0].message);
}

#[test]
fn a_subset_under_the_same_parent_is_a_warning_on_the_broader_entry() {
    let f = found(vec![
        entry("a", "/web", AGENT, &["unix:uid:1", "unix:gid:2"]),
        entry("b", "/any", AGENT, &["unix:uid:1"]),
    ]);
    assert_eq!(
        of(&f, "selector_overlap"),
        [(Severity::Warning, obj("b", "/any"))]
    );
    assert!(f[0].message.contains("spiffe://example.org/any"));
}

#[test]
fn disjoint_or_crossing_selectors_and_equal_ids_are_fine() {
    let f = found(vec![
        entry("a", "/web", AGENT, &["unix:uid:1", "unix:gid:2"]),
        entry("b", "/db", AGENT, &["unix:uid:1", "unix:gid:3"]),
        entry("c", "/web", AGENT, &["unix:uid:1"]),
        entry("d", "/batch", AGENT, &["unix:uid:4"]),
    ]);
    // c is a subset of a and b, but a grants c's ID: only b overlaps.
    assert_eq!(
        of(&f, "selector_overlap"),
        [(Severity::Warning, obj("c", "/web"))]
    );
    assert!(f[0].message.contains("entry b"));
}

#[test]
fn entries_on_different_agents_do_not_overlap() {
    let other = "spiffe://example.org/herald/agent/join_token/b";
    let mut inv = inventory();
    inv.agents.push(crate::vet::testdata::agent(other));
    inv.entries = vec![
        entry("a", "/web", AGENT, &["unix:uid:1"]),
        entry("b", "/db", other, &["unix:uid:1"]),
    ];
    assert!(of(&check(&inv), "selector_overlap").is_empty());
}

#[test]
fn a_node_alias_puts_its_children_on_the_same_agent() {
    let f = found(vec![
        entry("alias", "/node/web", AGENT, &["k8s:ns:x"]),
        entry(
            "a",
            "/web",
            "spiffe://example.org/node/web",
            &["unix:uid:1"],
        ),
        entry("b", "/db", AGENT, &["unix:uid:1"]),
    ]);
    assert_eq!(
        of(&f, "selector_overlap"),
        [(Severity::Error, obj("a", "/web"))]
    );
    assert!(of(&f, "entry_parent").is_empty(), "{f:?}");
}

#[test]
fn expired_entries_are_not_served_so_they_do_not_overlap() {
    let mut old = entry("b", "/db", AGENT, &["unix:uid:1"]);
    old.expires_at = NOW - 1;
    let f = found(vec![entry("a", "/web", AGENT, &["unix:uid:1"]), old]);
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn a_parent_nothing_stands_for_is_a_warning() {
    let f = found(vec![entry(
        "a",
        "/web",
        "spiffe://example.org/node/gone",
        &["unix:uid:1"],
    )]);
    assert_eq!(
        of(&f, "entry_parent"),
        [(Severity::Warning, obj("a", "/web"))]
    );
}

#[test]
fn an_agent_id_not_attested_yet_is_only_info() {
    let f = found(vec![entry(
        "a",
        "/web",
        "spiffe://example.org/herald/agent/node-7",
        &["unix:uid:1"],
    )]);
    assert_eq!(of(&f, "entry_parent"), [(Severity::Info, obj("a", "/web"))]);
}

#[test]
fn parents_that_are_agents_or_entries_are_fine() {
    let f = found(vec![
        entry("alias", "/node", AGENT, &["k8s:ns:x"]),
        entry("a", "/web", "spiffe://example.org/node", &["unix:uid:1"]),
    ]);
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn a_parent_cycle_ends() {
    let f = found(vec![
        entry("a", "/x", "spiffe://example.org/y", &["unix:uid:1"]),
        entry("b", "/y", "spiffe://example.org/x", &["unix:uid:1"]),
    ]);
    // Unreachable from any agent: neither overlaps nor counts as orphaned
    // (each parent is the other's SPIFFE ID).
    assert!(f.is_empty(), "{f:?}");
}

const SERVER: &str = "spiffe://example.org/herald/server";

/// Two x509pop agents, both from CA `f1`; db-1 also has CN db-1.
fn fleet_inventory(entries: Vec<admin::Entry>) -> Inventory {
    let mut inv = inventory();
    let x509pop = |id: &str, cn: &str| {
        let mut a = crate::vet::testdata::agent(id);
        a.attestation_type = "x509pop".into();
        a.selectors = [format!("subject:cn:{cn}"), "ca:fingerprint:f1".into()]
            .into_iter()
            .map(|value| admin::Selector {
                r#type: "x509pop".into(),
                value,
            })
            .collect();
        a
    };
    inv.agents = vec![
        x509pop("spiffe://example.org/herald/agent/x509pop/1", "db-1"),
        x509pop("spiffe://example.org/herald/agent/x509pop/2", "db-2"),
    ];
    inv.entries = entries;
    inv
}

/// A node alias entry is parented to the server, and a workload entry is
/// parented to the alias: neither is "a parent nothing stands for".
#[test]
fn node_alias_entries_and_the_entries_under_them_have_parents() {
    let inv = fleet_inventory(vec![
        entry("alias", "/fleet", SERVER, &["x509pop:ca:fingerprint:f1"]),
        entry("web", "/web", "spiffe://example.org/fleet", &["unix:uid:1"]),
    ]);
    let f = check(&inv);
    assert!(f.is_empty(), "{f:?}");
}

/// Entries under two aliases naming the same agent can reach one workload;
/// under aliases naming different agents they cannot.
#[test]
fn entries_under_aliases_overlap_only_on_agents_both_name() {
    let shared = fleet_inventory(vec![
        entry("all", "/fleet", SERVER, &["x509pop:ca:fingerprint:f1"]),
        entry("one", "/db1", SERVER, &["x509pop:subject:cn:db-1"]),
        entry("a", "/web", "spiffe://example.org/fleet", &["unix:uid:1"]),
        entry("b", "/db", "spiffe://example.org/db1", &["unix:uid:1"]),
    ]);
    let f = check(&shared);
    assert_eq!(
        of(&f, "selector_overlap"),
        [(Severity::Error, obj("a", "/web"))],
        "{f:?}"
    );
    let apart = fleet_inventory(vec![
        entry("one", "/db1", SERVER, &["x509pop:subject:cn:db-1"]),
        entry("two", "/db2", SERVER, &["x509pop:subject:cn:db-2"]),
        entry("a", "/web", "spiffe://example.org/db1", &["unix:uid:1"]),
        entry("b", "/db", "spiffe://example.org/db2", &["unix:uid:1"]),
    ]);
    assert!(check(&apart).is_empty(), "{:?}", check(&apart));
}

/// An alias no agent matches is worth knowing (info), not an error.
#[test]
fn an_alias_naming_no_agent_is_info() {
    let inv = fleet_inventory(vec![entry(
        "alias",
        "/fleet",
        SERVER,
        &["x509pop:ca:fingerprint:f1", "x509pop:subject:cn:db-9"],
    )]);
    let f = check(&inv);
    assert_eq!(
        of(&f, "node_alias"),
        [(Severity::Info, obj("alias", "/fleet"))]
    );
    assert!(
        f[0].message.contains("x509pop:subject:cn:db-9"),
        "{}",
        f[0].message
    );
}

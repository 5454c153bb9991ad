//! The manager's decisions without a server: applying Sync messages,
//! pruning, what is due at a given time, taints and bundle sequences. The
//! certificates are real (signed by a test CA), the time is a `FakeClock`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::*;
use crate::ca::x509::{SvidRequest, X509Authority};
use crate::ca::{KeyPair, KeyType};
use crate::clock::{Clock as _, FakeClock};
use crate::proto::node;
use crate::spiffe::SpiffeId;
use crate::tls::Roots;

const T0: i64 = 1_800_000_000;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn new_ca() -> X509Authority {
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    X509Authority::self_signed(&td(), key, 30 * 86_400, T0 - 60).unwrap()
}

/// A leaf for `path` signed by `ca` over `key`, valid `ttl` from `now`.
fn leaf(ca: &X509Authority, path: &str, key: &KeyPair, ttl: i64, now: i64) -> Vec<u8> {
    let id = SpiffeId::new(&td(), path).unwrap();
    ca.sign_svid(
        &SvidRequest {
            spiffe_id: &id,
            public_key_spki: &key.public_key_spki(),
            ttl_secs: ttl,
            dns_names: &[],
        },
        now,
    )
    .unwrap()
    .cert_der
}

fn wire_bundle(ca: &X509Authority, sequence: u64) -> node::Bundle {
    node::Bundle {
        trust_domain: "example.org".into(),
        x509_authorities: vec![ca.cert_der().to_vec()],
        sequence,
        ..Default::default()
    }
}

fn wire_entry(id: &str, revision: i64) -> node::Entry {
    node::Entry {
        id: id.into(),
        spiffe_id: format!("spiffe://example.org/{id}"),
        selectors: vec![node::Selector {
            r#type: "unix".into(),
            value: format!("uid:{id}"),
        }],
        revision,
        created_at: revision,
        ..Default::default()
    }
}

fn bundle_update(bundle: node::Bundle) -> node::SyncUpdate {
    node::SyncUpdate {
        bundle: Some(bundle),
        ..Default::default()
    }
}

fn snapshot(upserted: Vec<node::Entry>, complete: bool) -> node::SyncUpdate {
    node::SyncUpdate {
        snapshot: true,
        complete,
        upserted,
        ..Default::default()
    }
}

struct Fixture {
    manager: Manager,
    clock: FakeClock,
    cache: Cache,
    ca: X509Authority,
    store: CredentialStore,
    jwt_epoch: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

/// A manager holding an agent SVID valid for an hour from `T0`, and the
/// bundle of sequence 1.
fn fixture() -> Fixture {
    let ca = new_ca();
    let clock = FakeClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::open(dir.path()).unwrap();
    let cache = Cache::new(td());
    let agent_key = KeyPair::generate(KeyType::EcP256).unwrap();
    let cred = AgentCredential {
        spiffe_id: SpiffeId::new(&td(), "/agent").unwrap(),
        chain: vec![leaf(&ca, "/agent", &agent_key, 3_600, T0)],
        key: Arc::new(agent_key),
        not_after: T0 + 3_600,
    };
    let bundle = crate::node::wire::bundle_from_wire(wire_bundle(&ca, 1)).unwrap();
    let connector = ServerConnector::new(
        "127.0.0.1:1".parse().unwrap(),
        &td(),
        Roots::new(bundle.x509_authorities.clone()),
        false,
    )
    .unwrap();
    let jwt_epoch = Arc::new(AtomicU64::new(0));
    let manager = Manager::new(
        connector,
        store.clone(),
        cache.clone(),
        cred,
        bundle,
        Arc::new(RwLock::new(None)),
        jwt_epoch.clone(),
        Arc::new(clock.clone()),
    );
    Fixture {
        manager,
        clock,
        cache,
        ca,
        store,
        jwt_epoch,
        _dir: dir,
    }
}

/// A fixture that has applied a complete snapshot of `entries`
/// (ID, revision).
fn synced(entries: &[(&str, i64)]) -> Fixture {
    let mut f = fixture();
    let upserted = entries
        .iter()
        .map(|(id, rev)| wire_entry(id, *rev))
        .collect();
    f.manager.apply(snapshot(upserted, true)).unwrap();
    f
}

/// Holds an SVID signed by `ca` for each `(entry, ttl)`, issued at the
/// clock's time, through the same path as the server's answers.
fn issue(f: &mut Fixture, ca: &X509Authority, svids: &[(&str, i64)]) {
    let now = f.clock.now_unix();
    let mut keys = BTreeMap::new();
    let mut results = Vec::new();
    for (id, ttl) in svids {
        let key = KeyPair::generate(KeyType::EcP256).unwrap();
        results.push(node::X509svidResult {
            entry_id: id.to_string(),
            cert_chain: vec![leaf(ca, &format!("/{id}"), &key, *ttl, now)],
            expires_at: now + ttl,
            ..Default::default()
        });
        keys.insert(id.to_string(), key);
    }
    f.manager.hold_issued(results, keys, now).unwrap();
}

fn entry_ids(m: &Manager) -> Vec<&str> {
    m.entries.keys().map(String::as_str).collect()
}

fn held_ids(m: &Manager) -> Vec<&str> {
    m.held.keys().map(String::as_str).collect()
}

#[test]
fn a_snapshot_applies_once_complete_and_diffs_apply_after() {
    let mut f = fixture();
    let m = &mut f.manager;
    // A diff before the first snapshot is kept but calls for nothing yet.
    let early = node::SyncUpdate {
        upserted: vec![wire_entry("early", 1)],
        ..Default::default()
    };
    assert!(!m.apply(early).unwrap());

    m.apply(snapshot(vec![wire_entry("a", 1)], false)).unwrap();
    assert_eq!(entry_ids(m), ["early"], "a partial snapshot is not applied");
    assert!(!m.synced_once);
    assert!(m.apply(snapshot(vec![wire_entry("b", 1)], true)).unwrap());
    assert_eq!(entry_ids(m), ["a", "b"], "the snapshot replaces the set");
    assert!(m.synced_once);

    let diff = node::SyncUpdate {
        upserted: vec![wire_entry("c", 1), wire_entry("b", 2)],
        removed: vec!["a".into()],
        ..Default::default()
    };
    assert!(m.apply(diff).unwrap());
    assert_eq!(entry_ids(m), ["b", "c"]);
    assert_eq!(m.entries["b"].revision, 2);

    // A later snapshot replaces everything again.
    assert!(m.apply(snapshot(vec![wire_entry("d", 1)], true)).unwrap());
    assert_eq!(entry_ids(m), ["d"]);

    // An empty diff changes nothing.
    assert!(!m.apply(node::SyncUpdate::default()).unwrap());
}

#[test]
fn an_invalid_entry_fails_the_update_and_names_the_entry() {
    let mut f = fixture();
    let mut bad = wire_entry("bad", 1);
    bad.spiffe_id = "https://example.org/x".into();
    let err = f.manager.apply(snapshot(vec![bad], true)).unwrap_err();
    assert!(
        matches!(&err, SessionError::Entry { id, .. } if id == "bad"),
        "{err:?}"
    );
    assert!(!f.manager.synced_once);
}

#[test]
fn what_is_due_depends_on_the_clock_revision_and_expiry() {
    let mut f = synced(&[("a", 1), ("b", 1), ("c", 1)]);
    let ca = new_ca();
    // a: 100 s of life, renews in (40, 50]; b: 1000 s, renews in (400, 500].
    issue(&mut f, &ca, &[("a", 100), ("b", 1_000)]);
    let m = &mut f.manager;
    assert_eq!(held_ids(m), ["a", "b"]);
    let renew_a = m.held["a"].renew_at;
    assert!(T0 + 40 < renew_a && renew_a <= T0 + 50, "{renew_a}");

    assert_eq!(
        m.due_entries(T0 + 10),
        ["c"],
        "only the entry without an SVID"
    );
    assert_eq!(m.due_entries(renew_a), ["a", "c"], "a at its renewal time");
    assert_eq!(held_ids(m), ["a", "b"], "due is not dropped");

    // An SVID at its NotAfter is dropped, not only due.
    assert_eq!(m.due_entries(T0 + 100), ["a", "c"]);
    assert_eq!(held_ids(m), ["b"]);
    assert_eq!(m.due_entries(T0 + 500), ["a", "b", "c"], "b at half-life");

    // A new revision is due at once; a removed entry's SVID is dropped.
    let diff = node::SyncUpdate {
        upserted: vec![wire_entry("b", 2)],
        removed: vec!["c".into()],
        ..Default::default()
    };
    m.apply(diff).unwrap();
    assert_eq!(m.due_entries(T0 + 10), ["a", "b"]);
    m.entries.remove("b");
    m.due_entries(T0 + 10);
    assert!(m.held.is_empty());
}

#[test]
fn the_next_wake_and_the_agent_svid_follow_the_fake_clock() {
    let mut f = synced(&[("a", 1)]);
    let facts = crate::ca::x509::cert_facts(&f.manager.cred.chain[0]).unwrap();
    let agent_half = facts.not_before + (facts.not_after - facts.not_before) / 2;
    assert_eq!(f.manager.agent_renew_at(), agent_half);
    assert_eq!(f.manager.next_wake(), agent_half, "nothing held yet");
    assert!(!f.manager.agent_svid_due());
    f.clock.set(agent_half - 1);
    assert!(!f.manager.agent_svid_due());
    f.clock.set(agent_half);
    assert!(f.manager.agent_svid_due());

    f.clock.set(T0);
    let ca = new_ca();
    issue(&mut f, &ca, &[("a", 100)]);
    assert_eq!(f.manager.next_wake(), f.manager.held["a"].renew_at);
}

#[test]
fn expired_identities_are_pruned_and_the_cache_is_told() {
    let mut f = synced(&[("a", 1), ("b", 1)]);
    let ca = new_ca();
    issue(&mut f, &ca, &[("a", 100), ("b", 1_000)]);
    f.manager.publish();
    let published = f.cache.current();
    assert_eq!(published.identities.len(), 2);
    assert!(published.ready);

    f.clock.set(T0 + 99);
    f.manager.prune_expired();
    assert_eq!(
        f.cache.current().generation,
        published.generation,
        "nothing expired, nothing published"
    );

    f.clock.set(T0 + 100);
    f.manager.prune_expired();
    let now = f.cache.current();
    assert!(now.generation > published.generation);
    let ids: Vec<_> = now.identities.iter().map(|i| i.entry_id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    assert_eq!(held_ids(&f.manager), ["b"]);
}

#[test]
fn issued_svids_are_held_unless_refused_or_unknown() {
    let mut f = synced(&[("a", 3), ("b", 1)]);
    let key_a = KeyPair::generate(KeyType::EcP256).unwrap();
    let pkcs8_a = key_a.pkcs8_der().to_vec();
    let chain_a = vec![leaf(&f.ca, "/a", &key_a, 600, T0)];
    let mut keys = BTreeMap::new();
    keys.insert("a".to_string(), key_a);
    keys.insert("b".to_string(), KeyPair::generate(KeyType::EcP256).unwrap());
    keys.insert(
        "gone".to_string(),
        KeyPair::generate(KeyType::EcP256).unwrap(),
    );
    let results = vec![
        node::X509svidResult {
            entry_id: "a".into(),
            cert_chain: chain_a.clone(),
            expires_at: T0 + 600,
            ..Default::default()
        },
        node::X509svidResult {
            entry_id: "b".into(),
            code: tonic::Code::PermissionDenied as i32,
            message: "no".into(),
            ..Default::default()
        },
        node::X509svidResult {
            entry_id: "gone".into(),
            cert_chain: chain_a.clone(),
            expires_at: T0 + 600,
            ..Default::default()
        },
    ];
    f.manager.hold_issued(results, keys, T0).unwrap();
    assert_eq!(held_ids(&f.manager), ["a"]);
    let a = &f.manager.held["a"];
    assert_eq!(a.revision, 3);
    assert_eq!(a.identity.svid_chain, chain_a);
    assert_eq!(a.identity.key_pkcs8, pkcs8_a);
    assert_eq!(a.identity.not_after, T0 + 600);
    assert_eq!(a.identity.spiffe_id.as_str(), "spiffe://example.org/a");
    let ca_ski = crate::ca::x509::cert_facts(f.ca.cert_der())
        .unwrap()
        .subject_key_id;
    assert!(ca_ski.is_some());
    assert_eq!(a.issuer_key_id, ca_ski, "the issuer is the leaf's AKI");
}

#[test]
fn a_tainted_authority_forces_reissue_of_what_it_signed() {
    let mut f = synced(&[("a", 1), ("b", 1)]);
    let (old_ca, other_ca) = (new_ca(), new_ca());
    issue(&mut f, &old_ca, &[("a", 1_000)]);
    issue(&mut f, &other_ca, &[("b", 1_000)]);
    assert!(f.manager.due_entries(T0 + 1).is_empty());

    let mut update = wire_bundle(&f.ca, 2);
    update.tainted_x509_authorities = vec![old_ca.cert_der().to_vec()];
    let changed = f.manager.apply(bundle_update(update.clone())).unwrap();
    assert!(changed);
    assert_eq!(f.manager.due_entries(T0 + 1), ["a"]);
    assert_eq!(f.jwt_epoch.load(Ordering::SeqCst), 0, "no JWT key tainted");

    // JWT taints bump the epoch once per change.
    update.tainted_jwt_key_ids = vec!["k1".into()];
    f.manager.apply(bundle_update(update.clone())).unwrap();
    f.manager.apply(bundle_update(update)).unwrap();
    assert_eq!(f.jwt_epoch.load(Ordering::SeqCst), 1);
}

#[test]
fn a_newer_bundle_replaces_the_old_one_and_is_saved() {
    let mut f = synced(&[]);
    let new_root = new_ca();
    let mut update = wire_bundle(&f.ca, 5);
    update.x509_authorities.push(new_root.cert_der().to_vec());
    let changed = f.manager.apply(bundle_update(update)).unwrap();
    assert!(changed);
    assert_eq!(f.manager.bundle.sequence, 5);
    assert_eq!(f.manager.bundle.x509_authorities.len(), 2);
    assert_eq!(f.manager.connector.roots().get().len(), 2, "TLS trusts it");
    let saved = f.store.load_bundle(&td()).unwrap().unwrap();
    assert_eq!(saved.sequence, 5);
}

#[test]
fn a_bundle_of_another_trust_domain_is_ignored() {
    let mut f = synced(&[]);
    let mut foreign = wire_bundle(&new_ca(), 9);
    foreign.trust_domain = "evil.org".into();
    foreign.tainted_jwt_key_ids = vec!["k1".into()];
    let before = f.manager.bundle.clone();
    let changed = f.manager.apply(bundle_update(foreign)).unwrap();
    assert!(!changed);
    assert_eq!(f.manager.bundle, before);
    assert_eq!(
        f.jwt_epoch.load(Ordering::SeqCst),
        0,
        "its taints are ignored"
    );
    assert!(
        f.store.load_bundle(&td()).unwrap().is_none(),
        "nothing saved"
    );
}

#[test]
fn federated_bundles_replace_the_set_and_never_claim_our_domain() {
    let mut f = synced(&[]);
    let mut partner = wire_bundle(&new_ca(), 1);
    partner.trust_domain = "partner.org".into();
    let own = wire_bundle(&new_ca(), 1);
    let malformed = node::Bundle {
        trust_domain: "broken.org".into(),
        ..Default::default()
    };
    let update = node::SyncUpdate {
        federated_bundles: vec![partner.clone(), own, malformed],
        federated_bundles_changed: true,
        ..Default::default()
    };
    assert!(f.manager.apply(update.clone()).unwrap());
    let names: Vec<_> = f.manager.federated.keys().map(|t| t.name()).collect();
    assert_eq!(names, ["partner.org"]);
    assert!(!f.manager.apply(update).unwrap(), "the same set again");

    let cleared = node::SyncUpdate {
        federated_bundles_changed: true,
        ..Default::default()
    };
    assert!(f.manager.apply(cleared).unwrap());
    assert!(f.manager.federated.is_empty());
}

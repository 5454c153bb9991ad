//! What the manager's tests share: a manager with a real agent SVID
//! (signed by a test CA), a `FakeClock`, a temporary data directory, and
//! builders for Sync messages and issued SVIDs.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use super::Manager;
use crate::agent::cache::Cache;
use crate::ca::x509::{SvidRequest, X509Authority};
use crate::ca::{KeyPair, KeyType};
use crate::clock::{Clock as _, FakeClock};
use crate::node::{AgentCredential, CredentialStore, ServerConnector};
use crate::proto::node;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::tls::Roots;

pub(super) const T0: i64 = 1_800_000_000;

pub(super) fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

pub(super) fn new_ca() -> X509Authority {
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    X509Authority::self_signed(&td(), key, 30 * 86_400, T0 - 60).unwrap()
}

/// A leaf for `path` signed by `ca` over `key`, valid `ttl` from `now`.
pub(super) fn leaf(ca: &X509Authority, path: &str, key: &KeyPair, ttl: i64, now: i64) -> Vec<u8> {
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

pub(super) fn wire_bundle(ca: &X509Authority, sequence: u64) -> node::Bundle {
    node::Bundle {
        trust_domain: "example.org".into(),
        x509_authorities: vec![ca.cert_der().to_vec()],
        sequence,
        ..Default::default()
    }
}

pub(super) fn wire_entry(id: &str, revision: i64) -> node::Entry {
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

pub(super) fn bundle_update(bundle: node::Bundle) -> node::SyncUpdate {
    node::SyncUpdate {
        bundle: Some(bundle),
        ..Default::default()
    }
}

pub(super) fn snapshot(upserted: Vec<node::Entry>, complete: bool) -> node::SyncUpdate {
    node::SyncUpdate {
        snapshot: true,
        complete,
        upserted,
        ..Default::default()
    }
}

pub(super) struct Fixture {
    pub(super) manager: Manager,
    pub(super) clock: FakeClock,
    pub(super) cache: Cache,
    pub(super) ca: X509Authority,
    pub(super) store: CredentialStore,
    pub(super) jwt_epoch: Arc<AtomicU64>,
    pub(super) _dir: tempfile::TempDir,
}

/// A manager holding an agent SVID valid for an hour from `T0`, and the
/// bundle of sequence 1.
pub(super) fn fixture() -> Fixture {
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
pub(super) fn synced(entries: &[(&str, i64)]) -> Fixture {
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
pub(super) fn issue(f: &mut Fixture, ca: &X509Authority, svids: &[(&str, i64)]) {
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

pub(super) fn entry_ids(m: &Manager) -> Vec<&str> {
    m.entries.keys().map(String::as_str).collect()
}

pub(super) fn held_ids(m: &Manager) -> Vec<&str> {
    m.held.keys().map(String::as_str).collect()
}

//! Two servers of one trust domain on one PostgreSQL database, each with
//! its own keys: what each owns, and a bundle that holds both servers'
//! authorities however their rotations interleave.

use std::sync::{Arc, Barrier};

use super::{Authorities, CaSettings};
use crate::ca::MemoryKeyManager;
use crate::clock::now_unix;
use crate::spiffe::TrustDomain;
use crate::store::postgres::test_database::TempDatabase;
use crate::store::postgres::{PostgresSettings, PostgresStore};
use crate::store::{AuthorityKind, DataStore};

struct Server {
    store: Arc<PostgresStore>,
    keys: Arc<MemoryKeyManager>,
    id: String,
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn servers(db: &TempDatabase, n: usize) -> Vec<Server> {
    (0..n)
        .map(|i| Server {
            store: Arc::new(
                PostgresStore::connect(&PostgresSettings::new(db.url.clone())).unwrap(),
            ),
            keys: Arc::new(MemoryKeyManager::default()),
            id: format!("server-{i}"),
        })
        .collect()
}

/// Runs `step` on every server's current set at the same moment.
fn at_once(
    servers: &[Server],
    sets: Vec<Option<Authorities>>,
    step: fn(&Server, Option<Authorities>) -> Authorities,
) -> Vec<Option<Authorities>> {
    let barrier = Arc::new(Barrier::new(servers.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .zip(sets)
            .map(|(server, set)| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    Some(step(server, set))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn start(s: &Server, _: Option<Authorities>) -> Authorities {
    let settings = CaSettings {
        server_id: s.id.clone(),
        ..CaSettings::default()
    };
    Authorities::load_or_create(
        s.store.as_ref(),
        s.keys.as_ref(),
        &td(),
        settings,
        now_unix(),
    )
    .unwrap()
}

fn prepare(s: &Server, a: Option<Authorities>) -> Authorities {
    let a = a.unwrap();
    a.prepare(
        AuthorityKind::X509,
        s.store.as_ref(),
        s.keys.as_ref(),
        now_unix(),
    )
    .unwrap()
    .prepare(
        AuthorityKind::Jwt,
        s.store.as_ref(),
        s.keys.as_ref(),
        now_unix(),
    )
    .unwrap()
}

fn activate(s: &Server, a: Option<Authorities>) -> Authorities {
    let a = a.unwrap();
    a.activate(AuthorityKind::X509, s.store.as_ref())
        .unwrap()
        .activate(AuthorityKind::Jwt, s.store.as_ref())
        .unwrap()
}

/// Every journal record's X.509 certificate and JWT key id is in the
/// stored bundle.
fn assert_bundle_holds_every_authority(store: &dyn DataStore) {
    let bundle = store.get_bundle(&td()).unwrap().unwrap();
    let records = store.list_authorities().unwrap();
    for r in &records {
        match r.kind {
            AuthorityKind::X509 => assert!(
                bundle
                    .x509_authorities
                    .contains(r.cert_der.as_ref().unwrap()),
                "X.509 authority {} of {} missing from bundle #{}",
                r.id,
                r.server_id,
                bundle.sequence
            ),
            AuthorityKind::Jwt => assert!(
                bundle
                    .jwt_authorities
                    .iter()
                    .any(|j| Some(&j.key_id) == r.jwt_key_id.as_ref()),
                "JWT key {} of {} missing from bundle #{}",
                r.id,
                r.server_id,
                bundle.sequence
            ),
        }
    }
}

#[test]
fn servers_starting_and_rotating_at_once_keep_every_authority_in_the_bundle() {
    let Some(db) = TempDatabase::for_test() else {
        return;
    };
    let servers = servers(&db, 3);
    let mut sets = at_once(&servers, vec![None, None, None], start);
    let store = servers[0].store.as_ref();
    // One active X.509 CA and JWT key per server.
    assert_eq!(store.list_authorities().unwrap().len(), 6);
    assert_bundle_holds_every_authority(store);
    for _ in 0..3 {
        sets = at_once(&servers, sets, prepare);
        assert_bundle_holds_every_authority(store);
        sets = at_once(&servers, sets, activate);
        assert_bundle_holds_every_authority(store);
    }
    // 3 servers x 2 kinds x (first + 3 rotations).
    assert_eq!(store.list_authorities().unwrap().len(), 24);
    // Each server owns (and signs with) only its own authorities.
    for (server, set) in servers.iter().zip(&sets) {
        let set = set.as_ref().unwrap();
        assert!(set
            .x509_slots()
            .iter()
            .all(|s| s.record.server_id == server.id));
        assert_eq!(set.foreign().len(), 16, "{}", server.id);
    }
}

#[test]
fn a_taint_on_one_server_reaches_the_others_view() {
    let Some(db) = TempDatabase::for_test() else {
        return;
    };
    let servers = servers(&db, 2);
    let sets = at_once(&servers, vec![None, None], start);
    let sets = at_once(&servers, sets, prepare);
    let sets = at_once(&servers, sets, activate);
    let (a, b) = (sets[0].clone().unwrap(), sets[1].clone().unwrap());
    let old = a
        .x509_slots()
        .iter()
        .find(|s| s.record.state == crate::store::AuthorityState::Old)
        .unwrap()
        .record
        .clone();
    let a = a
        .taint(AuthorityKind::X509, &old.id, servers[0].store.as_ref())
        .unwrap();
    assert!(a.tainted_x509().contains(old.cert_der.as_ref().unwrap()));
    // Server 1 cannot taint what it does not own...
    assert!(b
        .taint(AuthorityKind::X509, &old.id, servers[1].store.as_ref())
        .is_err());
    // ...but hears of it: a newer bundle, with the taint.
    let seen = b.refreshed(servers[1].store.as_ref()).unwrap().unwrap();
    assert!(seen.bundle().sequence > b.bundle().sequence);
    assert!(seen.tainted_x509().contains(old.cert_der.as_ref().unwrap()));
    assert!(seen.refreshed(servers[1].store.as_ref()).unwrap().is_none());
}

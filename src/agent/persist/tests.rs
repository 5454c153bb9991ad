use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::sync::Arc;

use super::*;
use crate::agent::cache::WorkloadIdentity;
use crate::ca::x509::{SvidRequest, X509Authority};
use crate::ca::{KeyPair, KeyType};
use crate::registration::Selector;
use crate::spiffe::Bundle;

const T0: i64 = 1_800_000_000;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn agent() -> SpiffeId {
    SpiffeId::new(&td(), "/agent").unwrap()
}

fn ca() -> X509Authority {
    let key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    X509Authority::self_signed(&td(), key, 86_400, T0 - 60).unwrap()
}

/// An identity for `/name` whose SVID, signed by `ca`, lives `ttl` from T0.
fn identity(ca: &X509Authority, name: &str, ttl: i64) -> Arc<WorkloadIdentity> {
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let spiffe_id = SpiffeId::new(&td(), &format!("/{name}")).unwrap();
    let signed = ca
        .sign_svid(
            &SvidRequest {
                spiffe_id: &spiffe_id,
                public_key_spki: &key.public_key_spki(),
                ttl_secs: ttl,
                dns_names: &[],
            },
            T0,
        )
        .unwrap();
    Arc::new(WorkloadIdentity {
        entry_id: format!("entry-{name}"),
        spiffe_id,
        selectors: vec![Selector::new("unix", "uid:1000").unwrap()],
        hint: format!("hint-{name}"),
        federates_with: vec![TrustDomain::new("partner.org").unwrap()],
        created_at: 42,
        revision: 7,
        svid_chain: signed.chain,
        key_pkcs8: key.pkcs8_der().to_vec(),
        not_after: signed.not_after,
    })
}

fn snapshot(identities: Vec<Arc<WorkloadIdentity>>) -> CacheSnapshot {
    let partner = TrustDomain::new("partner.org").unwrap();
    let mut bundle = Bundle::new(partner.clone());
    bundle.x509_authorities = vec![ca().cert_der().to_vec()];
    bundle.sequence = 3;
    let mut snap = CacheSnapshot::empty(td());
    snap.identities = identities;
    snap.federated = BTreeMap::from([(partner, Arc::new(bundle))]);
    snap.ready = true;
    snap
}

fn saved(snap: &CacheSnapshot) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode(&mut out, snap, &agent()).unwrap();
    out
}

#[test]
fn a_saved_file_reads_back_whole() {
    let ca = ca();
    let snap = snapshot(vec![identity(&ca, "a", 600), identity(&ca, "b", 900)]);
    let (dir, path) = crate::testing::temp_path(FILE_NAME);
    save(&path, &snap, &agent()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "it holds private keys");

    let r = load(&path, &td(), &agent(), T0).unwrap().unwrap();
    assert_eq!(r.expired, 0);
    assert_eq!(r.federated, snap.federated);
    assert_eq!(r.identities.len(), 2);
    for (got, want) in r.identities.iter().zip(&snap.identities) {
        let (g, w) = (&got.identity, want.as_ref());
        assert_eq!(g.entry_id, w.entry_id);
        assert_eq!(g.spiffe_id, w.spiffe_id);
        assert_eq!(g.selectors, w.selectors);
        assert_eq!(g.hint, w.hint);
        assert_eq!(g.federates_with, w.federates_with);
        assert_eq!((g.created_at, g.revision), (42, 7));
        assert_eq!(g.svid_chain, w.svid_chain);
        assert_eq!(g.key_pkcs8, w.key_pkcs8);
        assert_eq!(g.not_after, w.not_after);
        let facts = crate::ca::x509::cert_facts(&w.svid_chain[0]).unwrap();
        assert_eq!(got.not_before, facts.not_before);
        assert!(facts.authority_key_id.is_some());
        assert_eq!(got.issuer_key_id, facts.authority_key_id);
    }
    assert!(
        load(&dir.path().join("absent"), &td(), &agent(), T0)
            .unwrap()
            .is_none(),
        "no file is no error"
    );
}

#[test]
fn expired_svids_are_dropped_at_load() {
    let ca = ca();
    let bytes = saved(&snapshot(vec![
        identity(&ca, "short", 100),
        identity(&ca, "long", 1_000),
    ]));
    let r = format::decode(&bytes, &td(), &agent(), T0 + 100).unwrap();
    let ids: Vec<_> = r
        .identities
        .iter()
        .map(|i| i.identity.entry_id.as_str())
        .collect();
    assert_eq!(ids, ["entry-long"]);
    assert_eq!(r.expired, 1);
}

#[test]
fn a_damaged_or_foreign_file_is_refused_and_restore_ignores_it() {
    let ca = ca();
    let good = saved(&snapshot(vec![identity(&ca, "a", 600)]));
    let decode = |b: &[u8]| format::decode(b, &td(), &agent(), T0).unwrap_err();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert!(matches!(decode(&flipped), DecodeError::Checksum));
    assert!(matches!(
        decode(&good[..good.len() - 1]),
        DecodeError::Checksum
    ));
    assert!(matches!(decode(b"{\"keys\":[]}"), DecodeError::NotOurs));
    assert!(matches!(decode(b""), DecodeError::NotOurs));
    let mut newer = good.clone();
    newer[8] = 2;
    assert!(matches!(decode(&newer), DecodeError::Version(2)));

    let other_td = TrustDomain::new("other.org").unwrap();
    let err = format::decode(&good, &other_td, &agent(), T0).unwrap_err();
    assert!(
        matches!(&err, DecodeError::ForeignTrustDomain { found } if found == "example.org"),
        "{err:?}"
    );
    let other_agent = SpiffeId::new(&td(), "/other-agent").unwrap();
    let err = format::decode(&good, &td(), &other_agent, T0).unwrap_err();
    assert!(matches!(err, DecodeError::OtherAgent { .. }), "{err:?}");

    // An SVID that is not for its entry's SPIFFE ID.
    let mut swapped = (*identity(&ca, "a", 600)).clone();
    swapped.svid_chain = identity(&ca, "b", 600).svid_chain.clone();
    let bytes = saved(&snapshot(vec![Arc::new(swapped)]));
    let err = format::decode(&bytes, &td(), &agent(), T0).unwrap_err();
    assert!(matches!(err, DecodeError::WrongSpiffeId { .. }), "{err:?}");

    // restore() logs and goes on without the file.
    let (dir, path) = crate::testing::temp_path(FILE_NAME);
    std::fs::write(&path, &flipped).unwrap();
    assert!(restore(&path, &td(), &agent(), T0).is_none());
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    assert!(restore(&dir.path().join("a-dir"), &td(), &agent(), T0).is_none());
}

fn persister(
    dir: &Path,
) -> (
    Cache,
    PathBuf,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let cache = Cache::new(td());
    let path = dir.join(FILE_NAME);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Persister::new(&cache, path.clone(), agent()).run(stop_rx));
    (cache, path, stop, task)
}

#[tokio::test]
async fn the_persister_saves_changes_after_they_settle_and_at_shutdown() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let (cache, path, stop, task) = persister(dir.path());
    let a = identity(&ca, "a", 600);
    cache.publish(snapshot(vec![a.clone()]));
    // Saved after the changes settle (about a second), not only at shutdown.
    let mut waited = 0;
    while !path.exists() {
        assert!(waited < 200, "not saved within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let first = std::fs::metadata(&path).unwrap().ino();

    cache.publish(snapshot(vec![a, identity(&ca, "b", 600)]));
    stop.send_replace(true);
    task.await.unwrap();
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), first, "rewritten");
    let r = load(&path, &td(), &agent(), T0).unwrap().unwrap();
    assert_eq!(
        r.identities.len(),
        2,
        "the last change was saved at shutdown"
    );
}

#[tokio::test]
async fn the_persister_rewrites_nothing_when_nothing_it_saves_changed() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(td());
    let restored = snapshot(vec![identity(&ca, "a", 600)]);
    cache.publish(restored.clone());
    let path = dir.path().join(FILE_NAME);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(Persister::new(&cache, path.clone(), agent()).run(stop_rx));
    // Only the connection state changes; and a snapshot not ready is never saved.
    let mut same = restored.clone();
    same.server_unreachable = true;
    cache.publish(same);
    stop.send_replace(true);
    task.await.unwrap();
    assert!(
        !path.exists(),
        "what the cache held at start counts as saved"
    );

    let (cache, path, stop, task) = persister(dir.path());
    let mut not_ready = snapshot(vec![identity(&ca, "b", 600)]);
    not_ready.ready = false;
    cache.publish(not_ready);
    stop.send_replace(true);
    task.await.unwrap();
    assert!(!path.exists());
}

#[test]
fn a_record_never_shows_its_key() {
    let id = identity(&ca(), "a", 600);
    let record = format::Record {
        entry: Some(identity_entry(&id)),
        svid_chain: id.svid_chain.clone(),
        key_pkcs8: id.key_pkcs8.clone(),
    };
    let text = format!("{record:?}");
    assert!(text.contains("entry-a"), "{text}");
    let as_debug = format!("{:?}", id.key_pkcs8);
    assert!(!text.contains(&as_debug[1..as_debug.len() - 1]), "{text}");
    assert!(!text.contains("key_pkcs8"), "{text}");
}

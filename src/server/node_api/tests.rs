//! The node API called directly, over a server state in a temp dir: the
//! calls that need no TLS peer (Attest), and beneath the mTLS ones the
//! pieces they run once the caller is known (the Sync stream, signing).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::{Code, Request, Status};

use super::NodeApi;
use crate::ca::{KeyPair, KeyType};
use crate::clock::now_unix;
use crate::node::make_csr;
use crate::proto::node::{self, node_server::Node as _};
use crate::registration::{RegistrationEntry, Selector};
use crate::server::run::PeerSvid;
use crate::server::state::test_state;
use crate::server::state::{ServerEvent, ServerState};
use crate::spiffe::SpiffeId;
use crate::store::{AttestedAgent, JoinToken, SledStore};

pub(super) const AGENT: &str = "spiffe://example.org/herald/agent/a";

pub(super) struct Server {
    _dir: tempfile::TempDir,
    pub(super) state: Arc<ServerState>,
    pub(super) api: NodeApi,
    _shutdown: watch::Sender<bool>,
}

pub(super) fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let state = test_state(SledStore::open(&dir.path().join("store")).unwrap());
    let (shutdown, stop) = watch::channel(false);
    Server {
        _dir: dir,
        api: NodeApi::new(state.clone(), stop),
        state,
        _shutdown: shutdown,
    }
}

pub(super) fn csr() -> Vec<u8> {
    make_csr(&KeyPair::generate(KeyType::EcP256).unwrap()).unwrap()
}

pub(super) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub(super) fn entry(n: usize, parent: &str) -> RegistrationEntry {
    RegistrationEntry {
        id: format!("entry-{n:05}"),
        ..RegistrationEntry::new(
            id(&format!("spiffe://example.org/w/{n}")),
            id(parent),
            vec![Selector::parse(&format!("unix:uid:{n}")).unwrap()],
        )
    }
}

impl Server {
    fn token(&self, token: &str, expires_at: i64, agent_id: Option<&str>) {
        self.state
            .store
            .create_join_token(JoinToken {
                token: token.into(),
                expires_at,
                agent_id: agent_id.map(id),
            })
            .unwrap();
    }

    /// Attests [`AGENT`] and returns the SVID it now presents, as a TLS
    /// connection of its would carry it.
    pub(super) async fn attested_agent(&self) -> PeerSvid {
        self.token("tok-agent", now_unix() + 600, Some(AGENT));
        let response = self.attest("tok-agent", csr()).await.unwrap();
        let facts = crate::ca::x509::cert_facts(&response.svid_chain[0]).unwrap();
        PeerSvid {
            id: id(AGENT),
            serial: facts.serial,
        }
    }

    async fn attest(&self, token: &str, csr: Vec<u8>) -> Result<node::AttestResponse, Status> {
        let request = Request::new(node::AttestRequest {
            join_token: token.into(),
            x509pop: None,
            k8s_psat: None,
            csr,
        });
        self.api.attest(request).await.map(|r| r.into_inner())
    }
}

#[tokio::test]
async fn attest_with_a_valid_token_records_the_agent() {
    let s = server();
    s.token("tok-1", now_unix() + 600, None);
    let response = s.attest("tok-1", csr()).await.unwrap();
    let agent_id = "spiffe://example.org/herald/agent/join_token/tok-1";
    assert_eq!(response.spiffe_id, agent_id);
    assert!(!response.svid_chain.is_empty());
    let leaf = crate::ca::x509::cert_facts(&response.svid_chain[0]).unwrap();
    let agent = s.state.store.get_agent(&id(agent_id)).unwrap().unwrap();
    assert_eq!(
        agent.serial, leaf.serial,
        "the record names the SVID issued"
    );
    assert_eq!(agent.attestation_type, "join_token");
    let bundle = response.bundle.unwrap();
    assert_eq!(
        bundle.x509_authorities,
        s.state.authorities().bundle().x509_authorities
    );
}

#[tokio::test]
async fn a_token_naming_an_agent_id_gives_that_id() {
    let s = server();
    s.token("tok-2", now_unix() + 600, Some(AGENT));
    let response = s.attest("tok-2", csr()).await.unwrap();
    assert_eq!(response.spiffe_id, AGENT);
}

#[tokio::test]
async fn a_token_is_spent_once() {
    let s = server();
    s.token("tok-3", now_unix() + 600, None);
    s.attest("tok-3", csr()).await.unwrap();
    let again = s.attest("tok-3", csr()).await.unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied);
    assert!(again.message().contains("already used"), "{again:?}");
}

#[tokio::test]
async fn an_expired_or_unknown_token_is_refused() {
    let s = server();
    s.token("tok-4", now_unix() - 1, None);
    let expired = s.attest("tok-4", csr()).await.unwrap_err();
    assert_eq!(expired.code(), Code::PermissionDenied);
    assert!(expired.message().contains("expired"), "{expired:?}");
    let unknown = s.attest("nope", csr()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::PermissionDenied);
    let empty = s.attest("", csr()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_bad_csr_does_not_burn_the_token() {
    let s = server();
    s.token("tok-5", now_unix() + 600, None);
    let bad = s.attest("tok-5", b"not a csr".to_vec()).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("csr: "), "{bad:?}");
    s.attest("tok-5", csr()).await.unwrap();
}

#[tokio::test]
async fn a_banned_agent_cannot_attest_again() {
    let s = server();
    s.token("tok-6", now_unix() + 600, Some(AGENT));
    s.attest("tok-6", csr()).await.unwrap();
    let agent = s
        .state
        .store
        .update_agent(&id(AGENT), &mut |a| {
            Ok(AttestedAgent {
                banned: true,
                ..a.clone()
            })
        })
        .unwrap();
    s.token("tok-7", now_unix() + 600, Some(AGENT));
    let refused = s.attest("tok-7", csr()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("banned"), "{refused:?}");
    // The check happens before the agent's attestation is recorded.
    let presented = PeerSvid {
        id: id(AGENT),
        serial: agent.serial,
    };
    let err = super::attested(s.state.store.as_ref(), &presented).unwrap_err();
    assert!(err.message().contains("banned"), "{err:?}");
}

#[tokio::test]
async fn calls_without_a_client_certificate_are_unauthenticated() {
    let s = server();
    let request = Request::new(node::RenewAgentRequest { csr: csr() });
    let err = s.api.renew_agent(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

type Rx = mpsc::Receiver<Result<super::sync::SyncPart, Status>>;

pub(super) async fn next(rx: &mut Rx) -> node::SyncUpdate {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a sync message in time")
        .expect("the stream is open")
        .expect("not an error")
        .into_update()
}

pub(super) fn ids(update: &node::SyncUpdate) -> Vec<String> {
    update.upserted.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn the_snapshot_holds_exactly_the_authorized_entries() {
    let s = server();
    let store = &s.state.store;
    store.create_entry(entry(1, AGENT)).unwrap();
    // Nested under entry 1's SPIFFE ID: authorized too.
    store
        .create_entry(entry(2, "spiffe://example.org/w/1"))
        .unwrap();
    store
        .create_entry(entry(3, "spiffe://example.org/herald/agent/b"))
        .unwrap();
    let mut expired = entry(4, AGENT);
    expired.expires_at = Some(now_unix() - 10);
    store.create_entry(expired).unwrap();

    let mut rx = s
        .api
        .open_sync(id(AGENT), Default::default())
        .await
        .unwrap();
    let snapshot = next(&mut rx).await;
    assert!(snapshot.snapshot && snapshot.complete);
    assert_eq!(ids(&snapshot), ["entry-00001", "entry-00002"]);
    assert!(snapshot.removed.is_empty());
    assert_eq!(
        snapshot.bundle.unwrap().sequence,
        s.state.authorities().bundle().sequence
    );
    assert!(snapshot.federated_bundles_changed);
}

#[tokio::test]
async fn created_and_deleted_entries_arrive_as_a_diff() {
    let s = server();
    let store = &s.state.store;
    store.create_entry(entry(1, AGENT)).unwrap();
    let mut rx = s
        .api
        .open_sync(id(AGENT), Default::default())
        .await
        .unwrap();
    assert_eq!(ids(&next(&mut rx).await), ["entry-00001"]);

    store.create_entry(entry(2, AGENT)).unwrap();
    // Not this agent's: must not show up.
    store
        .create_entry(entry(3, "spiffe://example.org/herald/agent/b"))
        .unwrap();
    s.state.publish(ServerEvent::EntriesChanged);
    let created = next(&mut rx).await;
    assert!(!created.snapshot);
    assert_eq!(ids(&created), ["entry-00002"], "only what changed");
    assert!(created.removed.is_empty());
    assert!(created.bundle.is_none());

    store.delete_entries(&["entry-00001".to_string()]).unwrap();
    s.state.publish(ServerEvent::EntriesChanged);
    let deleted = next(&mut rx).await;
    assert!(deleted.upserted.is_empty());
    assert_eq!(deleted.removed, ["entry-00001"]);
    let cached = s.state.authorized_for(&id(AGENT)).unwrap();
    assert_eq!(
        cached.keys().map(|k| &**k).collect::<Vec<&str>>(),
        ["entry-00002"]
    );
}

#[tokio::test]
async fn revoking_the_agent_ends_its_stream() {
    let s = server();
    let mut rx = s
        .api
        .open_sync(id(AGENT), Default::default())
        .await
        .unwrap();
    next(&mut rx).await;
    s.state
        .publish(ServerEvent::AgentRevoked(id("spiffe://example.org/other")));
    s.state.publish(ServerEvent::AgentRevoked(id(AGENT)));
    let end = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(end.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_large_snapshot_comes_in_chunks() {
    let s = server();
    let entries: Vec<_> = (0..2500).map(|n| entry(n, AGENT)).collect();
    for result in s.state.store.create_entries(entries).unwrap() {
        result.unwrap();
    }
    let mut rx = s
        .api
        .open_sync(id(AGENT), Default::default())
        .await
        .unwrap();
    let chunks = [
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ];
    let sizes: Vec<_> = chunks.iter().map(|c| c.upserted.len()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert!(chunks.iter().all(|c| c.snapshot));
    let complete: Vec<_> = chunks.iter().map(|c| c.complete).collect();
    assert_eq!(complete, [false, false, true]);
    assert!(chunks[0].bundle.is_some());
    assert!(chunks[1..].iter().all(|c| c.bundle.is_none()));
    let mut all: Vec<_> = chunks.iter().flat_map(ids).collect();
    all.dedup();
    assert_eq!(all.len(), 2500);
}

#[tokio::test]
async fn the_signing_rpcs_sign_only_authorized_entries() {
    let s = server();
    let agent = s.attested_agent().await;
    s.state.store.create_entry(entry(1, AGENT)).unwrap();
    let params = vec![
        node::NewX509svidParams {
            entry_id: "entry-00001".into(),
            csr: csr(),
        },
        node::NewX509svidParams {
            entry_id: "entry-99999".into(),
            csr: csr(),
        },
        node::NewX509svidParams {
            entry_id: "entry-00001".into(),
            csr: b"junk".to_vec(),
        },
    ];
    let response = s.api.sign_x509_batch(agent.clone(), params).await.unwrap();
    let codes: Vec<_> = response.results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [
            Code::Ok as i32,
            Code::PermissionDenied as i32,
            Code::InvalidArgument as i32
        ]
    );
    let leaf = crate::ca::x509::cert_facts(&response.results[0].cert_chain[0]).unwrap();
    let issued = s.state.store.get_issuance(&leaf.serial).unwrap().unwrap();
    assert_eq!(issued.entry_id.as_deref(), Some("entry-00001"));
    assert_eq!(issued.agent_id, Some(id(AGENT)));

    let jwt = node::NewJwtsvidRequest {
        entry_id: "entry-99999".into(),
        audience: vec!["db".into()],
    };
    let refused = s.api.sign_jwt(agent, jwt).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// The signing RPCs check the presented SVID against the agent's record
/// in the same trip as the signing: an SVID that is not the agent's
/// current one, or an agent with no record, gets nothing signed, on the
/// one-CSR path, the split-batch path and the JWT path alike.
#[tokio::test]
async fn the_signing_rpcs_refuse_a_superseded_svid_and_an_unknown_agent() {
    let s = server();
    let current = s.attested_agent().await;
    s.state.store.create_entry(entry(1, AGENT)).unwrap();
    let superseded = PeerSvid {
        serial: "0123".into(),
        ..current.clone()
    };
    let unknown = PeerSvid {
        id: id("spiffe://example.org/herald/agent/nobody"),
        ..current.clone()
    };
    let params = |n: usize| {
        (0..n)
            .map(|_| node::NewX509svidParams {
                entry_id: "entry-00001".into(),
                csr: csr(),
            })
            .collect::<Vec<_>>()
    };
    for (peer, says) in [
        (superseded, "not the agent's current one"),
        (unknown.clone(), "not attested"),
    ] {
        for n in [1, 40] {
            let err = s
                .api
                .sign_x509_batch(peer.clone(), params(n))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{n} CSRs: {err:?}");
            assert!(err.message().contains(says), "{n} CSRs: {err:?}");
        }
        let jwt = node::NewJwtsvidRequest {
            entry_id: "entry-00001".into(),
            audience: vec!["db".into()],
        };
        let err = s.api.sign_jwt(peer, jwt).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(says), "{err:?}");
    }
    // The caller is judged before its request: an empty audience is the
    // current agent's error to see, not a stranger's.
    let empty = || node::NewJwtsvidRequest {
        entry_id: "entry-00001".into(),
        audience: vec![String::new()],
    };
    let err = s.api.sign_jwt(unknown, empty()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = s.api.sign_jwt(current.clone(), empty()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // The current SVID is served on both paths.
    for n in [1, 40] {
        let signed = s
            .api
            .sign_x509_batch(current.clone(), params(n))
            .await
            .unwrap();
        assert!(signed.results.iter().all(|r| r.code == 0), "{n} CSRs");
    }
}

/// A batch's serials come in blocks of 16 (per signing thread), so the
/// issuance log stores them in a few groups; each SVID is still logged
/// under its own serial, and no serial repeats.
#[tokio::test]
async fn a_batch_is_signed_with_serials_in_blocks_and_each_is_logged() {
    let s = server();
    let agent = s.attested_agent().await;
    let params: Vec<_> = (0..40)
        .map(|n| {
            s.state.store.create_entry(entry(n, AGENT)).unwrap();
            node::NewX509svidParams {
                entry_id: format!("entry-{n:05}"),
                csr: csr(),
            }
        })
        .collect();
    let signed = s.api.sign_x509_batch(agent, params).await.unwrap();
    let mut serials = std::collections::BTreeSet::new();
    let mut groups = std::collections::BTreeSet::new();
    for (n, result) in signed.results.iter().enumerate() {
        assert_eq!(result.code, 0, "{}", result.message);
        let serial = crate::ca::x509::cert_facts(&result.cert_chain[0])
            .unwrap()
            .serial;
        let logged = s.state.store.get_issuance(&serial).unwrap().unwrap();
        assert_eq!(logged.entry_id, Some(format!("entry-{n:05}")));
        groups.insert(crate::ca::serial::group_key(&serial).to_owned());
        serials.insert(serial);
    }
    assert_eq!(serials.len(), 40, "a serial repeated");
    // 40 over at most a few threads: each thread's share fills blocks of
    // 16 and ends with one partial block.
    assert!(groups.len() <= 40 / 16 + 4, "{} groups", groups.len());
}

#[test]
fn a_large_change_is_split_and_keeps_its_other_parts_in_the_first_message() {
    let upserted: Vec<_> = (0..2001)
        .map(|n| crate::node::wire::entry_to_wire(&entry(n, AGENT)))
        .collect();
    let update = node::SyncUpdate {
        upserted,
        removed: vec!["gone".into()],
        ..Default::default()
    };
    let split = |u, f| {
        super::sync::split_update(u, f)
            .into_iter()
            .map(super::sync::SyncPart::into_update)
            .collect::<Vec<_>>()
    };
    let parts = split(update, Some(Default::default()));
    let sizes: Vec<_> = parts.iter().map(|p| p.upserted.len()).collect();
    assert_eq!(sizes, [1000, 1000, 1]);
    assert_eq!(parts[0].removed, ["gone"]);
    assert!(parts[0].federated_bundles_changed);
    assert!(parts[1..]
        .iter()
        .all(|p| p.removed.is_empty() && !p.federated_bundles_changed && !p.snapshot));
    let small = node::SyncUpdate {
        removed: vec!["x".into()],
        ..Default::default()
    };
    assert_eq!(split(small.clone(), None), [small]);
}

//! An in-process server for the admin API tests: a ServerState over a temp
//! sled store and in-memory keys, its admin routes served on a temp Unix
//! socket, and clients speaking real gRPC over that socket.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use herald::ca::MemoryKeyManager;
use herald::proto::admin;
use herald::proto::admin::agents_client::AgentsClient;
use herald::proto::admin::bundles_client::BundlesClient;
use herald::proto::admin::entries_client::EntriesClient;
use herald::proto::admin::svids_client::SvidsClient;
use herald::server::admin_api::{admin_routes, MAX_MESSAGE_SIZE};
use herald::server::authorities::{Authorities, CaSettings};
use herald::server::state::{now_unix, ServerSettings, ServerState};
use herald::spiffe::TrustDomain;
use herald::store::SledStore;
use tonic::transport::{Channel, Endpoint, Server};

/// A running admin API and a channel to it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: Arc<ServerState>,
    pub channel: Channel,
    pub socket: PathBuf,
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let keys = MemoryKeyManager::default();
        let td = TrustDomain::new("example.org").unwrap();
        let authorities =
            Authorities::load_or_create(&store, &keys, &td, CaSettings::default(), now_unix())
                .unwrap();
        let state = ServerState::new(
            td,
            Arc::new(store),
            Arc::new(keys),
            authorities,
            ServerSettings::default(),
        );
        let socket = dir.path().join("admin.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let routes = admin_routes(state.clone());
        tokio::spawn(
            Server::builder()
                .add_routes(routes)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let path = socket.clone();
        let channel = Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let p = path.clone();
                async move {
                    tokio::net::UnixStream::connect(p)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
            .unwrap();
        Harness {
            dir,
            state,
            channel,
            socket,
        }
    }

    pub fn entries(&self) -> EntriesClient<Channel> {
        EntriesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn agents(&self) -> AgentsClient<Channel> {
        AgentsClient::new(self.channel.clone())
    }

    pub fn bundles(&self) -> BundlesClient<Channel> {
        BundlesClient::new(self.channel.clone())
    }

    pub fn svids(&self) -> SvidsClient<Channel> {
        SvidsClient::new(self.channel.clone())
    }
}

pub fn sel(t: &str, v: &str) -> admin::Selector {
    admin::Selector {
        r#type: t.into(),
        value: v.into(),
    }
}

/// A valid entry for `spiffe://example.org/<path>` under a join-token agent.
pub fn entry(path: &str) -> admin::Entry {
    admin::Entry {
        spiffe_id: format!("spiffe://example.org/{path}"),
        parent_id: "spiffe://example.org/herald/agent/join_token/t1".into(),
        selectors: vec![sel("unix", &format!("uid:{}", path.len()))],
        ..Default::default()
    }
}

/// Asserts a failed call's code and that its message contains `needle`
/// (the field name).
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?} naming {needle:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(needle),
                "expected {needle:?} in {:?}",
                s.message()
            );
        }
    }
}

/// Asserts a batch item's status code and message.
#[track_caller]
pub fn assert_item(status: &Option<admin::Status>, code: tonic::Code, needle: &str) {
    let s = status.as_ref().expect("every result carries a status");
    assert_eq!(s.code, code as i32, "{}", s.message);
    assert!(
        s.message.contains(needle),
        "expected {needle:?} in {:?}",
        s.message
    );
}

/// A DER CSR signed by `key` with the given URI and DNS SANs.
pub fn csr(key: &rcgen::KeyPair, uris: &[&str], dns: &[&str]) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for u in uris {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI((*u).try_into().unwrap()));
    }
    for d in dns {
        params
            .subject_alt_names
            .push(rcgen::SanType::DnsName((*d).try_into().unwrap()));
    }
    params.serialize_request(key).unwrap().der().to_vec()
}

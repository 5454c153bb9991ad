//! The admin API of an in-process server ([`AdminApi`]): its routes served
//! on a temp Unix socket and clients speaking real gRPC over it; and the
//! request and reply helpers the admin tests share.

use std::path::PathBuf;
use std::sync::Arc;

use herald::proto::admin;
use herald::proto::admin::agents_client::AgentsClient;
use herald::proto::admin::bundles_client::BundlesClient;
use herald::proto::admin::entries_client::EntriesClient;
use herald::proto::admin::svids_client::SvidsClient;
use herald::proto::ADMIN_MAX_MESSAGE_SIZE as MAX_MESSAGE_SIZE;
use herald::server::admin_api::admin_routes;
use herald::server::state::ServerState;
use tonic::transport::Channel;

use super::peer::{serve_unix, Peer};

/// A running admin API of example.org and a channel to it.
pub struct AdminApi {
    pub peer: Peer,
    pub state: Arc<ServerState>,
    pub channel: Channel,
    pub socket: PathBuf,
}

impl AdminApi {
    pub async fn start() -> AdminApi {
        let peer = Peer::new("example.org");
        let socket = peer.dir().join("admin.sock");
        let channel = serve_unix(admin_routes(peer.state.clone()), &socket).await;
        AdminApi {
            state: peer.state.clone(),
            peer,
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

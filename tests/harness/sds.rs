//! Envoy SDS as an Envoy meets it: the client envoy-types generates, on an
//! agent's socket, with open streams a test drives request by request,
//! and the secrets decoded back into DER.

use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, Secret, SpiffeCertValidatorConfig,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use herald::ca::keys::pem_blocks;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// The type URL of a Secret.
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The SDS client on the agent socket `socket`.
pub async fn sds_client(socket: &Path) -> SecretDiscoveryServiceClient<Channel> {
    let channel = herald::uds::connect_unix(socket)
        .await
        .expect("connect to the agent socket");
    SecretDiscoveryServiceClient::new(channel)
}

/// A state-of-the-world request for `names`, answering the response
/// `nonce` with `version` (both empty for a first request).
pub fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: SECRET.into(),
        response_nonce: nonce.into(),
        ..DiscoveryRequest::default()
    }
}

/// A NACK of the response `nonce`.
pub fn nack(names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "test: rejected on purpose".into(),
            details: Vec::new(),
        }),
        ..request(names, "", nonce)
    }
}

/// An incremental request.
pub fn delta_request(
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: SECRET.into(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        ..DeltaDiscoveryRequest::default()
    }
}

/// One open bidirectional stream: requests go in through `tx`.
pub struct Open<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
}

/// An open StreamSecrets.
pub type SotwStream = Open<DiscoveryRequest, DiscoveryResponse>;
/// An open DeltaSecrets.
pub type DeltaStream = Open<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

impl<Req, Resp> Open<Req, Resp> {
    pub async fn send(&self, req: Req) {
        self.tx.send(req).await.expect("the request stream is open");
    }

    /// The next response; panics with `what` if none comes within `within`.
    pub async fn next(&mut self, within: Duration, what: &str) -> Resp {
        match self.try_next(within).await {
            Some(Ok(r)) => r,
            Some(Err(s)) => panic!("{what}: the stream failed: {s:?}"),
            None => panic!("{what}: nothing within {within:?}"),
        }
    }

    /// The next message, or None if nothing comes within `within`.
    pub async fn try_next(&mut self, within: Duration) -> Option<Result<Resp, tonic::Status>> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(Ok(r)),
            Ok(Ok(None)) => Some(Err(tonic::Status::unknown("the stream ended"))),
            Ok(Err(s)) => Some(Err(s)),
        }
    }
}

/// Opens a stream with `first` as its first request; `call` is the RPC.
async fn open<Req, Resp, F, Fut>(first: Req, call: F) -> Result<Open<Req, Resp>, tonic::Status>
where
    F: FnOnce(ReceiverStream<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Resp>>, tonic::Status>>,
{
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.expect("a fresh channel");
    let resp = call(ReceiverStream::new(rx)).await?;
    Ok(Open {
        tx,
        rx: resp.into_inner(),
    })
}

/// Opens StreamSecrets with `first` as its first request.
pub async fn open_sotw(
    c: &mut SecretDiscoveryServiceClient<Channel>,
    first: DiscoveryRequest,
) -> Result<SotwStream, tonic::Status> {
    open(first, |rx| c.stream_secrets(rx)).await
}

/// Opens DeltaSecrets with `first` as its first request.
pub async fn open_delta(
    c: &mut SecretDiscoveryServiceClient<Channel>,
    first: DeltaDiscoveryRequest,
) -> Result<DeltaStream, tonic::Status> {
    open(first, |rx| c.delta_secrets(rx)).await
}

/// Opens StreamSecrets and reads its first response (10 s at most).
pub async fn sotw_first(
    c: &mut SecretDiscoveryServiceClient<Channel>,
    first: DiscoveryRequest,
) -> (SotwStream, DiscoveryResponse) {
    let mut s = open_sotw(c, first).await.expect("StreamSecrets");
    let resp = s.next(FIRST, "StreamSecrets first response").await;
    (s, resp)
}

/// Opens DeltaSecrets and reads its first response (10 s at most).
pub async fn delta_first(
    c: &mut SecretDiscoveryServiceClient<Channel>,
    first: DeltaDiscoveryRequest,
) -> (DeltaStream, DeltaDiscoveryResponse) {
    let mut s = open_delta(c, first).await.expect("DeltaSecrets");
    let resp = s.next(FIRST, "DeltaSecrets first response").await;
    (s, resp)
}

/// How long a first response may take.
const FIRST: Duration = Duration::from_secs(10);

pub fn decode(any: &Any) -> Secret {
    assert_eq!(any.type_url, SECRET);
    Secret::decode(any.value.as_slice()).expect("a Secret")
}

/// The secrets of a response, by name.
pub fn secrets(resp: &DiscoveryResponse) -> Vec<Secret> {
    resp.resources.iter().map(decode).collect()
}

pub fn names(resp: &DiscoveryResponse) -> Vec<String> {
    secrets(resp).into_iter().map(|s| s.name).collect()
}

fn inline_text(d: &Option<DataSource>) -> String {
    match d.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone()).expect("PEM is text"),
        other => panic!("not inline bytes: {other:?}"),
    }
}

/// A TlsCertificate's chain (DER, leaf first) and PKCS#8 key (DER).
pub fn tls_der(s: &Secret) -> (Vec<Vec<u8>>, Vec<u8>) {
    let Some(secret::Type::TlsCertificate(t)) = &s.r#type else {
        panic!("{} is not a TLS certificate", s.name)
    };
    let chain = pem_blocks(&inline_text(&t.certificate_chain), "CERTIFICATE").expect("PEM");
    let mut keys = pem_blocks(&inline_text(&t.private_key), "PRIVATE KEY").expect("PEM");
    assert_eq!(keys.len(), 1);
    (chain, keys.remove(0))
}

/// A validation context's roots (DER) by trust domain name: from Envoy's
/// SPIFFE validator, or (`""`) a flat trusted_ca.
pub fn roots_der(s: &Secret) -> Vec<(String, Vec<Vec<u8>>)> {
    let Some(secret::Type::ValidationContext(vc)) = &s.r#type else {
        panic!("{} is not a validation context", s.name)
    };
    if let Some(ext) = &vc.custom_validator_config {
        assert_eq!(ext.name, "envoy.tls.cert_validator.spiffe");
        let any = ext.typed_config.as_ref().expect("a typed config");
        let config = SpiffeCertValidatorConfig::decode(any.value.as_slice()).expect("decodes");
        return config
            .trust_domains
            .iter()
            .map(|t| {
                let ders = pem_blocks(&inline_text(&t.trust_bundle), "CERTIFICATE").unwrap();
                (t.name.clone(), ders)
            })
            .collect();
    }
    let ders = pem_blocks(&inline_text(&vc.trusted_ca), "CERTIFICATE").unwrap();
    vec![(String::new(), ders)]
}

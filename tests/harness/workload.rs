//! The Workload API as a workload meets it: the `spiffe` crate's client,
//! a raw tonic client (for status codes the `spiffe` crate hides), and the
//! `herald api` command.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use herald::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::Channel;

use super::bin::herald;

/// A multi-threaded runtime for a synchronous test to drive clients on.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// The `spiffe` crate's client on the Workload API socket `socket`.
pub async fn client(socket: &Path) -> spiffe::WorkloadApiClient {
    spiffe::WorkloadApiClient::connect_to(format!("unix:{}", socket.display()))
        .await
        .expect("connect to the Workload API")
}

/// Retries `fetch_x509_svid` until this process's SVID is there (an entry
/// takes a moment to reach the agent); panics after 20 s.
pub async fn wait_for_svid(c: &spiffe::WorkloadApiClient) -> spiffe::X509Svid {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.fetch_x509_svid().await {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no SVID within 20s: {e}"),
        }
    }
}

/// Reads an SVID stream (`stream_x509_svids`) until an SVID for which
/// `wanted` holds arrives; panics saying `what` if none does within `within`.
pub async fn next_svid_where<S>(
    stream: &mut S,
    within: Duration,
    what: &str,
    mut wanted: impl FnMut(&spiffe::X509Svid) -> bool,
) -> spiffe::X509Svid
where
    S: Stream<Item = Result<spiffe::X509Svid, spiffe::WorkloadApiError>> + Unpin,
{
    let deadline = Instant::now() + within;
    loop {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.next(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .expect("the SVID stream ended")
        .expect("an SVID on the stream");
        if wanted(&next) {
            return next;
        }
    }
}

/// A raw gRPC client on the Workload API socket `socket`.
pub async fn raw_client(socket: &Path) -> SpiffeWorkloadApiClient<Channel> {
    let channel = herald::uds::connect_unix(socket)
        .await
        .expect("connect to the Workload API");
    SpiffeWorkloadApiClient::new(channel)
}

/// `msg` with the security header every Workload API call must carry.
pub fn with_header<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().expect("ASCII value"));
    req
}

/// Runs `herald api fetch x509 --write out` against an agent socket until
/// the workload's SVID is there (bounded), and returns its chain (DER).
pub fn fetch_x509_files(socket: &Path, out: &Path) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = herald()
            .args(["api", "fetch", "x509", "--socket"])
            .arg(socket)
            .arg("--write")
            .arg(out)
            .output()
            .expect("spawn herald");
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pem = std::fs::read_to_string(out.join("svid.0.pem")).expect("svid.0.pem");
    herald::ca::keys::pem_blocks(&pem, "CERTIFICATE").expect("PEM certificates")
}

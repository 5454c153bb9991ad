//! `herald helper`: identities for programs that cannot speak the Workload
//! API (the role spiffe-helper plays for SPIRE). It holds one
//! `FetchX509SVID` stream (push, never polling) and keeps the SVID, its
//! key and the bundle as PEM files in a directory, swapped as one set
//! ([`files`]); after each change it signals or runs the program's reload
//! ([`reload`]). JWT-SVIDs for configured audiences are fetched again at
//! half their life ([`jwt`]). When the agent restarts or its socket
//! vanishes, the files stay as they are and the helper reconnects with
//! backoff.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::backoff::{pause_after, Backoff};
use crate::ca::keys::{der_to_pem, pem_certs};
use crate::ca::x509::{cert_facts, split_der_certs};
use crate::config::helper::HelperConfig;
use crate::proto::workload::{self, spiffe_workload_api_client::SpiffeWorkloadApiClient};
use crate::uds::{connect_unix, workload_request, StreamError};

pub mod files;
pub mod jwt;
pub mod pkcs12;
pub mod reload;

pub use files::{Writer, X509Files};

/// Why one session with the agent ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The stream could not be opened or broke.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The update held no SVID.
    #[error("the agent sent no SVID for this workload")]
    NoSvid,
    /// The files could not be written.
    #[error("cannot install the new files")]
    Write(#[source] files::WriteError),
}

/// A Workload API client on the configured socket.
pub(crate) async fn client(
    config: &HelperConfig,
) -> Result<SpiffeWorkloadApiClient<tonic::transport::Channel>, SessionError> {
    let channel = connect_unix(&config.agent_socket)
        .await
        .map_err(StreamError::Connect)?;
    Ok(SpiffeWorkloadApiClient::new(channel))
}

/// Starts the helper's tasks: the X.509 follower and one JWT refresher per
/// audience. They run until aborted.
pub fn spawn(config: HelperConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let config = Arc::new(config);
    let writer = Arc::new(Writer::new((*config).clone()));
    let mut tasks = vec![tokio::spawn(
        follow_x509(config.clone(), writer.clone()).instrument(tracing::info_span!("x509")),
    )];
    for (audience, file) in &config.jwt_svids {
        let span = tracing::info_span!("jwt", audience = %audience);
        tasks.push(tokio::spawn(
            jwt::follow(
                config.clone(),
                writer.clone(),
                audience.clone(),
                file.clone(),
            )
            .instrument(span),
        ));
    }
    tasks
}

/// Follows the X.509 stream forever, reconnecting with backoff.
async fn follow_x509(config: Arc<HelperConfig>, writer: Arc<Writer>) {
    let mut backoff = Backoff::new();
    let mut last: Option<X509Files> = None;
    loop {
        let outcome = x509_session(&config, &writer, &mut backoff, &mut last).await;
        pause_after(&mut backoff, outcome, "X.509 SVIDs: the files stay").await;
    }
}

/// One stream: every update that differs from the files in place is
/// installed, then the program is told.
async fn x509_session(
    config: &HelperConfig,
    writer: &Writer,
    backoff: &mut Backoff,
    last: &mut Option<X509Files>,
) -> Result<(), SessionError> {
    let mut stream = client(config)
        .await?
        .fetch_x509svid(workload_request(workload::X509svidRequest {}))
        .await
        .map_err(StreamError::Status)?
        .into_inner();
    while let Some(msg) = stream.message().await.map_err(StreamError::Status)? {
        let svid = msg.svids.first().ok_or(SessionError::NoSvid)?;
        let files = to_files(&msg, svid, config.include_federated_bundles);
        backoff.reset();
        if last.as_ref() == Some(&files) {
            continue;
        }
        writer.install_x509(&files).map_err(SessionError::Write)?;
        let leaf = split_der_certs(&svid.x509_svid)
            .into_iter()
            .next()
            .unwrap_or_default();
        match cert_facts(&leaf) {
            Ok(f) => {
                tracing::info!(spiffe_id = %svid.spiffe_id, serial = %f.serial, not_after = %f.not_after, "X.509 files updated")
            }
            Err(_) => tracing::info!(spiffe_id = %svid.spiffe_id, "X.509 files updated"),
        }
        *last = Some(files);
        reload::reload(&config.reload).await;
    }
    Ok(())
}

/// The default (first) SVID of an update as PEM; the bundle holds the own
/// roots and, when asked, every federated trust domain's (sorted, so that
/// an unchanged set compares equal).
fn to_files(
    msg: &workload::X509svidResponse,
    svid: &workload::X509svid,
    federated: bool,
) -> X509Files {
    let mut bundle = pem_certs(&split_der_certs(&svid.bundle));
    if federated {
        let mut tds: Vec<_> = msg.federated_bundles.iter().collect();
        tds.sort();
        for (_, der) in tds {
            bundle.push_str(&pem_certs(&split_der_certs(der)));
        }
    }
    X509Files {
        chain: pem_certs(&split_der_certs(&svid.x509_svid)),
        key: der_to_pem(&svid.x509_svid_key, "PRIVATE KEY"),
        bundle,
    }
}

//! Serving a tonic router over connections our own accept loops hand over.
//!
//! Every listener (node API, anonymous node API, admin API) accepts and
//! budgets its connections itself, then passes the admitted ones to tonic
//! through a channel; this is the one place that runs a router over such a
//! channel until shutdown.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::{Connected, Router};
use tracing::Instrument as _;

use crate::errors::Chain;

/// Serves `router` over the connections arriving on `conns` until
/// `shutdown`, in a task with a `listener` span named `name`.
pub(super) fn spawn_router<L, IO>(
    router: Router<L>,
    conns: mpsc::Receiver<IO>,
    shutdown: &watch::Receiver<bool>,
    name: &'static str,
) -> JoinHandle<()>
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    L: tower::Layer<Routes> + Clone + Send + 'static,
    L::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<Body>>>::Future: Send + 'static,
    <L::Service as tower::Service<http::Request<Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut stop = shutdown.clone();
    tokio::spawn(
        async move {
            let incoming = ReceiverStream::new(conns).map(Ok::<_, std::io::Error>);
            let stopped = async move { crate::shutdown::stopped(&mut stop).await };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %Chain(&e), "{name} stopped");
            }
        }
        .instrument(tracing::info_span!("listener", name)),
    )
}

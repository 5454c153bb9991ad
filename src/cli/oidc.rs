//! `herald oidc`: serves the OIDC discovery document and the JWKS of the
//! trust domain's JWT authorities (see `crate::oidc`), over HTTPS with a
//! configured certificate, or over plain HTTP on loopback behind a proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::net::TcpListener;

use super::runtime::{runtime, wait_for_signal};
use super::CliError;
use crate::oidc::serve::{service, Documents};
use crate::server::federation::endpoint::identity::{load_web_identity, reload_web_identity};
use crate::server::federation::endpoint::limits;
use crate::server::server_svid::Resolver;
use crate::spiffe::TrustDomain;
use crate::tls::https_server::{self, Transport};

/// `herald oidc`
#[derive(Debug, Args)]
pub(super) struct OidcArgs {
    /// The agent's Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long)]
    agent_socket: Option<String>,
    /// The trust domain whose JWT authorities are published.
    #[arg(long)]
    trust_domain: String,
    /// The issuer URL clients are told (https://host[/path]); `jwks_uri` is
    /// <issuer>/keys. Set the server's `jwt_issuer` to the same value so
    /// that JWT-SVIDs carry it as `iss`.
    #[arg(long)]
    issuer: String,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// PEM certificate chain for HTTPS (re-read when it changes).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP (for a TLS-terminating proxy in front); only on a
    /// loopback address.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_http: bool,
    /// Connections at once from one address.
    #[arg(long, default_value_t = 16)]
    max_connections_per_peer: usize,
}

pub(super) fn run(args: OidcArgs) -> Result<(), CliError> {
    let td = TrustDomain::new(&args.trust_domain)
        .map_err(|e| CliError::bad_input_in("--trust-domain", &e))?;
    let issuer = args.issuer.trim_end_matches('/').to_string();
    let url = url::Url::parse(&issuer).map_err(|e| CliError::bad_input_in("--issuer", &e))?;
    if url.scheme() != "https" || url.host().is_none() || url.query().is_some() {
        return Err(CliError::BadInput(format!(
            "--issuer: {issuer:?} must be an https URL with a host and no query"
        )));
    }
    if args.insecure_http && !args.listen.ip().is_loopback() {
        return Err(CliError::BadInput(format!(
            "--insecure-http: {} is not a loopback address; plain HTTP is only for a proxy on this host",
            args.listen
        )));
    }
    if !args.insecure_http && args.tls_cert.is_none() {
        return Err(CliError::BadInput(
            "give --tls-cert and --tls-key, or --insecure-http behind a proxy".into(),
        ));
    }
    let socket = match args
        .agent_socket
        .or_else(|| std::env::var("SPIFFE_ENDPOINT_SOCKET").ok())
    {
        Some(s) => super::api::socket_path(&s)?,
        None => {
            return Err(CliError::BadInput(
                "--agent-socket is required (or SPIFFE_ENDPOINT_SOCKET)".into(),
            ))
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let certified = load_web_identity(cert, key).map_err(|e| CliError::bad_input(&e))?;
            Some((
                Arc::new(Resolver::new(certified)),
                cert.clone(),
                key.clone(),
            ))
        }
        _ => None,
    };
    runtime()?.block_on(async move {
        let (stop_tx, stop) = crate::shutdown::channel();
        let (jwks_tx, jwks) = tokio::sync::watch::channel(None);
        let follower = tokio::spawn(crate::oidc::follow_bundles(socket, td, Arc::new(jwks_tx)));
        let docs = Arc::new(Documents {
            discovery: crate::oidc::discovery_document(&issuer),
            jwks,
        });
        let listener = TcpListener::bind(args.listen).await.map_err(|e| {
            CliError::failed_in(format_args!("cannot listen on {}", args.listen), &e)
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| CliError::failed_in("listener address", &e))?;
        let limits = limits(args.max_connections_per_peer);
        let transport = match tls {
            Some((resolver, cert, key)) => {
                let mut config =
                    rustls::ServerConfig::builder_with_provider(crate::tls::provider())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| CliError::failed_in("TLS setup", &e))?
                        .with_no_client_auth()
                        .with_cert_resolver(resolver.clone());
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                tokio::spawn(reload_web_identity(cert, key, resolver, stop.clone()));
                Transport::Tls(Arc::new(config))
            }
            None => Transport::Plain,
        };
        let server = tokio::spawn(https_server::serve(
            listener,
            transport,
            limits,
            service(docs),
            stop,
        ));
        tracing::info!(%address, %issuer, "oidc discovery provider listening");
        eprintln!("herald oidc: listening on {address}");
        wait_for_signal().await;
        let _ = stop_tx.send(true);
        follower.abort();
        let _ = server.await;
        Ok(())
    })
}

//! This server's bundle endpoint (SPIFFE.md §5.4): HTTPS, `GET /` answers
//! the trust domain's SPIFFE bundle JSON with `spiffe_sequence` and the
//! configured `spiffe_refresh_hint`; other paths get 404, other methods 405.
//! TLS 1.2 or 1.3, and no client authentication is ever asked for.
//!
//! The endpoint's TLS identity depends on the profile:
//! - `https_spiffe`: an X509-SVID `spiffe://<td>/herald/server` minted from
//!   the active CA, renewed at half-life and as soon as the active CA
//!   changes (rotation).
//! - `https_web`: a certificate chain and key from PEM files, re-read when
//!   the files change (a renewed ACME certificate needs no restart). A bad
//!   new file is logged and the previous certificate stays in use.
//!
//! One request per connection (`Connection: close`); each connection is
//! bounded in time and size.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::config::{BundleEndpointConfig, EndpointProfile};
use super::fetch::read_pem_certs;
use super::http::{read_request_head, write_response};
use super::FederationError;
use crate::ca::{KeyPair, KeyType, SvidRequest};
use crate::server::state::{now_unix, ServerEvent, ServerState};
use crate::spiffe::SpiffeId;
use crate::tls::{certified_key, provider};

/// How long one connection may take, handshake and request included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How often `https_web` certificate files are checked for changes.
const WEB_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// After a failed SVID renewal, how long until the next attempt.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// Starts the bundle endpoint and returns the address it listens on. The
/// listener and the task keeping its certificate fresh stop when
/// `shutdown` turns true.
pub async fn serve_bundle_endpoint(
    state: Arc<ServerState>,
    config: BundleEndpointConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, FederationError> {
    let (certified, profile_name) = match &config.profile {
        EndpointProfile::HttpsSpiffe => (mint_svid(&state)?.0, "https_spiffe"),
        EndpointProfile::HttpsWeb {
            cert_path,
            key_path,
        } => (load_web_identity(cert_path, key_path)?, "https_web"),
    };
    let resolver = Arc::new(Resolver(RwLock::new(certified)));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FederationError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener =
        TcpListener::bind(config.address)
            .await
            .map_err(|source| FederationError::Bind {
                address: config.address,
                source,
            })?;
    let address = listener
        .local_addr()
        .map_err(|source| FederationError::Bind {
            address: config.address,
            source,
        })?;
    let span = tracing::info_span!("bundle_endpoint", %address, profile = profile_name);
    match config.profile.clone() {
        EndpointProfile::HttpsSpiffe => {
            tokio::spawn(
                renew_svid(state.clone(), resolver, shutdown.clone()).instrument(span.clone()),
            );
        }
        EndpointProfile::HttpsWeb {
            cert_path,
            key_path,
        } => {
            tokio::spawn(
                reload_web_identity(cert_path, key_path, resolver, shutdown.clone())
                    .instrument(span.clone()),
            );
        }
    }
    tokio::spawn(
        accept(
            listener,
            Arc::new(tls),
            state,
            config.refresh_hint_secs,
            shutdown,
        )
        .instrument(span.clone()),
    );
    span.in_scope(|| {
        tracing::info!(
            refresh_hint_secs = config.refresh_hint_secs,
            "bundle endpoint listening"
        )
    });
    Ok(address)
}

// === TLS identity ===

/// Serves whatever certificate is current to every handshake.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    fn set(&self, certified: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = certified;
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Mints the endpoint's SVID; returns it with its NotAfter and the serial
/// of the CA that signed it.
fn mint_svid(state: &ServerState) -> Result<(Arc<CertifiedKey>, i64, String), FederationError> {
    let tls_error = |e: &dyn std::fmt::Display| FederationError::Tls(e.to_string());
    let key = KeyPair::generate(KeyType::EcP256).map_err(|e| tls_error(&e))?;
    let id = SpiffeId::new(&state.trust_domain, "/herald/server").map_err(|e| tls_error(&e))?;
    let spki = key.public_key_spki();
    let authorities = state.authorities();
    let cert = authorities
        .x509()
        .sign_svid(
            &SvidRequest {
                spiffe_id: &id,
                public_key_spki: &spki,
                ttl_secs: state.settings.agent_svid_ttl,
                dns_names: &[],
            },
            now_unix(),
        )
        .map_err(|e| tls_error(&e))?;
    let (chain, key_der) = certified_key(&cert.chain, key.pkcs8_der());
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| tls_error(&e))?;
    Ok((
        Arc::new(CertifiedKey::new(chain, signing_key)),
        cert.not_after,
        authorities.x509().serial().to_string(),
    ))
}

/// Renews the SVID at half its life, and at once when the active CA
/// changes (its old SVID may soon chain to a root peers drop).
async fn renew_svid(
    state: Arc<ServerState>,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = state.subscribe();
    let mut ca_serial = state.authorities().x509().serial().to_string();
    let mut renew_at = now_unix() + state.settings.agent_svid_ttl / 2;
    loop {
        let wait = Duration::from_secs(u64::try_from(renew_at - now_unix()).unwrap_or(0).max(1));
        tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
            ev = events.recv() => {
                let relevant = matches!(ev, Ok(ServerEvent::BundleChanged) | Err(_));
                if !relevant || state.authorities().x509().serial() == ca_serial {
                    continue;
                }
            }
        }
        match mint_svid(&state) {
            Ok((certified, not_after, serial)) => {
                resolver.set(certified);
                let now = now_unix();
                renew_at = now + (not_after - now) / 2;
                ca_serial = serial;
                tracing::debug!(not_after, ca_serial = %ca_serial, "bundle endpoint SVID renewed");
            }
            Err(e) => {
                tracing::error!(error = %e, "renewing the bundle endpoint SVID failed; retrying in 10s");
                renew_at = now_unix() + RENEW_RETRY.as_secs() as i64;
            }
        }
    }
}

/// Loads an `https_web` certificate chain and key.
fn load_web_identity(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, FederationError> {
    let chain = read_pem_certs(cert_path, "bundle endpoint certificate")?;
    let key_error = |reason: String| FederationError::File {
        what: "bundle endpoint key",
        path: key_path.to_path_buf(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| key_error(format!("no usable PEM private key: {e}")))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    // rustls checks that the key belongs to the leaf when it can tell.
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(key_error(format!(
                "does not match the certificate {}: {e}",
                cert_path.display()
            )))
        }
    }
    Ok(Arc::new(certified))
}

fn modified(paths: &[&PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Re-reads the certificate files when they change; a bad new pair is
/// logged and the previous one stays in use.
async fn reload_web_identity(
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = modified(&[&cert_path, &key_path]);
    loop {
        tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            _ = tokio::time::sleep(WEB_RELOAD_INTERVAL) => {}
        }
        let now = modified(&[&cert_path, &key_path]);
        if now == seen {
            continue;
        }
        match load_web_identity(&cert_path, &key_path) {
            Ok(certified) => {
                resolver.set(certified);
                seen = now;
                tracing::info!(cert = %cert_path.display(), "bundle endpoint certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "the bundle endpoint certificate files changed but cannot be used; the previous certificate stays in use"
            ),
        }
    }
}

// === serving ===

async fn accept(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ServerState>,
    refresh_hint_secs: u64,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "bundle_endpoint.request",
            %peer,
            method = tracing::field::Empty,
            path = tracing::field::Empty,
            status = tracing::field::Empty
        );
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(
            async move {
                match tokio::time::timeout(
                    CONNECTION_TIMEOUT,
                    serve_one(tcp, acceptor, &state, refresh_hint_secs),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "bundle endpoint connection failed"),
                    Err(_) => tracing::debug!("bundle endpoint connection timed out"),
                }
            }
            .instrument(span),
        );
    }
}

async fn serve_one(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    state: &ServerState,
    refresh_hint_secs: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = acceptor.accept(tcp).await?;
    let head = read_request_head(&mut stream).await?;
    let span = tracing::Span::current();
    span.record("method", head.method.as_str());
    span.record("path", head.path.as_str());
    let reply = respond(state, refresh_hint_secs, &head.method, &head.path);
    span.record("status", reply.status);
    write_response(
        &mut stream,
        reply.status,
        reply.reason,
        reply.extra_headers,
        reply.content_type,
        &reply.body,
    )
    .await?;
    stream.shutdown().await?;
    tracing::debug!("bundle endpoint request served");
    Ok(())
}

/// What the endpoint answers.
struct Reply {
    status: u16,
    reason: &'static str,
    extra_headers: &'static [(&'static str, &'static str)],
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply {
            status,
            reason,
            extra_headers: &[],
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// `GET /` is the bundle; other paths 404; other methods 405 (as SPIRE).
fn respond(state: &ServerState, refresh_hint_secs: u64, method: &str, path: &str) -> Reply {
    if method != "GET" {
        return Reply {
            extra_headers: &[("Allow", "GET")],
            ..Reply::text(405, "Method Not Allowed", "method not allowed\n")
        };
    }
    if path != "/" {
        return Reply::text(404, "Not Found", "not found\n");
    }
    let mut bundle = state.authorities().bundle().clone();
    bundle.refresh_hint = Some(refresh_hint_secs);
    match bundle.to_spiffe_json() {
        Ok(json) => Reply {
            status: 200,
            reason: "OK",
            extra_headers: &[],
            content_type: "application/json",
            body: json.into_bytes(),
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot encode this trust domain's bundle");
            Reply::text(500, "Internal Server Error", "internal error\n")
        }
    }
}

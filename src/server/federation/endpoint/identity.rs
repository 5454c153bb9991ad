//! The bundle endpoint's TLS identity, kept fresh:
//! - `https_spiffe`: an X509-SVID `spiffe://<td>/herald/server` minted from
//!   the active CA, renewed at half-life and as soon as the active CA
//!   changes (rotation).
//! - `https_web`: a certificate chain and key from PEM files, re-read when
//!   the files change (a renewed ACME certificate needs no restart). A bad
//!   new file is logged and the previous certificate stays in use.

use crate::clock::now_unix;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::ca::{KeyPair, KeyType, SvidRequest};
use crate::server::federation::web_roots::read_pem_certs;
use crate::server::federation::{FederationError, FileProblem, TlsSetupError};
use crate::server::state::{ServerEvent, ServerState};
use crate::spiffe::SpiffeId;
use crate::tls::{certified_key, provider};

/// How often `https_web` certificate files are checked for changes.
const WEB_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// After a failed SVID renewal, how long until the next attempt.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// Serves whatever certificate is current to every handshake.
#[derive(Debug)]
pub(super) struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    pub(super) fn new(certified: Arc<CertifiedKey>) -> Self {
        Resolver(RwLock::new(certified))
    }

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
pub(super) fn mint_svid(
    state: &ServerState,
) -> Result<(Arc<CertifiedKey>, i64, String), TlsSetupError> {
    let key = KeyPair::generate(KeyType::EcP256)?;
    let id = SpiffeId::new(&state.trust_domain, "/herald/server")?;
    let spki = key.public_key_spki();
    let authorities = state.authorities();
    let cert = authorities.x509().sign_svid(
        &SvidRequest {
            spiffe_id: &id,
            public_key_spki: &spki,
            ttl_secs: state.settings.agent_svid_ttl,
            dns_names: &[],
        },
        now_unix(),
    )?;
    let (chain, key_der) = certified_key(&cert.chain, key.pkcs8_der());
    let signing_key = provider().key_provider.load_private_key(key_der)?;
    Ok((
        Arc::new(CertifiedKey::new(chain, signing_key)),
        cert.not_after,
        authorities.x509().serial().to_string(),
    ))
}

/// Renews the SVID at half its life, and at once when the active CA
/// changes (its old SVID may soon chain to a root peers drop).
pub(super) async fn renew_svid(
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
pub(super) fn load_web_identity(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, FederationError> {
    let chain = read_pem_certs(cert_path, "bundle endpoint certificate")?;
    let key_error = |reason| FederationError::File {
        what: "bundle endpoint key",
        path: key_path.to_path_buf(),
        reason: Box::new(reason),
    };
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| key_error(FileProblem::NoKey(e)))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(FileProblem::UnsupportedKey(e)))?;
    let certified = CertifiedKey::new(chain, signing_key);
    // rustls checks that the key belongs to the leaf when it can tell.
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(source) => {
            return Err(key_error(FileProblem::KeyMismatch {
                cert: cert_path.to_path_buf(),
                source,
            }))
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
pub(super) async fn reload_web_identity(
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

//! The bundle endpoint's TLS identity, kept fresh:
//! - `https_spiffe`: the server's own X509-SVID, kept fresh by
//!   [`crate::server::server_svid`] (renewed at half-life and as soon as
//!   the active CA changes).
//! - `https_web`: a certificate chain and key from PEM files, re-read when
//!   the files change (a renewed ACME certificate needs no restart). A bad
//!   new file is logged and the previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::errors::Chain;
use crate::server::federation::web_roots::read_pem_certs;
use crate::server::federation::{FederationError, FileProblem};
use crate::server::server_svid::Resolver;
use crate::tls::provider;

/// How often `https_web` certificate files are checked for changes.
const WEB_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Loads an `https_web` certificate chain and key.
pub(crate) fn load_web_identity(
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
pub(crate) async fn reload_web_identity(
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
                error = %Chain(&e),
                "the bundle endpoint certificate files changed but cannot be used; the previous certificate stays in use"
            ),
        }
    }
}

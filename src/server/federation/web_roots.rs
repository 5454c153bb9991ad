//! The roots `https_web` bundle endpoints are validated against: the
//! system's, plus the operator's `federation.web_roots_path`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::{FederationError, FileProblem};

/// Where the system's trusted roots are looked for, in order, after the
/// `SSL_CERT_FILE` environment variable (the paths of Debian/Ubuntu,
/// Fedora/RHEL, openSUSE and Alpine).
const SYSTEM_ROOT_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The roots `https_web` endpoints are validated against.
#[derive(Debug, Clone)]
pub struct WebRoots(Arc<RootCertStore>);

impl WebRoots {
    /// No roots: every `https_web` fetch fails with a clear error.
    pub fn empty() -> Self {
        WebRoots(Arc::new(RootCertStore::empty()))
    }

    /// The system roots plus, if given, every certificate of the PEM file
    /// `extra` (the `federation.web_roots_path` key). A missing system
    /// bundle is logged, not fatal; a bad `extra` file is an error.
    pub fn load(extra: Option<&Path>) -> Result<Self, FederationError> {
        let mut store = RootCertStore::empty();
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_ROOT_FILES.iter().map(PathBuf::from))
            .find(|p| p.is_file());
        match &system {
            Some(path) => match std::fs::read(path) {
                Ok(pem) => {
                    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                    let (added, ignored) = store.add_parsable_certificates(certs);
                    tracing::debug!(path = %path.display(), added, ignored, "system web roots loaded");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the system web roots")
                }
            },
            None => tracing::warn!(
                "no system web roots found (set SSL_CERT_FILE); https_web federation uses only federation.web_roots_path"
            ),
        }
        if let Some(path) = extra {
            for der in read_pem_certs(path, "federation web roots")? {
                store.add(der).map_err(|e| FederationError::File {
                    what: "federation web roots",
                    path: path.to_path_buf(),
                    reason: Box::new(FileProblem::NotARoot(e)),
                })?;
            }
        }
        Ok(WebRoots(Arc::new(store)))
    }

    /// Exactly the certificates (DER) given; for tests and private setups.
    pub fn from_ders(ders: &[Vec<u8>]) -> Result<Self, FederationError> {
        let mut store = RootCertStore::empty();
        for der in ders {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(FederationError::WebRoot)?;
        }
        Ok(WebRoots(Arc::new(store)))
    }

    /// The roots, for a rustls verifier.
    pub(crate) fn store(&self) -> Arc<RootCertStore> {
        self.0.clone()
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no roots.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every certificate of a PEM file; at least one.
pub(super) fn read_pem_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, FederationError> {
    let file_error = |reason| FederationError::File {
        what,
        path: path.to_path_buf(),
        reason: Box::new(reason),
    };
    let pem = std::fs::read(path).map_err(|e| file_error(FileProblem::Read(e)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(FileProblem::Pem(e)))?;
    if certs.is_empty() {
        return Err(file_error(FileProblem::NoCertificate));
    }
    Ok(certs)
}

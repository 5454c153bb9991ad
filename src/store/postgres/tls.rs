//! TLS to PostgreSQL with rustls (ring), the stack the rest of Herald uses:
//! `tokio-postgres-rustls` adapts a rustls client configuration to the
//! client library.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::settings::{PostgresSettings, SslMode};
use crate::store::StoreError;
use crate::tls::{provider, UnverifiedServer};

/// The TLS connector for `settings`, and the client library's SSL mode.
pub(super) fn connector(
    settings: &PostgresSettings,
) -> Result<(MakeRustlsConnect, tokio_postgres::config::SslMode), StoreError> {
    use tokio_postgres::config::SslMode as Pg;
    let setup = |what: &str, e: &dyn std::fmt::Display| StoreError::Setup(format!("{what}: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup("TLS setup", &e))?;
    let (config, mode) = match settings.sslmode {
        SslMode::VerifyFull => {
            let Some(path) = &settings.root_cert else {
                return Err(StoreError::Setup(
                    "sslmode \"verify-full\" needs root_cert (the PEM roots of the database's certificate)"
                        .into(),
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| setup(&format!("root_cert {}", path.display()), &e))?;
            for cert in certs {
                let cert = cert.map_err(|e| setup(&format!("root_cert {}", path.display()), &e))?;
                roots
                    .add(cert)
                    .map_err(|e| setup(&format!("root_cert {}", path.display()), &e))?;
            }
            if roots.is_empty() {
                return Err(StoreError::Setup(format!(
                    "root_cert {} holds no certificate",
                    path.display()
                )));
            }
            let config = builder.with_root_certificates(roots).with_no_client_auth();
            (config, Pg::Require)
        }
        mode => {
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UnverifiedServer))
                .with_no_client_auth();
            let mode = match mode {
                SslMode::Disable => Pg::Disable,
                SslMode::Require => Pg::Require,
                _ => Pg::Prefer,
            };
            (config, mode)
        }
    };
    Ok((MakeRustlsConnect::new(config), mode))
}

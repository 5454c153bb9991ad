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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::ConnectionString;

    fn settings(sslmode: SslMode, root_cert: Option<std::path::PathBuf>) -> PostgresSettings {
        PostgresSettings {
            sslmode,
            root_cert,
            ..PostgresSettings::new(ConnectionString::new("host=db"))
        }
    }

    #[test]
    fn modes_map_to_the_client_and_verify_full_needs_usable_roots() {
        use tokio_postgres::config::SslMode as Pg;
        for (mode, pg) in [
            (SslMode::Disable, Pg::Disable),
            (SslMode::Prefer, Pg::Prefer),
            (SslMode::Require, Pg::Require),
        ] {
            assert_eq!(connector(&settings(mode, None)).unwrap().1, pg);
        }
        let err = connector(&settings(SslMode::VerifyFull, None))
            .err()
            .unwrap();
        assert!(err.to_string().contains("root_cert"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = connector(&settings(SslMode::VerifyFull, Some(missing)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["db".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, params.self_signed(&key).unwrap().pem()).unwrap();
        let (_, mode) = connector(&settings(SslMode::VerifyFull, Some(pem))).unwrap();
        assert_eq!(mode, Pg::Require);
    }
}

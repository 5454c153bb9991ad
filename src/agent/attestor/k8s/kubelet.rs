//! The kubelet's pod list, `GET /pods`: on the secure port
//! (`https://<node name>:10250`, the agent's service account token as a
//! bearer token, the kubelet's certificate checked against
//! `kubelet_ca_path` for the node's name) or on the read-only port
//! (`http://127.0.0.1:<port>`, unauthenticated). One request per
//! connection through [`crate::http_get`], the body bounded by
//! [`MAX_POD_LIST`] and the exchange by [`REQUEST_TIMEOUT`].
//!
//! The token is read on every request: projected tokens are rotated by the
//! kubelet (hourly by default). The CA is read once, at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::pod::PodList;
use crate::config::k8s::{K8sSettings, KubeletPort, KubeletVerification, NodeNameSource};
use crate::http_get::{self, GetRequest, HttpError};

/// The largest pod list read: a node's pods with large annotations (110
/// pods of 100 KiB each is 11 MiB) fit with room to spare.
pub const MAX_POD_LIST: usize = 32 * 1024 * 1024;

/// The most one pod list request may take, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the kubelet client could not be set up (the agent does not start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The secure port needs the node's name to check the kubelet's certificate.
    #[error("no node name: set workload_attestors.k8s.node_name, or the environment variable {env} (node_name_env), from the pod's spec.nodeName")]
    NoNodeName {
        /// The environment variable looked at.
        env: String,
    },
    /// The node name is not a DNS name or an IP address.
    #[error("node name {0:?} is not a DNS name or an IP address")]
    BadNodeName(String),
    /// `kubelet_ca_path` could not be read or holds no certificate.
    #[error("kubelet CA {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration for the kubelet")]
    Tls(#[source] rustls::Error),
}

/// Why one pod list request failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The token file could not be read.
    #[error("cannot read the service account token {path}")]
    Token {
        /// `token_path`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No TCP connection to the kubelet.
    #[error("cannot connect to the kubelet at {url}")]
    Connect {
        /// The pod list URL.
        url: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (for example the certificate did not verify).
    #[error("TLS handshake with the kubelet at {url} failed")]
    Tls {
        /// The pod list URL.
        url: String,
        /// The TLS error, as tokio-rustls reports it.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed or the body was too large.
    #[error("GET {url}")]
    Http {
        /// The pod list URL.
        url: String,
        /// What went wrong.
        #[source]
        source: HttpError,
    },
    /// The kubelet answered with another status than 200.
    #[error("the kubelet answered {status} to GET {url}: {body}")]
    Status {
        /// The pod list URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (the kubelet's reason, such as `Unauthorized`).
        body: String,
    },
    /// The body is not a pod list.
    #[error("the kubelet's answer to GET {url} is not a PodList")]
    Decode {
        /// The pod list URL.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No complete answer within [`REQUEST_TIMEOUT`].
    #[error("the kubelet at {url} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The pod list URL.
        url: String,
    },
}

/// How to reach the kubelet.
#[derive(Debug)]
enum Transport {
    Plain,
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        token_path: PathBuf,
    },
}

/// A client of one kubelet's `/pods`.
#[derive(Debug)]
pub struct KubeletClient {
    host: String,
    port: u16,
    /// `host:port`, the `Host` header.
    authority: String,
    url: String,
    transport: Transport,
}

// === impl KubeletClient ===

impl KubeletClient {
    /// A client as `settings` describe it, the node name read from the
    /// environment through `getenv` if it comes from there.
    pub fn new(
        settings: &K8sSettings,
        getenv: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
        let (port, token_path, verification) = match &settings.kubelet {
            KubeletPort::ReadOnly(port) => {
                return Ok(KubeletClient::at(
                    "127.0.0.1",
                    *port,
                    "http",
                    Transport::Plain,
                ))
            }
            KubeletPort::Secure {
                port,
                token_path,
                verification,
            } => (*port, token_path, verification),
        };
        let node_name = match &settings.node_name {
            NodeNameSource::Fixed(n) => Some(n.clone()),
            NodeNameSource::Env(var) => getenv(var).filter(|n| !n.is_empty()),
        };
        let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(SetupError::Tls)?;
        let (host, config) = match verification {
            KubeletVerification::CaFile(ca) => {
                let host = node_name.ok_or_else(|| SetupError::NoNodeName {
                    env: match &settings.node_name {
                        NodeNameSource::Env(v) => v.clone(),
                        NodeNameSource::Fixed(_) => String::new(),
                    },
                })?;
                (host, builder.with_root_certificates(roots(ca)?))
            }
            // As SPIRE does: without a name, the kubelet on this host.
            KubeletVerification::Skip => (
                node_name.unwrap_or_else(|| "127.0.0.1".into()),
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(crate::tls::UnverifiedServer)),
            ),
        };
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| SetupError::BadNodeName(host.clone()))?;
        let transport = Transport::Tls {
            config: Arc::new(config.with_no_client_auth()),
            server_name,
            token_path: token_path.clone(),
        };
        Ok(KubeletClient::at(&host, port, "https", transport))
    }

    fn at(host: &str, port: u16, scheme: &str, transport: Transport) -> Self {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        KubeletClient {
            host: host.to_string(),
            port,
            url: format!("{scheme}://{authority}/pods"),
            authority,
            transport,
        }
    }

    /// The pod list URL, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kubelet's current pod list.
    pub async fn pod_list(&self) -> Result<PodList, KubeletError> {
        let url = self.url.clone();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, self.fetch())
            .await
            .map_err(|_| KubeletError::Timeout { url: url.clone() })??;
        serde_json::from_slice(&body).map_err(|source| KubeletError::Decode { url, source })
    }

    async fn fetch(&self) -> Result<Vec<u8>, KubeletError> {
        let url = || self.url.clone();
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| KubeletError::Connect { url: url(), source })?;
        let mut request = GetRequest {
            target: "/pods",
            host: &self.authority,
            bearer: None,
            max_body: MAX_POD_LIST,
        };
        let response = match &self.transport {
            Transport::Plain => http_get::get(tcp, request).await,
            Transport::Tls {
                config,
                server_name,
                token_path,
            } => {
                let token = read_token(token_path)?;
                request.bearer = Some(&token);
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|source| KubeletError::Tls { url: url(), source })?;
                http_get::get(tls, request).await
            }
        }
        .map_err(|source| KubeletError::Http { url: url(), source })?;
        if response.status != 200 {
            let excerpt = &response.body[..response.body.len().min(200)];
            return Err(KubeletError::Status {
                url: url(),
                status: response.status,
                body: String::from_utf8_lossy(excerpt).trim().to_string(),
            });
        }
        Ok(response.body)
    }
}

/// The bearer token: the file's content without surrounding whitespace.
fn read_token(path: &Path) -> Result<String, KubeletError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| KubeletError::Token {
            path: path.to_path_buf(),
            source,
        })
}

/// The CA certificates of a PEM file.
fn roots(path: &Path) -> Result<rustls::RootCertStore, SetupError> {
    let ca = |reason: String| SetupError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| ca(format!("cannot read it: {e}")))?;
    let ders = crate::ca::pem::pem_blocks(&pem, "CERTIFICATE").map_err(|e| ca(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(ders.into_iter().map(CertificateDer::from));
    if added == 0 {
        return Err(ca("no usable CERTIFICATE in it".into()));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(kubelet: KubeletPort, node_name: NodeNameSource) -> K8sSettings {
        K8sSettings {
            kubelet,
            node_name,
            max_poll_attempts: 1,
            poll_retry_interval: Duration::from_millis(10),
            disable_container_selectors: false,
            proc_root: "/proc".into(),
        }
    }

    fn secure(verification: KubeletVerification) -> KubeletPort {
        KubeletPort::Secure {
            port: 10250,
            token_path: "/t".into(),
            verification,
        }
    }

    #[test]
    fn urls_follow_the_port_and_the_node_name() {
        let env = NodeNameSource::Env("MY_NODE_NAME".into());
        let ro = KubeletClient::new(&settings(KubeletPort::ReadOnly(10255), env.clone()), |_| {
            None
        });
        assert_eq!(ro.unwrap().url(), "http://127.0.0.1:10255/pods");
        let named = |v: &str| (v == "MY_NODE_NAME").then(|| "worker-1".to_string());
        let skip = settings(secure(KubeletVerification::Skip), env.clone());
        assert_eq!(
            KubeletClient::new(&skip, named).unwrap().url(),
            "https://worker-1:10250/pods"
        );
        // Without a name and without verification: this host's kubelet.
        assert_eq!(
            KubeletClient::new(&skip, |_| None).unwrap().url(),
            "https://127.0.0.1:10250/pods"
        );
        let ip = settings(
            secure(KubeletVerification::Skip),
            NodeNameSource::Fixed("fd00::1".into()),
        );
        assert_eq!(
            KubeletClient::new(&ip, |_| None).unwrap().url(),
            "https://[fd00::1]:10250/pods"
        );
    }

    #[test]
    fn verification_needs_a_node_name_and_a_readable_ca() {
        let env = NodeNameSource::Env("MY_NODE_NAME".into());
        let ca = settings(
            secure(KubeletVerification::CaFile("/nonexistent/ca.crt".into())),
            env,
        );
        let err = KubeletClient::new(&ca, |_| None).unwrap_err();
        assert!(err.to_string().contains("MY_NODE_NAME"), "{err}");
        let err = KubeletClient::new(&ca, |_| Some("worker-1".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.crt");
        std::fs::write(&empty, "not a certificate").unwrap();
        let ca = settings(
            secure(KubeletVerification::CaFile(empty)),
            NodeNameSource::Fixed("worker-1".into()),
        );
        let err = KubeletClient::new(&ca, |_| None).unwrap_err();
        assert!(err.to_string().contains("no usable CERTIFICATE"), "{err}");
    }
}

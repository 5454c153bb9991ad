//! HTTPS to a Kubernetes API server (or to the host serving a cluster's
//! JWKS): one request per connection through [`crate::http_get`], the
//! server's certificate checked against the configured CA (the in-cluster
//! `ca.crt` by default) or the system roots, the body bounded by
//! [`MAX_RESPONSE`] and the exchange by [`REQUEST_TIMEOUT`].
//!
//! The bearer token (the Herald server's own service-account token) is
//! read on every request: projected tokens rotate. It never appears in an
//! error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use tokio::net::TcpStream;

use crate::http_get::{self, GetRequest, HttpError};
use crate::k8s_psat::review;

/// The largest answer read: TokenReviews, pods and nodes are a few KiB,
/// a pod with large annotations some hundreds.
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// The most one request may take, connection to last byte. An attestation
/// makes at most three (review, pod, node) within the anonymous call's 10 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a client could not be set up (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No roots at all (no CA file and no system roots).
    #[error("no CA to check {0} against: set the CA path, or install the system roots")]
    NoRoots(String),
    /// The URL's host cannot be a TLS server name.
    #[error("{0:?} is not a TLS server name")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// Why one request failed. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The bearer token file could not be read.
    #[error("cannot read the API token {path}")]
    Token {
        /// `kube_api_token_path`.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No TCP connection.
    #[error("cannot connect to {url}")]
    Connect {
        /// The request URL.
        url: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (the certificate did not verify, say).
    #[error("TLS handshake with {url} failed")]
    Tls {
        /// The request URL.
        url: String,
        /// As tokio-rustls reports it.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed or the answer was too large.
    #[error("{method} {url}")]
    Http {
        /// `GET` or `POST`.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What went wrong.
        #[source]
        source: HttpError,
    },
    /// Another status than 200 or 201.
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (a Kubernetes `Status` message, say).
        body: String,
    },
    /// No complete answer in time.
    #[error("{url} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The request URL.
        url: String,
    },
}

impl ApiError {
    /// The HTTP status, when the peer answered with one we refuse.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One HTTPS origin (`https://host:port`) with a path prefix.
#[derive(Debug)]
pub struct HttpsClient {
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// The URL's path without its trailing `/`, prefixed to every request.
    prefix: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    token_path: Option<PathBuf>,
}

impl HttpsClient {
    /// A client of `url`'s origin trusting `ca_path` (or the system roots),
    /// sending the token of `token_path`, if any, as a bearer token.
    pub fn new(
        url: &url::Url,
        ca_path: Option<&Path>,
        token_path: Option<PathBuf>,
    ) -> Result<Self, SetupError> {
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let roots = match ca_path {
            Some(p) => roots(p)?,
            None => {
                let system = crate::server::federation::WebRoots::load(None)
                    .map_err(|e| SetupError::NoRoots(format!("{url} ({e})")))?;
                if system.is_empty() {
                    return Err(SetupError::NoRoots(url.to_string()));
                }
                (*system.store()).clone()
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(SetupError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name =
            ServerName::try_from(bare.clone()).map_err(|_| SetupError::ServerName(host.clone()))?;
        Ok(HttpsClient {
            authority: match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            },
            host: bare,
            port,
            prefix: url.path().trim_end_matches('/').to_string(),
            server_name,
            tls: Arc::new(config),
            token_path,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{}{path}", self.authority, self.prefix)
    }

    /// `GET <prefix><path>`: the body of a 200.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        self.exchange(path, None).await
    }

    /// `POST <prefix><path>` with a JSON body: the body of a 200 or 201.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        self.exchange(path, Some(body)).await
    }

    async fn exchange(&self, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, ApiError> {
        let url = self.url(path);
        tokio::time::timeout(REQUEST_TIMEOUT, self.send(path, &url, body))
            .await
            .map_err(|_| ApiError::Timeout { url: url.clone() })?
    }

    async fn send(
        &self,
        path: &str,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ApiError> {
        let method = if body.is_some() { "POST" } else { "GET" };
        let token = match &self.token_path {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ApiError::Connect {
                url: url.to_string(),
                source,
            })?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| ApiError::Tls {
                url: url.to_string(),
                source,
            })?;
        let mut target = format!("{}{path}", self.prefix);
        if !target.starts_with('/') {
            target.insert(0, '/');
        }
        let request = GetRequest {
            target: &target,
            host: &self.authority,
            bearer: token.as_deref(),
            max_body: MAX_RESPONSE,
        };
        let response = match body {
            Some(b) => http_get::post_json(tls, request, b).await,
            None => http_get::get(tls, request).await,
        }
        .map_err(|source| ApiError::Http {
            method,
            url: url.to_string(),
            source,
        })?;
        if !matches!(response.status, 200 | 201) {
            let excerpt = &response.body[..response.body.len().min(300)];
            return Err(ApiError::Status {
                method,
                url: url.to_string(),
                status: response.status,
                body: String::from_utf8_lossy(excerpt).trim().to_string(),
            });
        }
        Ok(response.body)
    }

    /// A TokenReview of `token` for `audience`: the API server's answer.
    pub async fn token_review(&self, token: &str, audience: &str) -> Result<Vec<u8>, ApiError> {
        self.post_json(review::PATH, review::request_body(token, audience))
            .await
    }
}

/// The bearer token: the file's content without surrounding whitespace.
fn read_token(path: &Path) -> Result<String, ApiError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|source| ApiError::Token {
            path: path.to_path_buf(),
            source,
        })
}

/// The CA certificates of a PEM file.
fn roots(path: &Path) -> Result<RootCertStore, SetupError> {
    let ca = |reason: String| SetupError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca(format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca(format!("bad PEM: {e}")))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ca("no usable CERTIFICATE in it".into()));
    }
    Ok(store)
}

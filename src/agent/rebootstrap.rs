//! Re-bootstrapping trust without an operator (SPIRE's #4624). An agent
//! away for longer than its bundle stays current comes back to servers
//! whose certificates chain to roots it never saw: its saved bundle can no
//! longer validate any server, and it used to stay stuck until someone
//! repaired it by hand. With `[rebootstrap]` configured, once servers have
//! failed validation for the configured delay (and none has passed it
//! meanwhile), the agent reads the trust domain's roots from the configured
//! source, says so loudly, and connects with them; if the server does not
//! accept its own SVID any more either, it attests again.
//!
//! The delay is the safety margin: a server briefly presenting a bad
//! certificate, or an attacker on the path for a moment, does not make
//! agents trust something else. The source is as trustworthy as its
//! transport: an HTTPS bundle endpoint authenticated with Web PKI, or a
//! file kept current by configuration management.

use std::path::Path;
use std::time::{Duration, Instant};

use super::metrics::AgentMetrics;
use crate::backoff::Backoff;
use crate::ca::pem::pem_blocks;
use crate::config::limits::DEFAULT_FEDERATION_MAX_BUNDLE_KEYS;
use crate::config::servers::{BundleSource, RebootstrapSettings};
use crate::errors::Chain;
use crate::node::{attest_with, AgentCredential, AttestError, Method, ServerConnector};
use crate::server::federation::{fetch_bundle, FetchError, FetchLimits, WebRoots};
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::{BundleEndpointProfile, FederationRelationship};

/// The deadline of one fetch from `bundle_url`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest bundle file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Why the roots could not be read from the source.
#[derive(Debug, thiserror::Error)]
pub enum RebootstrapError {
    /// The file could not be read.
    #[error("rebootstrap.bundle_path {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable bundle.
    #[error("rebootstrap.bundle_path {path}: {reason}")]
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `web_roots_path` could not be read.
    #[error("rebootstrap.web_roots_path")]
    WebRoots(#[source] crate::server::federation::FederationError),
    /// The bundle endpoint did not give a bundle.
    #[error("rebootstrap.bundle_url")]
    Fetch(#[source] FetchError),
    /// The bundle holds no X.509 root: nothing to validate a server with.
    #[error("the bundle from {0} holds no X.509 authority")]
    NoRoots(String),
}

/// Watches connection failures and decides when to re-bootstrap.
#[derive(Debug)]
pub struct Rebootstrap {
    settings: RebootstrapSettings,
    /// Since when servers keep failing validation against our roots.
    untrusted_since: Option<Instant>,
}

impl Rebootstrap {
    /// A watcher for `settings`.
    pub fn new(settings: RebootstrapSettings) -> Self {
        Rebootstrap {
            settings,
            untrusted_since: None,
        }
    }

    /// Where the roots come from, as the log names it.
    pub fn source(&self) -> &BundleSource {
        &self.settings.source
    }

    /// A server's certificate passed validation: the clock stops.
    pub fn trusted(&mut self) {
        if self.untrusted_since.take().is_some() {
            tracing::info!(
                "a server validates against the saved trust bundle again; no re-bootstrap"
            );
        }
    }

    /// A connection attempt failed; `untrusted` says whether a server
    /// answered with a certificate our roots cannot validate. True once
    /// that has lasted the whole delay. Other failures (no server
    /// answering) neither start nor stop the clock.
    pub fn failed(&mut self, untrusted: bool) -> bool {
        self.failed_at(untrusted, Instant::now())
    }

    /// [`Self::failed`] at `now`.
    fn failed_at(&mut self, untrusted: bool, now: Instant) -> bool {
        if !untrusted {
            return false;
        }
        let since = *self.untrusted_since.get_or_insert_with(|| {
            tracing::warn!(
                delay = ?self.settings.delay,
                source = %self.settings.source,
                "the server's certificate does not chain to the saved trust bundle; \
                 unless a server validates again, the agent re-bootstraps its trust from the source after the delay"
            );
            now
        });
        now.saturating_duration_since(since) >= self.settings.delay
    }

    /// How long servers have failed validation, if they do.
    pub fn untrusted_for(&self) -> Option<Duration> {
        self.untrusted_since.map(|s| s.elapsed())
    }

    /// After a re-bootstrap: the clock starts again from zero.
    pub fn restart(&mut self) {
        self.untrusted_since = None;
    }

    /// The delay has passed: says so loudly, starts the clock again, and
    /// reads the roots from the source. `held_sequence` is the sequence of
    /// the saved bundle being given up.
    pub async fn renew_roots(
        &mut self,
        td: &TrustDomain,
        held_sequence: u64,
    ) -> Result<Bundle, RebootstrapError> {
        tracing::error!(
            trust_domain = %td,
            source = %self.settings.source,
            untrusted_for = ?self.untrusted_for().unwrap_or_default(),
            held_bundle_sequence = held_sequence,
            "RE-BOOTSTRAPPING TRUST: no server has validated against the saved trust bundle for the whole \
             rebootstrap delay (the agent was away longer than its bundle stayed current, or the servers' CA \
             was replaced); trusting the roots read from the source instead"
        );
        self.restart();
        let bundle = self.fetch(td).await?;
        tracing::warn!(
            x509_authorities = bundle.x509_authorities.len(),
            source = %self.settings.source,
            "re-bootstrapped trust from the source"
        );
        Ok(bundle)
    }

    /// The trust domain's bundle, read from the source now.
    pub async fn fetch(&self, td: &TrustDomain) -> Result<Bundle, RebootstrapError> {
        let bundle = match &self.settings.source {
            BundleSource::File(path) => read_file(path, td).await?,
            BundleSource::Url {
                url,
                web_roots_path,
            } => {
                let web_roots = WebRoots::load(web_roots_path.as_deref())
                    .map_err(RebootstrapError::WebRoots)?;
                let rel = FederationRelationship {
                    trust_domain: td.clone(),
                    bundle_endpoint_url: url.clone(),
                    profile: BundleEndpointProfile::HttpsWeb,
                };
                let limits = FetchLimits::with_timeout(FETCH_TIMEOUT);
                fetch_bundle(&rel, &[], &web_roots, limits)
                    .await
                    .map_err(RebootstrapError::Fetch)?
            }
        };
        if bundle.x509_authorities.is_empty() {
            return Err(RebootstrapError::NoRoots(self.settings.source.to_string()));
        }
        Ok(bundle)
    }
}

/// Attests at start by `method`. With `rebootstrap`, a server whose
/// certificate our roots cannot validate is tried again (with backoff)
/// until the delay has passed; then the roots are read from the source,
/// and attestation goes on with them. Any other failure is returned.
pub async fn attest_at_start(
    connector: &ServerConnector,
    method: Method<'_>,
    mut rebootstrap: Option<&mut Rebootstrap>,
    td: &TrustDomain,
    held_sequence: u64,
    metrics: &AgentMetrics,
) -> Result<(AgentCredential, Bundle), AttestError> {
    let mut backoff = Backoff::new();
    loop {
        let err = match attest_with(connector, method).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let untrusted = matches!(&err, AttestError::Connect(c) if c.server_untrusted());
        let Some(r) = rebootstrap.as_deref_mut().filter(|_| untrusted) else {
            return Err(err);
        };
        if r.failed(true) {
            match r.renew_roots(td, held_sequence).await {
                Ok(bundle) => {
                    metrics.rebootstrapped();
                    connector.roots().set(bundle.x509_authorities);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "re-bootstrapping trust failed; trying again after the delay")
                }
            }
        }
        let delay = backoff.jittered_delay();
        tracing::warn!(error = %Chain(&err), retry_in = ?delay, "attestation failed");
        tokio::time::sleep(delay).await;
    }
}

/// A bundle file: a SPIFFE bundle (JSON) or PEM CA certificates.
async fn read_file(path: &Path, td: &TrustDomain) -> Result<Bundle, RebootstrapError> {
    let read_err = |source| RebootstrapError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bad = |reason: String| RebootstrapError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let len = tokio::fs::metadata(path).await.map_err(read_err)?.len();
    if len > MAX_FILE {
        return Err(bad(format!("larger than {MAX_FILE} bytes")));
    }
    let bytes = tokio::fs::read(path).await.map_err(read_err)?;
    if bytes.trim_ascii_start().starts_with(b"{") {
        return Bundle::from_spiffe_json_limited(
            td.clone(),
            &bytes,
            DEFAULT_FEDERATION_MAX_BUNDLE_KEYS,
        )
        .map_err(|e| bad(format!("not a SPIFFE bundle: {e}")));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("neither JSON nor PEM".into()))?;
    let roots = pem_blocks(&text, "CERTIFICATE").map_err(|e| bad(format!("not PEM: {e}")))?;
    let mut bundle = Bundle::new(td.clone());
    bundle.x509_authorities = roots;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn watcher(path: &Path, delay: Duration) -> Rebootstrap {
        Rebootstrap::new(RebootstrapSettings {
            source: BundleSource::File(path.to_path_buf()),
            delay,
        })
    }

    #[test]
    fn only_untrusted_servers_for_the_whole_delay_call_for_it() {
        let mut r = watcher(Path::new("/none"), Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!r.failed_at(false, at(0)), "no server answered: no clock");
        assert!(r.untrusted_for().is_none());
        assert!(!r.failed_at(true, at(1)));
        assert!(r.untrusted_for().is_some());
        assert!(!r.failed_at(false, at(70)), "other failures decide nothing");
        assert!(!r.failed_at(true, at(60)), "not yet");
        assert!(r.failed_at(true, at(61)));
        // A server that validates stops the clock.
        r.trusted();
        assert!(!r.failed_at(true, at(100)));
        assert!(!r.failed_at(true, at(159)));
        assert!(r.failed_at(true, at(160)));
        r.restart();
        assert!(r.untrusted_for().is_none());
    }

    #[tokio::test]
    async fn a_pem_or_json_file_gives_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            std::sync::Arc::new(crate::ca::KeyPair::generate(crate::ca::KeyType::EcP256).unwrap());
        let ca = crate::ca::x509::X509Authority::self_signed(
            &td(),
            key,
            3_600,
            crate::clock::now_unix(),
        )
        .unwrap();
        let der = ca.cert_der().to_vec();

        let pem = dir.path().join("roots.pem");
        std::fs::write(&pem, crate::ca::pem::der_to_pem(&der, "CERTIFICATE")).unwrap();
        let b = watcher(&pem, Duration::from_secs(1))
            .fetch(&td())
            .await
            .unwrap();
        assert_eq!(b.x509_authorities, std::slice::from_ref(&der));
        assert_eq!(b.sequence, 0, "any server bundle replaces it");

        let mut bundle = Bundle::new(td());
        bundle.x509_authorities = vec![der.clone()];
        let json = dir.path().join("bundle.json");
        std::fs::write(&json, bundle.to_spiffe_json().unwrap()).unwrap();
        let b = watcher(&json, Duration::from_secs(1))
            .fetch(&td())
            .await
            .unwrap();
        assert_eq!(b.x509_authorities, [der]);
    }

    #[tokio::test]
    async fn an_unusable_source_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = watcher(&missing, Duration::from_secs(1))
            .fetch(&td())
            .await
            .unwrap_err();
        assert!(matches!(err, RebootstrapError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let err = watcher(&empty, Duration::from_secs(1))
            .fetch(&td())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no X.509 authority"), "{err}");

        let json = dir.path().join("bad.json");
        std::fs::write(&json, "{\"keys\": 3}").unwrap();
        let err = watcher(&json, Duration::from_secs(1))
            .fetch(&td())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a SPIFFE bundle"), "{err}");
    }
}

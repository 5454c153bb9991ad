//! The server's own X509-SVID, `spiffe://<td>/herald/server`: what the node
//! API and an `https_spiffe` bundle endpoint present in their TLS
//! handshakes. One loop keeps each listener's copy fresh: renewed at half
//! its life, and when the bundle changes (at once, since the old SVID may
//! soon chain to a root that peers drop). A failed renewal is logged and
//! retried; the previous SVID stays in use meanwhile.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::state::{ServerEvent, ServerState};
use crate::ca::{KeyError, KeyPair, KeyType, SvidRequest, X509Error};
use crate::clock::now_unix;
use crate::errors::Chain;
use crate::spiffe::IdError;
use crate::tls::{certified_key, provider};

/// After a failed renewal, how long until the next attempt.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// Why the server's TLS identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServerSvidError {
    /// rustls refused the configuration or the key.
    #[error("rustls refused the server SVID or its key")]
    Rustls(#[from] rustls::Error),
    /// No key pair could be generated.
    #[error("generating the server SVID's key")]
    Key(#[from] KeyError),
    /// The server's SPIFFE ID could not be formed.
    #[error("forming the server's SPIFFE ID")]
    Id(#[from] IdError),
    /// The CA could not sign the server's SVID.
    #[error("the CA could not sign the server SVID")]
    Sign(#[from] X509Error),
}

/// A freshly minted server SVID.
pub struct ServerSvid {
    /// The chain and key, ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// When the SVID expires.
    pub not_after: i64,
    /// The serial of the CA that signed it.
    pub ca_serial: String,
}

/// Mints a server SVID from the active CA, with the agent SVID lifetime.
pub fn mint(state: &ServerState) -> Result<ServerSvid, ServerSvidError> {
    let key = KeyPair::generate(KeyType::EcP256)?;
    let id = crate::registration::node_alias::server_id(&state.trust_domain)?;
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
    Ok(ServerSvid {
        certified: Arc::new(CertifiedKey::new(chain, signing_key)),
        not_after: cert.not_after,
        ca_serial: authorities.x509().serial().to_string(),
    })
}

/// Serves whatever certificate is current to every handshake.
#[derive(Debug)]
pub struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    /// A resolver serving `certified` until [`Resolver::set`].
    pub fn new(certified: Arc<CertifiedKey>) -> Self {
        Resolver(RwLock::new(certified))
    }

    /// Serves `certified` from the next handshake on.
    pub fn set(&self, certified: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = certified;
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Which bundle changes renew the SVID at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOn {
    /// Every one (the node API also follows the bundle's roots).
    AnyBundleChange,
    /// Only those that changed the active CA.
    CaChange,
}

/// Renews the SVID served by `resolver` at half its life and on bundle
/// changes (as `renew_on` says) until `stop`. `before_renewal` runs first
/// on every wake-up that renews, e.g. to follow the bundle's roots.
pub async fn keep_fresh(
    state: Arc<ServerState>,
    resolver: Arc<Resolver>,
    renew_on: RenewOn,
    before_renewal: impl Fn(&ServerState) + Send,
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
                let ca_changed = state.authorities().x509().serial() != ca_serial;
                if !relevant || (renew_on == RenewOn::CaChange && !ca_changed) {
                    continue;
                }
            }
        }
        before_renewal(&state);
        match mint(&state) {
            Ok(svid) => {
                resolver.set(svid.certified);
                let now = now_unix();
                renew_at = now + (svid.not_after - now) / 2;
                ca_serial = svid.ca_serial;
                tracing::debug!(not_after = svid.not_after, ca_serial = %ca_serial, "server SVID renewed");
            }
            Err(e) => {
                tracing::error!(error = %Chain(&e), "renewing the server SVID failed; retrying in 10s");
                renew_at = now_unix() + RENEW_RETRY.as_secs() as i64;
            }
        }
    }
}

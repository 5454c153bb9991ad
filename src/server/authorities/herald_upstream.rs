//! A Herald server as the upstream authority of another (nested servers:
//! several clusters, one trust domain). The downstream server attests to
//! its upstream with a join token, exactly like an agent, keeps that
//! credential in `<data_dir>/upstream/`, and asks for its CA with
//! `NewDownstreamX509CA`, which the upstream grants only to a caller that an
//! entry marked `downstream` authorizes.
//!
//! Signing happens inside the (synchronous) authority transitions, which
//! always run on tokio's blocking pool; the network call is driven there
//! with the runtime's handle.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::upstream::{file_error, FileProblem, Upstream, UpstreamError, UpstreamSigned};
use crate::ca::x509::X509Error;
use crate::ca::{KeyError, KeyPair, KeyType};
use crate::clock::now_unix;
use crate::errors::StatusReason;
use crate::node::{
    attest, make_csr, AgentCredential, AttestError, CredentialStore, CredentialStoreError,
    CsrBuildError, NodeClientError, ServerConnector,
};
use crate::proto::node;
use crate::spiffe::TrustDomain;
use crate::tls::Roots;

/// Why the upstream Herald server could not sign.
#[derive(Debug, thiserror::Error)]
pub enum HeraldUpstreamError {
    /// The saved credential could not be read or written.
    #[error("upstream credential directory")]
    Store(#[from] CredentialStoreError),
    /// No credential to reuse and nothing to attest with.
    #[error("no saved upstream credential and no upstream_join_token configured")]
    NoJoinToken,
    /// Join-token attestation failed.
    #[error("attestation")]
    Attest(#[from] AttestError),
    /// The connection could not be set up.
    #[error(transparent)]
    Connect(#[from] NodeClientError),
    /// A key could not be generated.
    #[error("generating a key")]
    Key(#[from] KeyError),
    /// A CSR could not be built.
    #[error(transparent)]
    Csr(#[from] CsrBuildError),
    /// The upstream refused a call, or the connection broke during it.
    #[error("{call}: {}", StatusReason(.status))]
    Refused {
        /// The RPC.
        call: &'static str,
        /// The status (not a `#[source]`: its `Display` repeats its message).
        status: tonic::Status,
    },
    /// The upstream answered without something it must send.
    #[error("the upstream sent no {0}")]
    Missing(&'static str),
    /// A certificate from the upstream (or our own saved one) does not parse.
    #[error("an upstream certificate")]
    Cert(#[from] X509Error),
}

fn refused(call: &'static str) -> impl FnOnce(tonic::Status) -> HeraldUpstreamError {
    move |status| HeraldUpstreamError::Refused { call, status }
}

/// A connection to the upstream Herald server.
pub struct HeraldUpstream {
    connector: ServerConnector,
    store: CredentialStore,
    cred: Mutex<AgentCredential>,
    roots: Mutex<Vec<Vec<u8>>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for HeraldUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeraldUpstream").finish_non_exhaustive()
    }
}

impl HeraldUpstream {
    /// Attests to the upstream at `addr` (or reuses the credential saved in
    /// `dir`), trusting `bootstrap_pem` the first time.
    pub async fn connect(
        td: &TrustDomain,
        addr: std::net::SocketAddr,
        bootstrap_pem: &Path,
        join_token: Option<&str>,
        dir: &Path,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let store = CredentialStore::open(dir).map_err(HeraldUpstreamError::from)?;
        let saved_bundle = store.load_bundle(td).map_err(HeraldUpstreamError::from)?;
        let roots = match &saved_bundle {
            Some(b) => b.x509_authorities.clone(),
            None => {
                let bad = |p: FileProblem| file_error("trust bundle", bootstrap_pem, p);
                let pem = std::fs::read_to_string(bootstrap_pem).map_err(|e| bad(e.into()))?;
                crate::ca::keys::pem_blocks(&pem, "CERTIFICATE").map_err(|e| bad(e.into()))?
            }
        };
        let connector = ServerConnector::new(addr, td, Roots::new(roots.clone()), false)
            .map_err(HeraldUpstreamError::from)?;
        let saved = store
            .load_credential()
            .map_err(HeraldUpstreamError::from)?
            .filter(|c| c.not_after > now_unix());
        let (cred, roots) = match (saved, saved_bundle) {
            (Some(c), Some(b)) => (c, b.x509_authorities),
            _ => {
                let token = join_token.ok_or(HeraldUpstreamError::NoJoinToken)?;
                let (cred, bundle) = attest(&connector, token)
                    .await
                    .map_err(HeraldUpstreamError::from)?;
                store
                    .save_credential(&cred)
                    .map_err(HeraldUpstreamError::from)?;
                store
                    .save_bundle(&bundle)
                    .map_err(HeraldUpstreamError::from)?;
                (cred, bundle.x509_authorities)
            }
        };
        connector.roots().set(roots.clone());
        tracing::info!(upstream = %addr, as_id = %cred.spiffe_id, "attested to the upstream Herald server");
        Ok(Arc::new(Upstream::Herald(HeraldUpstream {
            connector,
            store,
            cred: Mutex::new(cred),
            roots: Mutex::new(roots),
            runtime: tokio::runtime::Handle::current(),
        })))
    }

    /// The trust domain's roots, as the upstream last reported them.
    pub(super) fn roots(&self) -> Vec<Vec<u8>> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks the upstream to sign a CA for `key`. Must run off the async
    /// workers (the authority transitions run on the blocking pool).
    pub(super) fn sign_ca(&self, key: &KeyPair, ttl: i64) -> Result<UpstreamSigned, UpstreamError> {
        let csr = make_csr(key).map_err(HeraldUpstreamError::from)?;
        Ok(self.runtime.block_on(self.sign_async(csr, ttl))?)
    }

    async fn sign_async(
        &self,
        csr: Vec<u8>,
        ttl: i64,
    ) -> Result<UpstreamSigned, HeraldUpstreamError> {
        let cred = self.current_credential().await?;
        let mut client = self.connector.authenticated(&cred).await?;
        let resp = client
            .new_downstream_x509ca(node::NewDownstreamX509caRequest {
                csr,
                preferred_ttl: ttl,
            })
            .await
            .map_err(refused("NewDownstreamX509CA"))?
            .into_inner();
        let mut chain = resp.ca_cert_chain.into_iter();
        let cert_der = chain
            .next()
            .ok_or(HeraldUpstreamError::Missing("CA certificate"))?;
        if resp.x509_authorities.is_empty() {
            return Err(HeraldUpstreamError::Missing("roots"));
        }
        *self.roots.lock().unwrap_or_else(|p| p.into_inner()) = resp.x509_authorities.clone();
        self.connector.roots().set(resp.x509_authorities);
        Ok(UpstreamSigned {
            cert_der,
            chain_below_root: chain.collect(),
        })
    }

    /// The credential, renewed first when it is past half its life.
    async fn current_credential(&self) -> Result<AgentCredential, HeraldUpstreamError> {
        let cred = self.cred.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let leaf = cred
            .chain
            .first()
            .ok_or(HeraldUpstreamError::Missing("credential certificate"))?;
        let facts = crate::ca::x509::cert_facts(leaf)?;
        if now_unix() < facts.not_before + (facts.not_after - facts.not_before) / 2 {
            return Ok(cred);
        }
        let key = KeyPair::generate(KeyType::EcP256)?;
        let mut client = self.connector.authenticated(&cred).await?;
        let resp = client
            .renew_agent(node::RenewAgentRequest {
                csr: make_csr(&key)?,
            })
            .await
            .map_err(refused("RenewAgent"))?
            .into_inner();
        let leaf = resp
            .svid_chain
            .first()
            .ok_or(HeraldUpstreamError::Missing("renewed SVID"))?;
        let not_after = crate::ca::x509::cert_facts(leaf)?.not_after;
        let renewed = AgentCredential {
            spiffe_id: cred.spiffe_id.clone(),
            chain: resp.svid_chain,
            key: Arc::new(key),
            not_after,
        };
        self.store.save_credential(&renewed)?;
        *self.cred.lock().unwrap_or_else(|p| p.into_inner()) = renewed.clone();
        Ok(renewed)
    }
}

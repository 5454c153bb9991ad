//! The server's signing authorities: for X.509 and for JWT, at most one
//! *prepared* (published, not yet signing), one *active* (signing) and any
//! number of *old* ones (kept in the bundle until what they signed expires),
//! all recorded in the CA journal so a restart resumes a rotation where it
//! left off.
//!
//! An [`Authorities`] value is immutable: every transition (see
//! `transitions.rs`) writes the journal first, then returns a new value that
//! the server swaps in, so readers never see a half-made change. New keys go
//! to the key manager before their journal record, so a crash in between
//! leaves at worst an unused key file, never a record whose key is missing.
//! The trust bundle is derived from the authorities; its sequence grows
//! whenever its content (or a taint) changes.

use std::sync::Arc;

use crate::ca::{
    JwtKey, KeyManager, KeyManagerError, KeyPair, KeyType, SignedCert, SvidRequest, X509Authority,
    X509Error,
};
use crate::spiffe::{Bundle, JwtAuthority, SpiffeId, TrustDomain};
use crate::store::{
    AuthorityKind, AuthorityRecord, AuthorityState, DataStore, IssuanceRecord, StoreError,
};

pub mod herald_upstream;
mod shared;
#[cfg(test)]
mod shared_tests;
mod transitions;
pub mod upstream;

pub use upstream::{DiskUpstream, Upstream};

/// Why the authorities could not be loaded, created, changed or used.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The datastore failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be found or made.
    #[error(transparent)]
    Keys(#[from] KeyManagerError),
    /// Building or using the X.509 CA failed.
    #[error(transparent)]
    X509(#[from] X509Error),
    /// JWT signing failed.
    #[error(transparent)]
    Jwt(#[from] crate::ca::JwtSignError),
    /// The workload key could not be generated.
    #[error(transparent)]
    Key(#[from] crate::ca::KeyError),
    /// The data directory belongs to another trust domain.
    #[error("this data directory holds the CA of trust domain {found}, not {wanted}; use another data directory")]
    TrustDomainMismatch {
        /// The trust domain in the journal.
        found: String,
        /// The one asked for.
        wanted: TrustDomain,
    },
    /// A journal record is unusable.
    #[error("CA journal record {id} is unusable: {reason}")]
    BadRecord {
        /// The record id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The upstream authority could not sign.
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    /// An operator asked for a transition that is not allowed now.
    #[error("{0}")]
    NotAllowed(String),
    /// The bundle kept changing under this server's compare-and-swap.
    #[error("could not publish the trust bundle: other servers changed it {attempts} times in a row; retrying later")]
    BundleContention {
        /// How many swaps were lost.
        attempts: usize,
    },
    /// No authority with that id.
    #[error("no {kind} authority with id {id:?}")]
    NotFound {
        /// "X.509" or "JWT".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
}

/// How new authorities are made.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// Key type of CA and JWT keys.
    pub key_type: KeyType,
    /// Lifetime of a new CA (and JWT key), seconds.
    pub ca_ttl_secs: i64,
    /// The upstream that signs our CA, or None for a self-signed CA.
    pub upstream: Option<Arc<Upstream>>,
    /// This server's id (see `server_id.rs`): journal records of other ids
    /// belong to other servers of the trust domain sharing the store.
    pub server_id: String,
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            key_type: KeyType::EcP256,
            ca_ttl_secs: 24 * 3600,
            upstream: None,
            server_id: String::new(),
        }
    }
}

/// One X.509 authority: its journal record and, for prepared and active
/// ones, the loaded signer (old ones only contribute their certificate).
#[derive(Debug, Clone)]
pub struct X509Slot {
    /// The journal record.
    pub record: AuthorityRecord,
    /// The signer (prepared and active only).
    pub ca: Option<Arc<X509Authority>>,
}

/// One JWT signing key and its journal record.
#[derive(Debug, Clone)]
pub struct JwtSlot {
    /// The journal record.
    pub record: AuthorityRecord,
    /// The key (prepared and active only).
    pub key: Option<JwtKey>,
    /// The bundle entry, for every state.
    pub authority: JwtAuthority,
}

/// The authority set and the bundle that trusts it.
#[derive(Debug, Clone)]
pub struct Authorities {
    trust_domain: TrustDomain,
    settings: CaSettings,
    x509: Vec<X509Slot>,
    jwt: Vec<JwtSlot>,
    active_x509: Arc<X509Authority>,
    active_jwt: JwtKey,
    /// The trust bundle: the union of every server's authorities.
    bundle: Bundle,
    /// Other servers' journal records, as of `bundle` (their taints reach
    /// this server's agents too).
    foreign: Arc<Vec<AuthorityRecord>>,
}

/// A minted X509-SVID with its private key (local minting only: agents keep
/// their workloads' keys and send CSRs).
#[derive(Debug)]
pub struct MintedSvid {
    /// The certificate and chain.
    pub cert: SignedCert,
    /// The private key of the leaf.
    pub key: KeyPair,
}

/// What the tainted slots of one kind contribute (`part` of each).
fn tainted<S, T>(
    slots: &[S],
    record: impl Fn(&S) -> &AuthorityRecord,
    part: impl Fn(&S) -> Option<T>,
) -> Vec<T> {
    slots
        .iter()
        .filter(|s| record(s).tainted)
        .filter_map(part)
        .collect()
}

/// A journal record seen as a slot of itself.
fn itself(r: &AuthorityRecord) -> &AuthorityRecord {
    r
}

impl Authorities {
    /// Loads the authorities of `td` from the journal, creating and
    /// activating new ones when none is active and valid at `now`.
    pub fn load_or_create(
        store: &dyn DataStore,
        keys: &dyn KeyManager,
        td: &TrustDomain,
        settings: CaSettings,
        now: i64,
    ) -> Result<Self, AuthorityError> {
        let mut x509 = Vec::new();
        let mut jwt = Vec::new();
        let (mine, _foreign) = shared::split_journal(store, keys, &settings.server_id)?;
        for rec in mine {
            match rec.kind {
                AuthorityKind::X509 => x509.push(transitions::load_x509(rec, keys, td)?),
                AuthorityKind::Jwt => jwt.push(transitions::load_jwt(rec, keys)?),
            }
        }
        let bundle = store
            .get_bundle(td)?
            .unwrap_or_else(|| Bundle::new(td.clone()));
        let draft = transitions::Draft {
            td: td.clone(),
            settings,
            x509,
            jwt,
            prev: bundle,
        };
        transitions::assemble(store, keys, draft, now)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The settings new authorities are made with.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// The active X.509 CA.
    pub fn x509(&self) -> &X509Authority {
        &self.active_x509
    }

    /// The active JWT key.
    pub fn jwt(&self) -> &JwtKey {
        &self.active_jwt
    }

    /// Every X.509 authority in the journal.
    pub fn x509_slots(&self) -> &[X509Slot] {
        &self.x509
    }

    /// Every JWT key in the journal.
    pub fn jwt_slots(&self) -> &[JwtSlot] {
        &self.jwt
    }

    /// The trust bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Certificates of tainted X.509 authorities (of any server): agents
    /// re-issue anything they signed.
    pub fn tainted_x509(&self) -> Vec<Vec<u8>> {
        let mut out = tainted(&self.x509, |s| &s.record, |s| s.record.cert_der.clone());
        out.extend(tainted(&self.foreign, itself, |r| r.cert_der.clone()));
        out
    }

    /// Key IDs of tainted JWT keys (of any server).
    pub fn tainted_jwt(&self) -> Vec<String> {
        let mut out = tainted(
            &self.jwt,
            |s| &s.record,
            |s| Some(s.authority.key_id.clone()),
        );
        out.extend(tainted(&self.foreign, itself, |r| r.jwt_key_id.clone()));
        out
    }

    /// Other servers' journal records as of [`Authorities::bundle`].
    pub fn foreign(&self) -> &[AuthorityRecord] {
        &self.foreign
    }

    /// The bundle sequence at which the prepared authorities (if any) were
    /// first published; activation waits until agents acknowledged it.
    pub fn prepared_sequence(&self) -> Option<u64> {
        self.x509
            .iter()
            .map(|s| &s.record)
            .chain(self.jwt.iter().map(|s| &s.record))
            .filter(|r| r.state == AuthorityState::Prepared)
            .map(|r| r.bundle_sequence)
            .max()
    }

    /// Signs an X509-SVID over a key the caller holds, and records it in the
    /// issuance log before returning (so a returned SVID is always logged).
    pub fn sign_x509_svid(
        &self,
        store: &dyn DataStore,
        req: &SvidRequest<'_>,
        agent_id: Option<&SpiffeId>,
        now: i64,
    ) -> Result<SignedCert, AuthorityError> {
        let cert = self.active_x509.sign_svid(req, now)?;
        store.append_issuances(&[IssuanceRecord {
            serial: cert.serial.clone(),
            spiffe_id: req.spiffe_id.clone(),
            agent_id: agent_id.cloned(),
            entry_id: None,
            not_after: cert.not_after,
            issued_at: now,
        }])?;
        Ok(cert)
    }

    /// Generates a key and signs an X509-SVID for it (the local mint command).
    pub fn mint_x509_svid(
        &self,
        store: &dyn DataStore,
        spiffe_id: &SpiffeId,
        key_type: KeyType,
        ttl_secs: i64,
        dns_names: &[String],
        now: i64,
    ) -> Result<MintedSvid, AuthorityError> {
        let key = KeyPair::generate(key_type)?;
        let spki = key.public_key_spki();
        let cert = self.sign_x509_svid(
            store,
            &SvidRequest {
                spiffe_id,
                public_key_spki: &spki,
                ttl_secs,
                dns_names,
            },
            None,
            now,
        )?;
        Ok(MintedSvid { cert, key })
    }
}

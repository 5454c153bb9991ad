//! The server's active signing authorities, loaded from the CA journal.
//!
//! On start the server looks in its journal for the active X.509 CA and the
//! active JWT key; if there are none (a new data directory) it mints them,
//! stores each key in the key manager first and the journal record second,
//! so a crash between the two leaves at worst an unused key file, never a
//! journal entry whose key is missing. The trust bundle is then brought in
//! line with the authorities, bumping its sequence only when it changed.
//! (Rotation, with prepared and old authorities, builds on this.)

use std::sync::Arc;

use crate::ca::{
    jwt::new_kid, JwtKey, KeyManager, KeyManagerError, KeyPair, KeyType, SignedCert, SvidRequest,
    X509Authority, X509Error,
};
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};
use crate::store::{
    AuthorityKind, AuthorityRecord, AuthorityState, DataStore, IssuanceRecord, StoreError,
};

/// Why the authorities could not be loaded, created or used.
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
}

/// How new authorities are made.
#[derive(Debug, Clone, Copy)]
pub struct CaSettings {
    /// Key type of CA and JWT keys.
    pub key_type: KeyType,
    /// Lifetime of a new CA (and JWT key), seconds.
    pub ca_ttl_secs: i64,
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            key_type: KeyType::EcP256,
            ca_ttl_secs: 24 * 3600,
        }
    }
}

/// The authorities signing right now, and the bundle that trusts them.
#[derive(Debug)]
pub struct Authorities {
    trust_domain: TrustDomain,
    x509: X509Authority,
    jwt: JwtKey,
    bundle: Bundle,
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

impl Authorities {
    /// Loads the active authorities of `td` from the journal, creating them
    /// when the journal has none that is still valid at `now`.
    pub fn load_or_create(
        store: &dyn DataStore,
        keys: &dyn KeyManager,
        td: &TrustDomain,
        settings: CaSettings,
        now: i64,
    ) -> Result<Self, AuthorityError> {
        let records = store.list_authorities()?;
        let active = |kind: AuthorityKind| {
            records
                .iter()
                .rev()
                .find(|r| r.kind == kind && r.state == AuthorityState::Active && r.not_after > now)
        };
        let x509 = match active(AuthorityKind::X509) {
            Some(rec) => load_x509(rec, keys, td)?,
            None => create_x509(store, keys, td, settings, now)?,
        };
        let jwt = match active(AuthorityKind::Jwt) {
            Some(rec) => load_jwt(rec, keys)?,
            None => create_jwt(store, keys, settings, now)?,
        };
        let bundle = sync_bundle(store, td, &x509, &jwt)?;
        Ok(Authorities {
            trust_domain: td.clone(),
            x509,
            jwt,
            bundle,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The active X.509 CA.
    pub fn x509(&self) -> &X509Authority {
        &self.x509
    }

    /// The active JWT key.
    pub fn jwt(&self) -> &JwtKey {
        &self.jwt
    }

    /// The trust bundle as stored.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
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
        let cert = self.x509.sign_svid(req, now)?;
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

fn load_x509(
    rec: &AuthorityRecord,
    keys: &dyn KeyManager,
    td: &TrustDomain,
) -> Result<X509Authority, AuthorityError> {
    let bad = |reason: &str| AuthorityError::BadRecord {
        id: rec.id.clone(),
        reason: reason.to_string(),
    };
    let cert = rec.cert_der.clone().ok_or_else(|| bad("no certificate"))?;
    let facts = crate::ca::x509::cert_facts(&cert)?;
    let want = td.id_string();
    if !facts.uri_sans.iter().any(|u| u == &want) {
        return Err(AuthorityError::TrustDomainMismatch {
            found: facts
                .uri_sans
                .iter()
                .map(|u| u.strip_prefix("spiffe://").unwrap_or(u))
                .collect::<Vec<_>>()
                .join(", "),
            wanted: td.clone(),
        });
    }
    let key = keys.get(&rec.key_id)?;
    Ok(X509Authority::from_parts(
        td,
        cert,
        rec.upstream_chain.clone(),
        key,
    )?)
}

fn load_jwt(rec: &AuthorityRecord, keys: &dyn KeyManager) -> Result<JwtKey, AuthorityError> {
    let kid = rec
        .jwt_key_id
        .clone()
        .ok_or_else(|| AuthorityError::BadRecord {
            id: rec.id.clone(),
            reason: "no kid".into(),
        })?;
    let key = keys.get(&rec.key_id)?;
    Ok(JwtKey::new(kid, key, rec.not_after))
}

fn create_x509(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    td: &TrustDomain,
    settings: CaSettings,
    now: i64,
) -> Result<X509Authority, AuthorityError> {
    let id = format!("x509-{}", uuid::Uuid::new_v4().simple());
    let key: Arc<KeyPair> = keys.generate(&id, settings.key_type)?;
    let ca = X509Authority::self_signed(td, key, settings.ca_ttl_secs, now)?;
    tracing::info!(trust_domain = %td, serial = ca.serial(), not_after = ca.not_after(), "minted a new self-signed X.509 CA");
    store.put_authority(&AuthorityRecord {
        id: id.clone(),
        kind: AuthorityKind::X509,
        state: AuthorityState::Active,
        tainted: false,
        key_id: id,
        cert_der: Some(ca.cert_der().to_vec()),
        upstream_chain: Vec::new(),
        public_key: None,
        jwt_key_id: None,
        not_before: ca.not_before(),
        not_after: ca.not_after(),
        created_at: now,
    })?;
    Ok(ca)
}

fn create_jwt(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    settings: CaSettings,
    now: i64,
) -> Result<JwtKey, AuthorityError> {
    let id = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    let key = keys.generate(&id, settings.key_type)?;
    let not_after = now + settings.ca_ttl_secs;
    let jwt = JwtKey::new(new_kid()?, key.clone(), not_after);
    tracing::info!(kid = jwt.kid(), not_after, "minted a new JWT signing key");
    store.put_authority(&AuthorityRecord {
        id: id.clone(),
        kind: AuthorityKind::Jwt,
        state: AuthorityState::Active,
        tainted: false,
        key_id: id,
        cert_der: None,
        upstream_chain: Vec::new(),
        public_key: Some(key.public_key_spki()),
        jwt_key_id: Some(jwt.kid().to_string()),
        not_before: now,
        not_after,
        created_at: now,
    })?;
    Ok(jwt)
}

/// Makes sure the stored bundle of `td` holds the active authorities; bumps
/// the sequence only when something was added.
fn sync_bundle(
    store: &dyn DataStore,
    td: &TrustDomain,
    x509: &X509Authority,
    jwt: &JwtKey,
) -> Result<Bundle, AuthorityError> {
    let mut bundle = store
        .get_bundle(td)?
        .unwrap_or_else(|| Bundle::new(td.clone()));
    let mut changed = false;
    // Only self-signed CAs exist so far, so the CA itself is the root to
    // trust; an upstream authority will contribute its own root instead.
    if !bundle.x509_authorities.iter().any(|c| c == x509.cert_der()) {
        bundle.x509_authorities.push(x509.cert_der().to_vec());
        changed = true;
    }
    if !bundle.jwt_authorities.iter().any(|a| a.key_id == jwt.kid()) {
        bundle.jwt_authorities.push(jwt.authority());
        changed = true;
    }
    if changed {
        bundle.sequence += 1;
        store.set_bundle(&bundle)?;
    }
    Ok(bundle)
}

//! Slots from the journal: loading a record (with its signer when it may
//! still sign) and minting a new authority (key first, then its record).

use std::sync::Arc;

use super::bad;
use crate::ca::jwt::new_kid;
use crate::ca::{JwtKey, KeyManager, KeyPair, X509Authority};
use crate::server::authorities::{AuthorityError, CaSettings, JwtSlot, X509Slot};
use crate::spiffe::{JwtAuthority, TrustDomain};
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState, DataStore};

/// Loads an X.509 journal record (its signer only when it may still sign).
pub(in crate::server::authorities) fn load_x509(
    rec: AuthorityRecord,
    keys: &dyn KeyManager,
    td: &TrustDomain,
) -> Result<X509Slot, AuthorityError> {
    let cert = rec
        .cert_der
        .clone()
        .ok_or_else(|| bad(&rec, "no certificate"))?;
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
    let ca = match rec.state {
        AuthorityState::Old => None,
        AuthorityState::Prepared | AuthorityState::Active => {
            let key = keys.get(&rec.key_id)?;
            Some(Arc::new(X509Authority::from_parts(
                td,
                cert,
                rec.upstream_chain.clone(),
                key,
            )?))
        }
    };
    Ok(X509Slot { record: rec, ca })
}

/// Loads a JWT journal record.
pub(in crate::server::authorities) fn load_jwt(
    rec: AuthorityRecord,
    keys: &dyn KeyManager,
) -> Result<JwtSlot, AuthorityError> {
    let kid = rec.jwt_key_id.clone().ok_or_else(|| bad(&rec, "no kid"))?;
    let public_key = rec
        .public_key
        .clone()
        .ok_or_else(|| bad(&rec, "no public key"))?;
    let key = match rec.state {
        AuthorityState::Old => None,
        AuthorityState::Prepared | AuthorityState::Active => Some(JwtKey::new(
            kid.clone(),
            keys.get(&rec.key_id)?,
            rec.not_after,
        )),
    };
    Ok(JwtSlot {
        authority: JwtAuthority {
            key_id: kid,
            public_key,
            expires_at: Some(rec.not_after),
        },
        record: rec,
        key,
    })
}

/// A fresh key for a new authority, stored under a new id (`prefix-uuid`)
/// that its journal record will also carry.
fn new_key(
    keys: &dyn KeyManager,
    prefix: &str,
    settings: &CaSettings,
) -> Result<(String, Arc<KeyPair>), AuthorityError> {
    let id = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let key = keys.generate(&id, settings.key_type)?;
    Ok((id, key))
}

pub(super) fn new_x509(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    td: &TrustDomain,
    settings: &CaSettings,
    state: AuthorityState,
    now: i64,
) -> Result<X509Slot, AuthorityError> {
    let (id, key) = new_key(keys, "x509", settings)?;
    let (ca, upstream_chain) = match &settings.upstream {
        None => (
            X509Authority::self_signed(td, key, settings.ca_ttl_secs, now)?,
            Vec::new(),
        ),
        Some(up) => {
            let signed = up.sign_ca(td, &key, settings.ca_ttl_secs, now)?;
            let chain = signed.chain_below_root.clone();
            (
                X509Authority::from_parts(td, signed.cert_der, chain.clone(), key)?,
                chain,
            )
        }
    };
    let record = AuthorityRecord {
        id: id.clone(),
        kind: AuthorityKind::X509,
        state,
        tainted: false,
        key_id: id,
        cert_der: Some(ca.cert_der().to_vec()),
        upstream_chain,
        public_key: None,
        jwt_key_id: None,
        not_before: ca.not_before(),
        not_after: ca.not_after(),
        created_at: now,
        bundle_sequence: 0,
        server_id: settings.server_id.clone(),
    };
    store.put_authority(&record)?;
    tracing::info!(trust_domain = %td, id = %record.id, serial = ca.serial(), not_after = ca.not_after(), state = ?state, "new X.509 authority");
    Ok(X509Slot {
        record,
        ca: Some(Arc::new(ca)),
    })
}

pub(super) fn new_jwt(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    settings: &CaSettings,
    state: AuthorityState,
    now: i64,
) -> Result<JwtSlot, AuthorityError> {
    let (id, key) = new_key(keys, "jwt", settings)?;
    let not_after = now + settings.ca_ttl_secs;
    let jwt = JwtKey::new(new_kid()?, key.clone(), not_after);
    let record = AuthorityRecord {
        id: id.clone(),
        kind: AuthorityKind::Jwt,
        state,
        tainted: false,
        key_id: id,
        cert_der: None,
        upstream_chain: Vec::new(),
        public_key: Some(key.public_key_spki()),
        jwt_key_id: Some(jwt.kid().to_string()),
        not_before: now,
        not_after,
        created_at: now,
        bundle_sequence: 0,
        server_id: settings.server_id.clone(),
    };
    store.put_authority(&record)?;
    tracing::info!(id = %record.id, kid = jwt.kid(), not_after, state = ?state, "new JWT signing key");
    Ok(JwtSlot {
        authority: jwt.authority(),
        record,
        key: Some(jwt),
    })
}

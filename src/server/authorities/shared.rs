//! Several servers, one trust domain (SPIRE's model): each server signs
//! with its own authorities, whose keys only it holds, and the trust
//! bundle is the union of every server's. This file decides which CA
//! journal records are this server's, and publishes the union by
//! compare-and-swap on the bundle's sequence, so two servers changing
//! their authorities at once never drop each other's.
//!
//! Why the union is never lost: each server writes its journal record
//! *before* publishing, and reads the journal *after* learning the bundle
//! sequence it swaps from. A swap from sequence `s` succeeds only if `s` is
//! still current, so the journal it read already held every record whose
//! owner published (or tried to) before `s`; a server whose swap fails
//! reads again and retries. Whoever publishes last publishes everything.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Authorities, AuthorityError, CaSettings, JwtSlot, X509Slot};
use crate::ca::KeyManager;
use crate::spiffe::{Bundle, JwtAuthority, TrustDomain};
use crate::store::{AuthorityKind, AuthorityRecord, DataStore};

/// How many times a publication retries a lost compare-and-swap before
/// giving up (the next rotation step or restart tries again).
const PUBLISH_ATTEMPTS: usize = 20;

/// Splits the journal into this server's records and other servers'. A
/// record is this server's if it carries its id. A record without an id
/// (written before servers had ids, or moved from sled by `herald store
/// migrate`) is this server's if the store is its alone, or if this
/// server's key manager holds its key; it is then claimed (rewritten with
/// the id) so that no other server can take it.
pub(super) fn split_journal(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    server_id: &str,
) -> Result<(Vec<AuthorityRecord>, Vec<AuthorityRecord>), AuthorityError> {
    let shared = store.cluster().is_some();
    let mut mine = Vec::new();
    let mut foreign = Vec::new();
    for mut rec in store.list_authorities()? {
        let own = if rec.server_id.is_empty() {
            !shared || keys.get(&rec.key_id).is_ok()
        } else {
            rec.server_id == server_id
        };
        if !own {
            foreign.push(rec);
            continue;
        }
        if rec.server_id.is_empty() && !server_id.is_empty() {
            rec.server_id = server_id.to_owned();
            store.put_authority(&rec)?;
            tracing::info!(id = %rec.id, server_id, "claimed a CA journal record written before servers had ids");
        }
        mine.push(rec);
    }
    Ok((mine, foreign))
}

/// The bundle entry of a JWT journal record.
fn jwt_authority(rec: &AuthorityRecord) -> Option<JwtAuthority> {
    Some(JwtAuthority {
        key_id: rec.jwt_key_id.clone()?,
        public_key: rec.public_key.clone()?,
        expires_at: Some(rec.not_after),
    })
}

/// Whether two lists hold the same items, in any order (servers list
/// their own authorities first).
fn same_members<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn ids<'a>(x509: &'a [X509Slot], jwt: &'a [JwtSlot]) -> HashSet<&'a str> {
    x509.iter()
        .map(|s| s.record.id.as_str())
        .chain(jwt.iter().map(|s| s.record.id.as_str()))
        .collect()
}

/// Every journal record not among this server's slots.
fn foreign_records(
    store: &dyn DataStore,
    own: &HashSet<&str>,
) -> Result<Vec<AuthorityRecord>, AuthorityError> {
    Ok(store
        .list_authorities()?
        .into_iter()
        .filter(|r| !own.contains(r.id.as_str()))
        .collect())
}

/// What [`publish`] works from: this server's slots, the trust domain and
/// the settings, and the bundle it believes current.
pub(super) struct Own<'a> {
    pub(super) td: &'a TrustDomain,
    pub(super) settings: &'a CaSettings,
    pub(super) x509: &'a [X509Slot],
    pub(super) jwt: &'a [JwtSlot],
}

/// Publishes this server's authorities (all, until retired) with the
/// other servers' unexpired ones at `now`, if that changes the bundle's
/// members or `bump` asks for a new sequence (a taint). Returns the bundle
/// now current and the other servers' records it was built with.
pub(super) fn publish(
    store: &dyn DataStore,
    own: Own<'_>,
    mut prev: Bundle,
    bump: bool,
    now: i64,
) -> Result<(Bundle, Vec<AuthorityRecord>), AuthorityError> {
    let own_ids = ids(own.x509, own.jwt);
    for _ in 0..PUBLISH_ATTEMPTS {
        let foreign = foreign_records(store, &own_ids)?;
        let valid = || foreign.iter().filter(|r| r.not_after > now);
        let mut bundle = prev.clone();
        bundle.x509_authorities = match &own.settings.upstream {
            Some(up) => up.roots(),
            None => own
                .x509
                .iter()
                .filter_map(|s| s.record.cert_der.clone())
                .chain(
                    valid()
                        .filter(|r| r.kind == AuthorityKind::X509)
                        .filter_map(|r| r.cert_der.clone()),
                )
                .collect(),
        };
        bundle.jwt_authorities = own
            .jwt
            .iter()
            .map(|s| s.authority.clone())
            .chain(
                valid()
                    .filter(|r| r.kind == AuthorityKind::Jwt)
                    .filter_map(jwt_authority),
            )
            .collect();
        let changed = !same_members(&bundle.x509_authorities, &prev.x509_authorities)
            || !same_members(&bundle.jwt_authorities, &prev.jwt_authorities);
        if !changed && !bump && prev.sequence != 0 {
            return Ok((prev, foreign));
        }
        bundle.sequence = prev.sequence + 1;
        if store.swap_bundle(&bundle, prev.sequence)? {
            return Ok((bundle, foreign));
        }
        // Another server published meanwhile: start from its bundle.
        prev = store
            .get_bundle(own.td)?
            .unwrap_or_else(|| Bundle::new(own.td.clone()));
        tracing::debug!(
            sequence = prev.sequence,
            "bundle changed by another server; publishing again"
        );
    }
    Err(AuthorityError::BundleContention {
        attempts: PUBLISH_ATTEMPTS,
    })
}

impl Authorities {
    /// This set with the bundle and the other servers' records as the
    /// store has them now, if that is news (a higher bundle sequence, or
    /// other servers' records changed); `None` otherwise. The bundle is
    /// read before the records: a taint is journaled before the bundle
    /// sequence that announces it, so the records read are at least as new.
    pub fn refreshed(&self, store: &dyn DataStore) -> Result<Option<Authorities>, AuthorityError> {
        let Some(bundle) = store.get_bundle(&self.trust_domain)? else {
            return Ok(None);
        };
        let foreign = foreign_records(store, &ids(&self.x509, &self.jwt))?;
        let news = bundle.sequence > self.bundle.sequence
            || (bundle.sequence == self.bundle.sequence && foreign != *self.foreign);
        Ok(news.then(|| self.with_shared(bundle, Arc::new(foreign))))
    }

    /// This set with `bundle` and `foreign` records in place of its own.
    pub(crate) fn with_shared(
        &self,
        bundle: Bundle,
        foreign: Arc<Vec<AuthorityRecord>>,
    ) -> Authorities {
        Authorities {
            bundle,
            foreign,
            ..self.clone()
        }
    }

    /// Other servers' records, shared.
    pub(crate) fn foreign_shared(&self) -> Arc<Vec<AuthorityRecord>> {
        self.foreign.clone()
    }

    /// `next` (a local change) keeping whichever shared part is newer: a
    /// bundle another server published meanwhile (and this server already
    /// installed) is not replaced by an older one.
    pub(crate) fn merged_into(&self, next: Authorities) -> Authorities {
        if self.bundle.sequence > next.bundle.sequence {
            next.with_shared(self.bundle.clone(), self.foreign.clone())
        } else {
            next
        }
    }
}

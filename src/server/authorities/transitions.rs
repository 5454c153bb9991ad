//! Every change to the authority set: loading, bootstrapping, prepare,
//! activate, retire, taint and revoke. Each writes the journal (and any new
//! key) first and returns a new [`Authorities`] with its bundle recomputed.

mod slots;
mod steps;

pub(super) use self::slots::{load_jwt, load_x509};

use self::slots::{new_jwt, new_x509};
use super::{Authorities, AuthorityError, CaSettings, JwtSlot, X509Slot};
use crate::ca::KeyManager;
use crate::spiffe::{Bundle, TrustDomain};
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState, DataStore};

pub(super) fn bad(rec: &AuthorityRecord, reason: &str) -> AuthorityError {
    AuthorityError::BadRecord {
        id: rec.id.clone(),
        reason: reason.to_string(),
    }
}

pub(super) fn kind_name(kind: AuthorityKind) -> &'static str {
    match kind {
        AuthorityKind::X509 => "X.509",
        AuthorityKind::Jwt => "JWT",
    }
}

/// Persists a record's new state.
pub(super) fn set_state(
    store: &dyn DataStore,
    rec: &mut AuthorityRecord,
    state: AuthorityState,
) -> Result<(), AuthorityError> {
    rec.state = state;
    store.put_authority(rec)?;
    Ok(())
}

/// Everything a new [`Authorities`] value is built from: the slots as the
/// journal now has them and the bundle they replace.
pub(super) struct Draft {
    pub(super) td: TrustDomain,
    pub(super) settings: CaSettings,
    pub(super) x509: Vec<X509Slot>,
    pub(super) jwt: Vec<JwtSlot>,
    pub(super) prev: Bundle,
}

/// Makes sure exactly one valid authority of each kind is active (promoting
/// a valid prepared one, or minting one), then computes the bundle.
pub(super) fn assemble(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    mut draft: Draft,
    now: i64,
) -> Result<Authorities, AuthorityError> {
    let (td, settings) = (&draft.td, &draft.settings);
    // The newest valid active wins; other actives become old (a crash
    // between the two writes of an activation leaves two).
    ensure_active(store, &mut draft.x509, now, || {
        new_x509(store, keys, td, settings, AuthorityState::Active, now)
    })?;
    ensure_active(store, &mut draft.jwt, now, || {
        new_jwt(store, keys, settings, AuthorityState::Active, now)
    })?;
    build(store, draft, false)
}

/// A slot of either kind, seen through its journal record.
trait Slot {
    fn record(&self) -> &AuthorityRecord;
    fn record_mut(&mut self) -> &mut AuthorityRecord;
}

impl Slot for X509Slot {
    fn record(&self) -> &AuthorityRecord {
        &self.record
    }
    fn record_mut(&mut self) -> &mut AuthorityRecord {
        &mut self.record
    }
}

impl Slot for JwtSlot {
    fn record(&self) -> &AuthorityRecord {
        &self.record
    }
    fn record_mut(&mut self) -> &mut AuthorityRecord {
        &mut self.record
    }
}

/// Leaves exactly one valid active slot: the newest, else a valid
/// prepared one promoted, else a new one from `mint`.
fn ensure_active<S: Slot>(
    store: &dyn DataStore,
    slots: &mut Vec<S>,
    now: i64,
    mint: impl FnOnce() -> Result<S, AuthorityError>,
) -> Result<(), AuthorityError> {
    normalize(store, slots.iter_mut().map(Slot::record_mut).collect(), now)?;
    if slots
        .iter()
        .any(|s| s.record().state == AuthorityState::Active)
    {
        return Ok(());
    }
    let prepared = slots
        .iter_mut()
        .find(|s| s.record().state == AuthorityState::Prepared && s.record().not_after > now);
    match prepared {
        Some(p) => set_state(store, p.record_mut(), AuthorityState::Active),
        None => {
            slots.push(mint()?);
            Ok(())
        }
    }
}

/// Demotes every active record but the newest valid one to old.
fn normalize(
    store: &dyn DataStore,
    mut records: Vec<&mut AuthorityRecord>,
    now: i64,
) -> Result<(), AuthorityError> {
    // Newest first: a successor was published (bundle_sequence > 0) after
    // the authority it replaces, even within the same second.
    records.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.bundle_sequence, r.id.clone())));
    let mut have_active = false;
    for r in records {
        if r.state != AuthorityState::Active {
            continue;
        }
        if !have_active && r.not_after > now {
            have_active = true;
        } else {
            set_state(store, r, AuthorityState::Old)?;
        }
    }
    Ok(())
}

/// Builds the value: picks the active signers, derives the bundle (this
/// server's authorities with the other servers', see `shared.rs`), and
/// publishes it (with a new sequence) when it changed or `bump` is set.
pub(super) fn build(
    store: &dyn DataStore,
    draft: Draft,
    bump: bool,
) -> Result<Authorities, AuthorityError> {
    let Draft {
        td,
        settings,
        mut x509,
        mut jwt,
        prev,
    } = draft;
    let own = super::shared::Own {
        td: &td,
        settings: &settings,
        x509: &x509,
        jwt: &jwt,
    };
    // Other servers' authorities leave the bundle when they expire (their
    // server may be gone for good); time only filters, so the clock is read
    // here rather than threaded through every transition.
    let (bundle, foreign) =
        super::shared::publish(store, own, prev, bump, crate::clock::now_unix())?;
    // Records of newly prepared authorities learn the sequence that first
    // published them (the activation gate waits for agents to ack it).
    for r in x509
        .iter_mut()
        .map(|s| &mut s.record)
        .chain(jwt.iter_mut().map(|s| &mut s.record))
    {
        if r.state == AuthorityState::Prepared && r.bundle_sequence == 0 {
            r.bundle_sequence = bundle.sequence;
            store.put_authority(r)?;
        }
    }
    let active_x509 = x509
        .iter()
        .find(|s| s.record.state == AuthorityState::Active)
        .and_then(|s| s.ca.clone())
        .ok_or_else(|| AuthorityError::NotAllowed("no active X.509 authority".into()))?;
    let active_jwt = jwt
        .iter()
        .find(|s| s.record.state == AuthorityState::Active)
        .and_then(|s| s.key.clone())
        .ok_or_else(|| AuthorityError::NotAllowed("no active JWT key".into()))?;
    x509.sort_by_key(|s| (s.record.created_at, s.record.id.clone()));
    jwt.sort_by_key(|s| (s.record.created_at, s.record.id.clone()));
    Ok(Authorities {
        trust_domain: td,
        settings,
        x509,
        jwt,
        active_x509,
        active_jwt,
        bundle,
        foreign: std::sync::Arc::new(foreign),
    })
}

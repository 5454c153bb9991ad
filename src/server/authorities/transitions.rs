//! Every change to the authority set: loading, bootstrapping, prepare,
//! activate, retire, taint and revoke. Each writes the journal (and any new
//! key) first and returns a new [`Authorities`] with its bundle recomputed.

use std::sync::Arc;

use super::{Authorities, AuthorityError, CaSettings, JwtSlot, X509Slot};
use crate::ca::jwt::new_kid;
use crate::ca::{JwtKey, KeyManager, X509Authority};
use crate::spiffe::{Bundle, JwtAuthority, TrustDomain};
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState, DataStore};

fn bad(rec: &AuthorityRecord, reason: &str) -> AuthorityError {
    AuthorityError::BadRecord {
        id: rec.id.clone(),
        reason: reason.to_string(),
    }
}

fn kind_name(kind: AuthorityKind) -> &'static str {
    match kind {
        AuthorityKind::X509 => "X.509",
        AuthorityKind::Jwt => "JWT",
    }
}

/// Loads an X.509 journal record (its signer only when it may still sign).
pub(super) fn load_x509(
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
pub(super) fn load_jwt(
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

fn new_x509(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    td: &TrustDomain,
    settings: &CaSettings,
    state: AuthorityState,
    now: i64,
) -> Result<X509Slot, AuthorityError> {
    let id = format!("x509-{}", uuid::Uuid::new_v4().simple());
    let key = keys.generate(&id, settings.key_type)?;
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
    };
    store.put_authority(&record)?;
    tracing::info!(trust_domain = %td, id = %record.id, serial = ca.serial(), not_after = ca.not_after(), state = ?state, "new X.509 authority");
    Ok(X509Slot {
        record,
        ca: Some(Arc::new(ca)),
    })
}

fn new_jwt(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    settings: &CaSettings,
    state: AuthorityState,
    now: i64,
) -> Result<JwtSlot, AuthorityError> {
    let id = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    let key = keys.generate(&id, settings.key_type)?;
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
    };
    store.put_authority(&record)?;
    tracing::info!(id = %record.id, kid = jwt.kid(), not_after, state = ?state, "new JWT signing key");
    Ok(JwtSlot {
        authority: jwt.authority(),
        record,
        key: Some(jwt),
    })
}

/// Persists a record's new state.
fn set_state(
    store: &dyn DataStore,
    rec: &mut AuthorityRecord,
    state: AuthorityState,
) -> Result<(), AuthorityError> {
    rec.state = state;
    store.put_authority(rec)?;
    Ok(())
}

/// Makes sure exactly one valid authority of each kind is active (promoting
/// a valid prepared one, or minting one), then computes the bundle.
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
    store: &dyn DataStore,
    keys: &dyn KeyManager,
    td: TrustDomain,
    settings: CaSettings,
    mut x509: Vec<X509Slot>,
    mut jwt: Vec<JwtSlot>,
    prev: Bundle,
    now: i64,
) -> Result<Authorities, AuthorityError> {
    // X.509: the newest valid active wins; other actives become old (a crash
    // between the two writes of an activation leaves two).
    normalize(store, x509.iter_mut().map(|s| &mut s.record).collect(), now)?;
    if !x509
        .iter()
        .any(|s| s.record.state == AuthorityState::Active)
    {
        match x509
            .iter_mut()
            .find(|s| s.record.state == AuthorityState::Prepared && s.record.not_after > now)
        {
            Some(p) => set_state(store, &mut p.record, AuthorityState::Active)?,
            None => x509.push(new_x509(
                store,
                keys,
                &td,
                &settings,
                AuthorityState::Active,
                now,
            )?),
        }
    }
    normalize(store, jwt.iter_mut().map(|s| &mut s.record).collect(), now)?;
    if !jwt.iter().any(|s| s.record.state == AuthorityState::Active) {
        match jwt
            .iter_mut()
            .find(|s| s.record.state == AuthorityState::Prepared && s.record.not_after > now)
        {
            Some(p) => set_state(store, &mut p.record, AuthorityState::Active)?,
            None => jwt.push(new_jwt(
                store,
                keys,
                &settings,
                AuthorityState::Active,
                now,
            )?),
        }
    }
    build(store, td, settings, x509, jwt, prev, false)
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

/// Builds the value: picks the active signers, derives the bundle, and
/// stores it (with a new sequence) when it changed or `bump` is set.
fn build(
    store: &dyn DataStore,
    td: TrustDomain,
    settings: CaSettings,
    mut x509: Vec<X509Slot>,
    mut jwt: Vec<JwtSlot>,
    prev: Bundle,
    bump: bool,
) -> Result<Authorities, AuthorityError> {
    let mut bundle = prev.clone();
    bundle.x509_authorities = match &settings.upstream {
        Some(up) => up.roots(),
        None => x509
            .iter()
            .filter_map(|s| s.record.cert_der.clone())
            .collect(),
    };
    bundle.jwt_authorities = jwt.iter().map(|s| s.authority.clone()).collect();
    let changed = bundle.x509_authorities != prev.x509_authorities
        || bundle.jwt_authorities != prev.jwt_authorities;
    if changed || bump || prev.sequence == 0 {
        bundle.sequence = prev.sequence + 1;
        store.set_bundle(&bundle)?;
    }
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
    })
}

impl Authorities {
    fn rebuilt(
        &self,
        store: &dyn DataStore,
        x509: Vec<X509Slot>,
        jwt: Vec<JwtSlot>,
        bump: bool,
    ) -> Result<Authorities, AuthorityError> {
        build(
            store,
            self.trust_domain.clone(),
            self.settings.clone(),
            x509,
            jwt,
            self.bundle.clone(),
            bump,
        )
    }

    /// Mints the next authority of `kind` and publishes it in the bundle.
    pub fn prepare(
        &self,
        kind: AuthorityKind,
        store: &dyn DataStore,
        keys: &dyn KeyManager,
        now: i64,
    ) -> Result<Authorities, AuthorityError> {
        let mut x509 = self.x509.clone();
        let mut jwt = self.jwt.clone();
        let exists = match kind {
            AuthorityKind::X509 => x509
                .iter()
                .any(|s| s.record.state == AuthorityState::Prepared),
            AuthorityKind::Jwt => jwt
                .iter()
                .any(|s| s.record.state == AuthorityState::Prepared),
        };
        if exists {
            return Err(AuthorityError::NotAllowed(format!(
                "a prepared {} authority already exists; activate it first",
                kind_name(kind)
            )));
        }
        match kind {
            AuthorityKind::X509 => x509.push(new_x509(
                store,
                keys,
                &self.trust_domain,
                &self.settings,
                AuthorityState::Prepared,
                now,
            )?),
            AuthorityKind::Jwt => jwt.push(new_jwt(
                store,
                keys,
                &self.settings,
                AuthorityState::Prepared,
                now,
            )?),
        }
        self.rebuilt(store, x509, jwt, false)
    }

    /// Makes the prepared authority of `kind` the signing one; the active
    /// one becomes old.
    pub fn activate(
        &self,
        kind: AuthorityKind,
        store: &dyn DataStore,
    ) -> Result<Authorities, AuthorityError> {
        let mut x509 = self.x509.clone();
        let mut jwt = self.jwt.clone();
        let mut records: Vec<&mut AuthorityRecord> = match kind {
            AuthorityKind::X509 => x509.iter_mut().map(|s| &mut s.record).collect(),
            AuthorityKind::Jwt => jwt.iter_mut().map(|s| &mut s.record).collect(),
        };
        if !records.iter().any(|r| r.state == AuthorityState::Prepared) {
            return Err(AuthorityError::NotAllowed(format!(
                "there is no prepared {} authority to activate; prepare one first",
                kind_name(kind)
            )));
        }
        // New active first: after a crash between the writes there are two
        // actives, and loading keeps the newer one (see normalize).
        let previous: Vec<String> = records
            .iter()
            .filter(|r| r.state == AuthorityState::Active)
            .map(|r| r.id.clone())
            .collect();
        for r in records
            .iter_mut()
            .filter(|r| r.state == AuthorityState::Prepared)
        {
            set_state(store, r, AuthorityState::Active)?;
            tracing::info!(id = %r.id, kind = kind_name(kind), "authority activated");
        }
        for r in records.iter_mut().filter(|r| previous.contains(&r.id)) {
            set_state(store, r, AuthorityState::Old)?;
        }
        drop(records);
        // Old authorities no longer need their signer in memory.
        for s in x509
            .iter_mut()
            .filter(|s| s.record.state == AuthorityState::Old)
        {
            s.ca = None;
        }
        for s in jwt
            .iter_mut()
            .filter(|s| s.record.state == AuthorityState::Old)
        {
            s.key = None;
        }
        self.rebuilt(store, x509, jwt, false)
    }

    /// Removes an expired old authority from the journal, the key manager
    /// and the bundle.
    pub fn retire(
        &self,
        kind: AuthorityKind,
        id: &str,
        store: &dyn DataStore,
        keys: &dyn KeyManager,
    ) -> Result<Authorities, AuthorityError> {
        self.remove(kind, id, store, keys, "retired")
    }

    fn remove(
        &self,
        kind: AuthorityKind,
        id: &str,
        store: &dyn DataStore,
        keys: &dyn KeyManager,
        why: &str,
    ) -> Result<Authorities, AuthorityError> {
        let mut x509 = self.x509.clone();
        let mut jwt = self.jwt.clone();
        let rec = self.find(kind, id)?;
        store.delete_authority(id)?;
        keys.delete(&rec.key_id)?;
        x509.retain(|s| s.record.id != id);
        jwt.retain(|s| s.record.id != id);
        tracing::info!(id, kind = kind_name(kind), "authority {why}");
        self.rebuilt(store, x509, jwt, false)
    }

    fn find(&self, kind: AuthorityKind, id: &str) -> Result<AuthorityRecord, AuthorityError> {
        let found = match kind {
            AuthorityKind::X509 => self.x509.iter().map(|s| &s.record).find(|r| r.id == id),
            AuthorityKind::Jwt => self.jwt.iter().map(|s| &s.record).find(|r| r.id == id),
        };
        found.cloned().ok_or_else(|| AuthorityError::NotFound {
            kind: kind_name(kind),
            id: id.to_string(),
        })
    }

    /// Marks an old authority as compromised: agents re-issue at once every
    /// SVID it signed (JWT: drop cached tokens of that key).
    pub fn taint(
        &self,
        kind: AuthorityKind,
        id: &str,
        store: &dyn DataStore,
    ) -> Result<Authorities, AuthorityError> {
        let rec = self.find(kind, id)?;
        if rec.state != AuthorityState::Old {
            return Err(AuthorityError::NotAllowed(format!(
                "authority {id} is {:?}; only an old authority can be tainted: prepare and activate a new one first",
                rec.state
            )));
        }
        if rec.tainted {
            return Err(AuthorityError::NotAllowed(format!(
                "authority {id} is already tainted"
            )));
        }
        let mut x509 = self.x509.clone();
        let mut jwt = self.jwt.clone();
        for r in x509
            .iter_mut()
            .map(|s| &mut s.record)
            .chain(jwt.iter_mut().map(|s| &mut s.record))
        {
            if r.id == id {
                r.tainted = true;
                store.put_authority(r)?;
            }
        }
        tracing::warn!(
            id,
            kind = kind_name(kind),
            "authority tainted; agents re-issue what it signed"
        );
        // The bundle content is unchanged, but agents must hear of the taint.
        self.rebuilt(store, x509, jwt, true)
    }

    /// Removes a tainted authority from the bundle. `lagging` names agents
    /// that have not yet acknowledged the taint (they may still hold SVIDs
    /// it signed); revocation is refused while there are any.
    pub fn revoke(
        &self,
        kind: AuthorityKind,
        id: &str,
        lagging: &[String],
        store: &dyn DataStore,
        keys: &dyn KeyManager,
    ) -> Result<Authorities, AuthorityError> {
        let rec = self.find(kind, id)?;
        if !rec.tainted {
            return Err(AuthorityError::NotAllowed(format!(
                "authority {id} is not tainted; taint it first so agents move off it"
            )));
        }
        if !lagging.is_empty() {
            return Err(AuthorityError::NotAllowed(format!(
                "authority {id} may still be in use: these agents have not yet re-issued since the taint: {}",
                lagging.join(", ")
            )));
        }
        self.remove(kind, id, store, keys, "revoked")
    }
}

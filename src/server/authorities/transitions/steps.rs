//! The steps of a rotation, scheduled (`ca_manager.rs`) or by hand (the
//! LocalAuthority admin service): prepare, activate, retire, taint and
//! revoke. Each writes the journal first and returns the new set.

use super::slots::{new_jwt, new_x509};
use super::{build, kind_name, set_state, Draft};
use crate::ca::KeyManager;
use crate::server::authorities::{Authorities, AuthorityError, JwtSlot, X509Slot};
use crate::store::{AuthorityKind, AuthorityRecord, AuthorityState, DataStore};

impl Authorities {
    fn rebuilt(
        &self,
        store: &dyn DataStore,
        x509: Vec<X509Slot>,
        jwt: Vec<JwtSlot>,
        bump: bool,
    ) -> Result<Authorities, AuthorityError> {
        let draft = Draft {
            td: self.trust_domain.clone(),
            settings: self.settings.clone(),
            x509,
            jwt,
            prev: self.bundle.clone(),
        };
        build(store, draft, bump)
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

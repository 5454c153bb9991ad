//! Registration entries: which workloads (by selectors, under which parent)
//! receive which SPIFFE ID. Mirrors `spire.api.types.Entry`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{rule, RegistrationError, Selector};
use crate::spiffe::{SpiffeId, TrustDomain};

/// Says which workloads (by selectors, under which parent) receive which
/// SPIFFE ID. Mirrors `spire.api.types.Entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationEntry {
    /// Unique id; the store generates a UUID v4 when this is empty on create.
    pub id: String,
    /// The identity granted.
    pub spiffe_id: SpiffeId,
    /// The agent (or node alias) under which the workload must be found.
    pub parent_id: SpiffeId,
    /// Every selector must match for the entry to apply; at least one.
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime in seconds; 0 means the server default.
    pub x509_svid_ttl: u32,
    /// JWT-SVID lifetime in seconds; 0 means the server default.
    pub jwt_svid_ttl: u32,
    /// DNS SANs added to the X509-SVID.
    pub dns_names: Vec<String>,
    /// Grants access to the admin API.
    pub admin: bool,
    /// Lets the holder act as a downstream CA.
    pub downstream: bool,
    /// Foreign trust domains whose bundles the workload receives.
    pub federates_with: Vec<TrustDomain>,
    /// Opaque hint passed to the workload to tell SVIDs apart.
    pub hint: String,
    /// After this time (unix seconds) the entry no longer applies.
    pub expires_at: Option<i64>,
    /// Incremented on every update so that agents can sync by revision.
    pub revision: u64,
    /// Creation time (unix seconds), supplied by the caller's clock.
    pub created_at: i64,
}

impl RegistrationEntry {
    /// Describes the entry for error messages.
    pub fn describe(&self) -> String {
        format!(
            "registration entry {:?} ({})",
            self.id,
            self.spiffe_id.as_str()
        )
    }

    /// An entry granting `spiffe_id` to workloads under `parent_id` that
    /// show every one of `selectors`; everything else at its default (server
    /// TTLs, no DNS names, no expiry, not admin or downstream). The store
    /// assigns the id on create when it is left empty.
    pub fn new(spiffe_id: SpiffeId, parent_id: SpiffeId, selectors: Vec<Selector>) -> Self {
        RegistrationEntry {
            id: String::new(),
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: Vec::new(),
            admin: false,
            downstream: false,
            federates_with: Vec::new(),
            hint: String::new(),
            expires_at: None,
            revision: 0,
            created_at: 0,
        }
    }

    /// The shape checks that need no knowledge of the server's trust
    /// domain; the API layer checks the rest. (Selectors were checked when
    /// they were built.)
    pub fn validate(&self) -> Result<(), RegistrationError> {
        let me = || self.describe();
        rule(self.id.is_empty(), me, "id", "must not be empty")?;
        rule(
            self.id.contains('\0'),
            me,
            "id",
            "must not contain a NUL character",
        )?;
        let none = self.selectors.is_empty();
        rule(none, me, "selectors", "must contain at least one selector")
    }

    /// The selectors as a set: order and repetition do not change which
    /// workloads an entry matches.
    pub fn selector_set(&self) -> BTreeSet<&Selector> {
        self.selectors.iter().collect()
    }
}

//! The records the server keeps, in the shape of SPIRE's API types
//! (`spire.api.types`, see `shared/spec/SPIFFE.md` §8) so that the admin API
//! can translate them field by field.
//!
//! Records are stored as JSON. SPIFFE IDs and trust domains serialize as
//! strings and are re-validated when read back, so a record that decodes is a
//! record whose identities are well formed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::registration::{RegistrationEntry, Selector};
use crate::spiffe::{SpiffeId, TrustDomain};

/// A node that has attested to the server. Mirrors `spire.api.types.Agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedAgent {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Which node attestor admitted it (`join_token`, `x509pop`, ...).
    pub attestation_type: String,
    /// Lowercase hex serial of the agent's current SVID; renewal must present it.
    pub serial: String,
    /// Expiry of that SVID (unix seconds).
    pub expires_at: i64,
    /// A banned agent may not renew or re-attest.
    pub banned: bool,
    /// Node selectors from attestation.
    pub selectors: Vec<Selector>,
    /// First attestation (unix seconds).
    pub created_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
}

/// A single-use secret that lets one agent attest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The secret itself. Never log it in full.
    pub token: String,
    /// After this time (unix seconds) the token is refused.
    pub expires_at: i64,
    /// The SPIFFE ID the agent gets, if fixed when the token was made.
    pub agent_id: Option<SpiffeId>,
}

/// How and from where the server fetches a foreign trust domain's bundle.
/// Mirrors `spire.api.types.FederationRelationship`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationRelationship {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// Where its bundle endpoint is served.
    pub bundle_endpoint_url: String,
    /// How that endpoint is authenticated.
    pub profile: BundleEndpointProfile,
}

/// The bundle endpoint profiles of the SPIFFE Federation spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BundleEndpointProfile {
    /// Authenticated with Web PKI.
    HttpsWeb,
    /// Authenticated with an X509-SVID from the foreign trust domain.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint's SVID must carry.
        endpoint_spiffe_id: SpiffeId,
    },
}

// === CA journal ===

/// Whether an authority signs X509-SVIDs or JWT-SVIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityKind {
    /// An X.509 CA.
    X509,
    /// A JWT signing key.
    Jwt,
}

/// The slot an authority occupies during rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityState {
    /// Published in the bundle, not yet signing.
    Prepared,
    /// Signing.
    Active,
    /// Retired from signing, kept in the bundle until its SVIDs expire.
    Old,
}

/// One authority in the CA journal, so that a restarted server resumes
/// rotation where it left off. The private key itself lives in the key
/// manager under `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityRecord {
    /// Unique id of the journal record.
    pub id: String,
    /// X.509 or JWT.
    pub kind: AuthorityKind,
    /// Rotation slot.
    pub state: AuthorityState,
    /// Tainted authorities are being revoked; agents must stop trusting SVIDs they signed.
    pub tainted: bool,
    /// Name of the private key in the key manager.
    pub key_id: String,
    /// X.509: the CA certificate (DER).
    pub cert_der: Option<Vec<u8>>,
    /// X.509: intermediates up to the upstream root (DER), if any.
    pub upstream_chain: Vec<Vec<u8>>,
    /// JWT: the public key (SPKI DER).
    pub public_key: Option<Vec<u8>>,
    /// JWT: the `kid`.
    pub jwt_key_id: Option<String>,
    /// Start of validity (unix seconds).
    pub not_before: i64,
    /// End of validity (unix seconds).
    pub not_after: i64,
    /// When the record was made (unix seconds); orders the journal.
    pub created_at: i64,
    /// The bundle sequence that first published this authority (0 until
    /// published); activation waits until agents acknowledged it.
    #[serde(default)]
    pub bundle_sequence: u64,
    /// The server whose key manager holds the key: with several servers on
    /// one store each rotates only its own authorities. Empty in records
    /// written before servers had ids (the holder of the key claims them).
    #[serde(default)]
    pub server_id: String,
}

/// One issued certificate, kept so that serials can be traced to the entry
/// and agent they were issued for, until the certificate expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuanceRecord {
    /// Certificate serial, lowercase hex.
    pub serial: String,
    /// The SPIFFE ID in the certificate.
    pub spiffe_id: SpiffeId,
    /// The agent that requested it, if any.
    pub agent_id: Option<SpiffeId>,
    /// The registration entry it was issued for, if any.
    pub entry_id: Option<String>,
    /// Certificate expiry (unix seconds).
    pub not_after: i64,
    /// Issuance time (unix seconds).
    pub issued_at: i64,
}

impl IssuanceRecord {
    /// Lowercase hex only, so that lookups by serial have one spelling.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let ok = !self.serial.is_empty()
            && self
                .serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(())
        } else {
            Err(StoreError::Invalid {
                record: format!("issuance record {:?}", self.serial),
                field: "serial",
                reason: "must be non-empty lowercase hexadecimal".into(),
            })
        }
    }
}

// === Paging and filters ===

/// Which page of a listing to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Maximum items to return; 0 means [`DEFAULT_PAGE_SIZE`](super::DEFAULT_PAGE_SIZE),
    /// and larger values are capped at [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE).
    pub size: usize,
    /// The `next_token` of the previous page; `None` for the first page.
    pub token: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in stable key order.
    pub items: Vec<T>,
    /// Opaque token for the next page; `None` when this is the last page.
    pub next_token: Option<String>,
}

/// Restricts `list_entries`; every field that is set must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Only entries granting this SPIFFE ID.
    pub by_spiffe_id: Option<SpiffeId>,
    /// Only entries under this parent.
    pub by_parent_id: Option<SpiffeId>,
    /// Only entries whose selectors relate to these as the match says.
    pub by_selectors: Option<(Vec<Selector>, SelectorMatch)>,
}

/// How an entry's selectors must relate to the ones in a filter. Same
/// semantics as SPIRE's `MatchBehavior`; repetition and order are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorMatch {
    /// The entry has exactly the given selectors.
    Exact,
    /// The entry's selectors are all among the given ones (entry ⊆ given):
    /// the entry applies to a workload with the given selectors.
    Subset,
    /// The entry has at least all the given selectors (entry ⊇ given).
    Superset,
    /// The entry shares at least one selector with the given ones.
    Any,
}

impl SelectorMatch {
    /// Whether `entry`'s selectors relate to `given` as this match requires.
    pub fn matches(self, entry: &[Selector], given: &[Selector]) -> bool {
        let entry: BTreeSet<&Selector> = entry.iter().collect();
        let given: BTreeSet<&Selector> = given.iter().collect();
        match self {
            SelectorMatch::Exact => entry == given,
            SelectorMatch::Subset => entry.is_subset(&given),
            SelectorMatch::Superset => entry.is_superset(&given),
            SelectorMatch::Any => !entry.is_disjoint(&given),
        }
    }
}

impl EntryFilter {
    /// Whether `entry` passes every condition of the filter.
    pub fn matches(&self, entry: &RegistrationEntry) -> bool {
        if let Some(id) = &self.by_spiffe_id {
            if &entry.spiffe_id != id {
                return false;
            }
        }
        if let Some(parent) = &self.by_parent_id {
            if &entry.parent_id != parent {
                return false;
            }
        }
        if let Some((selectors, how)) = &self.by_selectors {
            if !how.matches(&entry.selectors, selectors) {
                return false;
            }
        }
        true
    }
}

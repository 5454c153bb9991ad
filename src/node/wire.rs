//! Conversions between Herald's types and the node API's messages, used by
//! both ends (the server's node API and the agent's node client). Incoming
//! messages are parsed as untrusted: a bad field is an error naming it.

use crate::ca::x509::X509Error;
use crate::proto::node;
use crate::registration::{RegistrationEntry, RegistrationError, Selector};
use crate::spiffe::{Bundle, IdError, JwtAuthority, SpiffeId, TrustDomain};

/// A node API message field that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("node API message: {field}")]
pub struct WireError {
    /// The field.
    pub field: &'static str,
    /// Why.
    #[source]
    pub cause: WireCause,
}

/// Why a node API field (or a part of a node API answer) is unusable.
#[derive(Debug, thiserror::Error)]
pub enum WireCause {
    /// A SPIFFE ID or trust domain name that does not parse.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A selector that breaks the registration rules.
    #[error(transparent)]
    Selector(#[from] RegistrationError),
    /// A certificate that does not parse.
    #[error(transparent)]
    Cert(#[from] X509Error),
    /// A field that must not be empty is.
    #[error("empty")]
    Empty,
    /// A required part is absent.
    #[error("it is missing")]
    Missing,
}

fn bad(field: &'static str, cause: impl Into<WireCause>) -> WireError {
    WireError {
        field,
        cause: cause.into(),
    }
}

/// A bundle as sent to agents.
pub fn bundle_to_wire(b: &Bundle) -> node::Bundle {
    bundle_into_wire(b.clone())
}

/// [`bundle_to_wire`], taking the bundle: a large one is not copied.
pub fn bundle_into_wire(b: Bundle) -> node::Bundle {
    node::Bundle {
        trust_domain: b.trust_domain.name().to_string(),
        x509_authorities: b.x509_authorities,
        jwt_authorities: b
            .jwt_authorities
            .into_iter()
            .map(|a| node::JwtKey {
                key_id: a.key_id,
                public_key: a.public_key,
                expires_at: a.expires_at.unwrap_or(0),
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: b.refresh_hint.map(|h| h as i64).unwrap_or(0),
        tainted_x509_authorities: Vec::new(),
        tainted_jwt_key_ids: Vec::new(),
    }
}

/// A bundle as received from the server.
pub fn bundle_from_wire(b: node::Bundle) -> Result<Bundle, WireError> {
    let trust_domain =
        TrustDomain::new(&b.trust_domain).map_err(|e| bad("bundle.trust_domain", e))?;
    if b.x509_authorities.is_empty() {
        return Err(bad("bundle.x509_authorities", WireCause::Empty));
    }
    Ok(Bundle {
        trust_domain,
        x509_authorities: b.x509_authorities,
        jwt_authorities: b
            .jwt_authorities
            .into_iter()
            .map(|k| JwtAuthority {
                key_id: k.key_id,
                public_key: k.public_key,
                expires_at: (k.expires_at != 0).then_some(k.expires_at),
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: u64::try_from(b.refresh_hint).ok().filter(|h| *h > 0),
    })
}

/// An entry as sent to agents.
pub fn entry_to_wire(e: &RegistrationEntry) -> node::Entry {
    node::Entry {
        id: e.id.clone(),
        spiffe_id: e.spiffe_id.to_string(),
        parent_id: e.parent_id.to_string(),
        selectors: selectors_to_wire(&e.selectors),
        x509_svid_ttl: i32::try_from(e.x509_svid_ttl).unwrap_or(i32::MAX),
        jwt_svid_ttl: i32::try_from(e.jwt_svid_ttl).unwrap_or(i32::MAX),
        dns_names: e.dns_names.clone(),
        federates_with: e
            .federates_with
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        hint: e.hint.clone(),
        revision: i64::try_from(e.revision).unwrap_or(i64::MAX),
        created_at: e.created_at,
        admin: e.admin,
        downstream: e.downstream,
    }
}

/// Selectors as sent to agents.
pub fn selectors_to_wire(selectors: &[Selector]) -> Vec<node::Selector> {
    selectors
        .iter()
        .map(|s| node::Selector {
            r#type: s.kind().to_string(),
            value: s.value().to_string(),
        })
        .collect()
}

/// What the agent needs of an entry, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    /// Entry ID.
    pub id: String,
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// Selectors a workload must have.
    pub selectors: Vec<Selector>,
    /// Federated trust domains.
    pub federates_with: Vec<TrustDomain>,
    /// Hint.
    pub hint: String,
    /// Revision; a change means re-issue.
    pub revision: i64,
    /// Creation time.
    pub created_at: i64,
}

/// An entry as received from the server.
pub fn entry_from_wire(e: node::Entry) -> Result<AgentEntry, WireError> {
    Ok(AgentEntry {
        spiffe_id: SpiffeId::parse(&e.spiffe_id).map_err(|err| bad("entry.spiffe_id", err))?,
        selectors: e
            .selectors
            .into_iter()
            .map(|s| Selector::new(&s.r#type, &s.value).map_err(|err| bad("entry.selectors", err)))
            .collect::<Result<_, _>>()?,
        federates_with: e
            .federates_with
            .iter()
            .map(|t| TrustDomain::new(t).map_err(|err| bad("entry.federates_with", err)))
            .collect::<Result<_, _>>()?,
        id: e.id,
        hint: e.hint,
        revision: e.revision,
        created_at: e.created_at,
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_entry_round_trips_through_the_wire() {
        let td = TrustDomain::new("example.org").unwrap();
        let mut e = RegistrationEntry::new(
            SpiffeId::new(&td, "/w").unwrap(),
            SpiffeId::new(&td, "/agent").unwrap(),
            vec![Selector::new("unix", "uid:1000").unwrap()],
        );
        e.federates_with = vec![TrustDomain::new("partner.org").unwrap()];
        e.hint = "h".into();
        let parsed = entry_from_wire(entry_to_wire(&e)).unwrap();
        assert_eq!(parsed.id, e.id);
        assert_eq!(parsed.spiffe_id, e.spiffe_id);
        assert_eq!(parsed.selectors, e.selectors);
        assert_eq!(parsed.federates_with, e.federates_with);
        assert_eq!(parsed.hint, "h");
    }

    #[test]
    fn a_bad_field_is_named_and_its_cause_kept() {
        let mut wire = node::Entry {
            spiffe_id: "spiffe://example.org/w".into(),
            ..Default::default()
        };
        wire.selectors.push(node::Selector {
            r#type: "unix".into(),
            value: String::new(),
        });
        let err = entry_from_wire(wire).unwrap_err();
        assert_eq!(err.field, "entry.selectors");
        assert!(matches!(err.cause, WireCause::Selector(_)), "{err:?}");
        assert!(err.source().is_some());

        let err = bundle_from_wire(node::Bundle {
            trust_domain: "example.org".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "bundle.x509_authorities");
        assert_eq!(
            crate::errors::chain(&err),
            "node API message: bundle.x509_authorities: empty"
        );

        let err = bundle_from_wire(node::Bundle {
            trust_domain: "Not A Domain!".into(),
            x509_authorities: vec![vec![1]],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "bundle.trust_domain");
        assert!(matches!(err.cause, WireCause::Id(_)), "{err:?}");
    }
}

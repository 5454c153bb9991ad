//! The form an authorized entry is kept in between issuances.

use super::SessionError;
use crate::node::wire::{entry_from_wire, AgentEntry};
use crate::proto::node;

/// An authorized entry as the agent keeps it between issuances: validated
/// when it arrives, then held in its compact wire encoding (without the
/// fields the agent never reads), about a third of the parsed form's size,
/// and parsed again only when an SVID is issued for it. At 100,000 entries
/// that is the difference between ~70 MiB and ~25 MiB.
pub(super) struct StoredEntry {
    pub(super) revision: i64,
    wire: Box<[u8]>,
}

impl StoredEntry {
    /// Validates `e` and keeps what the agent needs; returns its ID too.
    pub(super) fn new(mut e: node::Entry) -> Result<(String, StoredEntry), SessionError> {
        let id = std::mem::take(&mut e.id);
        e.parent_id.clear();
        e.dns_names.clear();
        let wire = prost::Message::encode_to_vec(&e).into_boxed_slice();
        let parsed = entry_from_wire(e).map_err(|source| SessionError::Entry {
            id: id.clone(),
            source,
        })?;
        Ok((
            id,
            StoredEntry {
                revision: parsed.revision,
                wire,
            },
        ))
    }

    /// The entry again, parsed; `id` is the key it is held under.
    pub(super) fn parse(&self, id: &str) -> Result<AgentEntry, SessionError> {
        let mut e: node::Entry =
            prost::Message::decode(&self.wire[..]).map_err(|source| SessionError::StoredEntry {
                id: id.to_string(),
                source,
            })?;
        e.id = id.to_string();
        entry_from_wire(e).map_err(|source| SessionError::Entry {
            id: id.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_entry(id: &str, spiffe_id: &str) -> node::Entry {
        node::Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            parent_id: "spiffe://example.org/agent".into(),
            selectors: vec![node::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            dns_names: vec!["w.example.org".into()],
            federates_with: vec!["other.org".into()],
            hint: "h".into(),
            revision: 7,
            created_at: 42,
            ..Default::default()
        }
    }

    #[test]
    fn keeps_what_the_agent_reads_and_parses_back() {
        let (id, stored) = StoredEntry::new(wire_entry("e1", "spiffe://example.org/w")).unwrap();
        assert_eq!(id, "e1");
        assert_eq!(stored.revision, 7);
        let parsed = stored.parse(&id).unwrap();
        let expected = entry_from_wire(wire_entry("e1", "spiffe://example.org/w")).unwrap();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn an_invalid_entry_is_refused_naming_it() {
        let err = match StoredEntry::new(wire_entry("e2", "not a spiffe id")) {
            Err(e) => e,
            Ok(_) => panic!("an invalid SPIFFE ID was accepted"),
        };
        assert!(
            matches!(&err, SessionError::Entry { id, .. } if id == "e2"),
            "{err:?}"
        );
        let chain = crate::errors::chain(&err);
        assert!(chain.contains("entry.spiffe_id"), "{chain}");
    }
}

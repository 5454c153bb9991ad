//! The on-disk form of the workload SVIDs an agent holds: eight magic
//! bytes, a version byte, a length-delimited header (trust domain, agent
//! ID, federated bundles, identity count), one length-delimited record per
//! identity (its entry in the node API's wire form, the SVID chain and the
//! PKCS#8 key), and a SHA-256 of everything before it.
//!
//! The records are protobuf messages defined here with prost's derive
//! rather than in a `.proto` file: they are private to this file, and they
//! embed the node API's own `Entry` and `Bundle` messages, so a field the
//! server adds to those is carried without a change here. Records are
//! streamed out one by one, so saving 100,000 identities never holds a
//! second copy of them in memory. The digest turns any damage (a flipped
//! bit, a truncation on a record boundary) into a refused file rather than
//! a key served with the wrong certificate.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use prost::Message as _;
use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN};

use crate::agent::cache::{CacheSnapshot, WorkloadIdentity};
use crate::ca::x509::X509Error;
use crate::node::wire::{
    bundle_from_wire, bundle_to_wire, entry_from_wire, selectors_to_wire, WireError,
};
use crate::proto::node;
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

/// The first bytes of every file.
const MAGIC: &[u8; 8] = b"HRLDWSV\n";
/// The format version after the magic; another version is refused.
const VERSION: u8 = 1;

#[derive(Clone, PartialEq, prost::Message)]
struct Header {
    #[prost(string, tag = "1")]
    trust_domain: String,
    /// The agent whose entries these are: another agent's are never served.
    #[prost(string, tag = "2")]
    agent_id: String,
    #[prost(message, repeated, tag = "3")]
    federated_bundles: Vec<node::Bundle>,
    /// How many identity records follow.
    #[prost(uint64, tag = "4")]
    identities: u64,
}

/// Its Debug (prost's is skipped) leaves the key out.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(super) struct Record {
    #[prost(message, optional, tag = "1")]
    pub(super) entry: Option<node::Entry>,
    /// DER, leaf first.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(super) svid_chain: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("entry", &self.entry)
            .field("svid_chain_len", &self.svid_chain.len())
            .finish_non_exhaustive()
    }
}

/// Why a saved file is refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// It does not start with the magic bytes, or is too short to.
    #[error("not a saved workload SVID file")]
    NotOurs,
    /// Written by a Herald with another format.
    #[error("format version {0} is not supported (this agent reads version 1)")]
    Version(u8),
    /// The digest does not match: the file was damaged.
    #[error("its checksum does not match")]
    Checksum,
    /// A record does not decode.
    #[error("a record does not decode")]
    Record(#[source] prost::DecodeError),
    /// The bytes after the last record are not the digest.
    #[error("it holds more than its header announces")]
    Trailing,
    /// Saved by an agent of another trust domain.
    #[error("it belongs to trust domain {found:?}")]
    ForeignTrustDomain {
        /// The trust domain found.
        found: String,
    },
    /// Saved by another agent.
    #[error("it belongs to agent {found:?}")]
    OtherAgent {
        /// The agent ID found.
        found: String,
    },
    /// A saved entry or bundle does not parse.
    #[error("a saved entry or bundle is invalid")]
    Wire(#[source] WireError),
    /// A federated bundle claims the own trust domain.
    #[error("a federated bundle claims the own trust domain")]
    FederatedOwnDomain,
    /// An identity record without its entry, chain or key.
    #[error("the record of entry {entry:?} is incomplete")]
    Incomplete {
        /// The entry ID ("" when the entry itself is missing).
        entry: String,
    },
    /// An SVID that does not parse.
    #[error("the SVID of entry {entry:?} is not a certificate")]
    Cert {
        /// The entry ID.
        entry: String,
        /// The parser's complaint.
        #[source]
        source: X509Error,
    },
    /// An SVID whose URI SAN is not its entry's SPIFFE ID.
    #[error("the SVID of entry {entry:?} is not for its SPIFFE ID")]
    WrongSpiffeId {
        /// The entry ID.
        entry: String,
    },
}

/// An identity read back, with what the manager derives its renewal from.
#[derive(Debug)]
pub struct RestoredIdentity {
    /// The identity, as it was served.
    pub identity: WorkloadIdentity,
    /// The SVID's NotBefore, unix seconds.
    pub not_before: i64,
    /// The leaf's authority key identifier.
    pub issuer_key_id: Option<Vec<u8>>,
}

/// What a saved file holds, once checked.
#[derive(Debug, Default)]
pub struct Restored {
    /// Identities whose SVIDs had not expired.
    pub identities: Vec<RestoredIdentity>,
    /// Bundles of federated trust domains.
    pub federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// How many saved SVIDs had expired and were dropped.
    pub expired: usize,
}

/// The entry an identity was issued for, in the node API's wire form.
pub(crate) fn identity_entry(id: &WorkloadIdentity) -> node::Entry {
    node::Entry {
        id: id.entry_id.clone(),
        spiffe_id: id.spiffe_id.as_str().to_owned(),
        selectors: selectors_to_wire(&id.selectors),
        federates_with: id
            .federates_with
            .iter()
            .map(|t| t.name().to_owned())
            .collect(),
        hint: id.hint.clone(),
        revision: id.revision,
        created_at: id.created_at,
        ..Default::default()
    }
}

/// A writer that hashes what passes through it.
struct Hashing<'w> {
    inner: &'w mut dyn Write,
    digest: Context,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the identities and federated bundles of `snap`, saved by `agent`.
pub(super) fn encode(
    out: &mut dyn Write,
    snap: &CacheSnapshot,
    agent: &SpiffeId,
) -> std::io::Result<()> {
    let mut w = Hashing {
        inner: out,
        digest: Context::new(&SHA256),
    };
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    let header = Header {
        trust_domain: snap.trust_domain.name().to_owned(),
        agent_id: agent.as_str().to_owned(),
        federated_bundles: snap.federated.values().map(|b| bundle_to_wire(b)).collect(),
        identities: snap.identities.len() as u64,
    };
    w.write_all(&header.encode_length_delimited_to_vec())?;
    for id in &snap.identities {
        let record = Record {
            entry: Some(identity_entry(id)),
            svid_chain: id.svid_chain.clone(),
            key_pkcs8: id.key_pkcs8.clone(),
        };
        w.write_all(&record.encode_length_delimited_to_vec())?;
    }
    let Hashing { inner, digest } = w;
    inner.write_all(digest.finish().as_ref())
}

/// `body` (what follows the format byte in a saved file) in a valid
/// envelope: the magic, the format byte, and the checksum. The fuzz target
/// uses it so that its inputs reach the records instead of stopping at
/// the checksum.
pub(crate) fn sealed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + body.len() + SHA256_OUTPUT_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(body);
    let digest = ring::digest::digest(&SHA256, &out);
    out.extend_from_slice(digest.as_ref());
    out
}

/// Reads a saved file of agent `agent` in trust domain `td`, dropping the
/// SVIDs expired at `now`. Anything amiss refuses the whole file: a file
/// that is partly wrong is not trusted to be right elsewhere.
pub(crate) fn decode(
    bytes: &[u8],
    td: &TrustDomain,
    agent: &SpiffeId,
    now: i64,
) -> Result<Restored, DecodeError> {
    let prefix = MAGIC.len() + 1;
    if bytes.len() < prefix + SHA256_OUTPUT_LEN || !bytes.starts_with(MAGIC) {
        return Err(DecodeError::NotOurs);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(DecodeError::Version(bytes[MAGIC.len()]));
    }
    let (body, digest) = bytes.split_at(bytes.len() - SHA256_OUTPUT_LEN);
    if ring::digest::digest(&SHA256, body).as_ref() != digest {
        return Err(DecodeError::Checksum);
    }
    let mut buf = &body[prefix..];
    let header = Header::decode_length_delimited(&mut buf).map_err(DecodeError::Record)?;
    if header.trust_domain != td.name() {
        return Err(DecodeError::ForeignTrustDomain {
            found: header.trust_domain,
        });
    }
    if header.agent_id != agent.as_str() {
        return Err(DecodeError::OtherAgent {
            found: header.agent_id,
        });
    }
    let mut restored = Restored::default();
    for b in header.federated_bundles {
        let bundle = bundle_from_wire(b).map_err(DecodeError::Wire)?;
        if bundle.trust_domain == *td {
            return Err(DecodeError::FederatedOwnDomain);
        }
        restored
            .federated
            .insert(bundle.trust_domain.clone(), Arc::new(bundle));
    }
    for _ in 0..header.identities {
        let record = Record::decode_length_delimited(&mut buf).map_err(DecodeError::Record)?;
        let r = identity(record, td)?;
        if r.identity.not_after > now {
            restored.identities.push(r);
        } else {
            restored.expired += 1;
        }
    }
    if !buf.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(restored)
}

/// One record, checked: its entry parses, its SPIFFE ID is in `td` and is
/// the one its SVID carries.
fn identity(record: Record, td: &TrustDomain) -> Result<RestoredIdentity, DecodeError> {
    let entry = record.entry.ok_or(DecodeError::Incomplete {
        entry: String::new(),
    })?;
    let entry = entry_from_wire(entry).map_err(DecodeError::Wire)?;
    if entry.spiffe_id.trust_domain() != td {
        return Err(DecodeError::ForeignTrustDomain {
            found: entry.spiffe_id.trust_domain().name().to_owned(),
        });
    }
    let Some(leaf) = record.svid_chain.first() else {
        return Err(DecodeError::Incomplete { entry: entry.id });
    };
    if record.key_pkcs8.is_empty() {
        return Err(DecodeError::Incomplete { entry: entry.id });
    }
    let facts = match crate::ca::x509::cert_facts(leaf) {
        Ok(f) => f,
        Err(source) => {
            return Err(DecodeError::Cert {
                entry: entry.id,
                source,
            })
        }
    };
    if facts.uri_sans != [entry.spiffe_id.as_str()] {
        return Err(DecodeError::WrongSpiffeId { entry: entry.id });
    }
    Ok(RestoredIdentity {
        identity: WorkloadIdentity::issued(
            entry,
            record.svid_chain,
            record.key_pkcs8,
            facts.not_after,
        ),
        not_before: facts.not_before,
        issuer_key_id: facts.authority_key_id,
    })
}

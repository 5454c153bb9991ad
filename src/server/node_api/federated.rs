//! The federated bundles as Sync pushes them, read from the store, decoded
//! and put in wire form once per change and shared by every agent's
//! stream.
//!
//! Each stream used to read and decode every federated bundle itself on
//! each change and keep its own copy: with 10 agents, one 4 MiB peer
//! bundle took the server from 16 to 522 MiB (issue 18). Now the server
//! holds one [`FederatedWire`] per version, streams hold an `Arc` of it,
//! and a queued message refers to it until it is encoded
//! ([`super::sync::SyncPart`]). Memory follows the bundles' size, not the
//! number of agents times it.

use std::sync::Arc;

use prost::bytes::{Bytes, BytesMut};
use prost::encoding;
use prost::Message as _;

use super::sync::{chunk, MAX_BUNDLE_BYTES};
use crate::node::wire::bundle_into_wire;
use crate::proto::node;
use crate::server::generation_cache::GenerationCache;
use crate::server::state::ServerState;
use crate::store::StoreError;

/// Every federated bundle the server holds, in wire form, ordered by trust
/// domain (agents hand each workload only those its entries federate
/// with), each at most [`MAX_BUNDLE_BYTES`]; encoded once, in groups that
/// each fit one Sync message.
#[derive(Debug)]
pub struct FederatedWire {
    /// Each group as the `federated_bundles` field of its message: key,
    /// length and encoded bundle, for each bundle of the group. Every
    /// stream sends these same bytes.
    groups: Vec<Bytes>,
    /// SHA-256 of those bytes: an agent that holds this set says so when
    /// its Sync resumes (`crate::node::resume`).
    digest: Vec<u8>,
}

/// The field number of `SyncUpdate.federated_bundles` in node.proto.
const FEDERATED_BUNDLES_FIELD: u32 = 6;

impl Default for FederatedWire {
    /// The empty set.
    fn default() -> Self {
        FederatedWire::new(Vec::new())
    }
}

impl FederatedWire {
    /// The set of `bundles`, grouped into messages and encoded.
    pub(super) fn new(bundles: Vec<node::Bundle>) -> FederatedWire {
        let groups = chunk(bundles, usize::MAX, |b| b.encoded_len())
            .into_iter()
            .map(|group| {
                let len = group
                    .iter()
                    .map(|b| encoding::message::encoded_len(FEDERATED_BUNDLES_FIELD, b))
                    .sum();
                let mut buf = BytesMut::with_capacity(len);
                for b in &group {
                    encoding::message::encode(FEDERATED_BUNDLES_FIELD, b, &mut buf);
                }
                buf.freeze()
            })
            .collect::<Vec<_>>();
        let digest = crate::node::resume::bytes_digest(groups.iter().map(|g| &g[..]));
        FederatedWire { groups, digest }
    }

    /// The digest of the set (`SyncUpdate.federated_digest`).
    pub(super) fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Reads the federated bundles from the store. A bundle too large for
    /// a message (only an administrator can store one) is left out and
    /// logged, rather than failing every agent's stream.
    pub(crate) async fn load(state: &ServerState) -> Result<FederatedWire, StoreError> {
        let own = state.trust_domain.clone();
        let mut bundles = state.with_store(move |s| s.list_bundles()).await?;
        bundles.retain(|b| b.trust_domain != own);
        bundles.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
        let mut wire = Vec::with_capacity(bundles.len());
        for b in bundles {
            let w = bundle_into_wire(b);
            let size = w.encoded_len();
            if size > MAX_BUNDLE_BYTES {
                tracing::warn!(
                    trust_domain = %w.trust_domain,
                    size,
                    limit = MAX_BUNDLE_BYTES,
                    "federated bundle too large for the node API; not sent to agents"
                );
                continue;
            }
            wire.push(w);
        }
        Ok(FederatedWire::new(wire))
    }

    /// How many messages the set takes (0 when it is empty).
    pub(super) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The encoded bundles of message `group`, shared (not copied).
    pub(super) fn encoded_group(&self, group: usize) -> Bytes {
        self.groups.get(group).cloned().unwrap_or_default()
    }

    /// The bundles of message `group`, decoded: for the tonic path, which
    /// encodes messages itself.
    pub(super) fn group(&self, group: usize) -> Vec<node::Bundle> {
        // Bytes this type encoded decode; an empty set is the fallback
        // that cannot happen.
        node::SyncUpdate::decode(self.encoded_group(group))
            .map(|u| u.federated_bundles)
            .unwrap_or_default()
    }

    /// Whether `other` holds the same bundles (cheap when it is the same
    /// version).
    pub(super) fn same_as(self: &Arc<Self>, other: &Arc<Self>) -> bool {
        Arc::ptr_eq(self, other) || self.groups == other.groups
    }
}

/// The current [`FederatedWire`], reloaded on first use after a change
/// of a stored bundle.
pub type FederatedCache = GenerationCache<FederatedWire>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::{test_state, ServerEvent};
    use crate::spiffe::{Bundle, TrustDomain};
    use crate::store::SledStore;

    fn foreign(td: &str, seq: u64) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new(td).unwrap());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        b.x509_authorities.push(cert.der().to_vec());
        b.sequence = seq;
        b
    }

    /// Streams share one version until a change; the own bundle is not in it.
    #[tokio::test]
    async fn one_version_is_shared_until_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let state = test_state(SledStore::open(dir.path()).unwrap());
        state.store.set_bundle(&foreign("b.org", 1)).unwrap();
        state.store.set_bundle(&foreign("a.org", 1)).unwrap();
        let first = state.federated_wire().await.unwrap();
        let again = state.federated_wire().await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let group = first.group(0);
        let tds: Vec<_> = group.iter().map(|b| b.trust_domain.as_str()).collect();
        assert_eq!(tds, ["a.org", "b.org"]);
        assert_eq!(first.groups(), 1);

        state.store.set_bundle(&foreign("b.org", 2)).unwrap();
        state.publish(ServerEvent::BundleChanged);
        let next = state.federated_wire().await.unwrap();
        assert!(!next.same_as(&first));
        assert_eq!(next.group(0)[1].sequence, 2);
        // An unchanged reload is equal, though not the same allocation.
        state.publish(ServerEvent::BundleChanged);
        let reloaded = state.federated_wire().await.unwrap();
        assert!(!Arc::ptr_eq(&reloaded, &next) && reloaded.same_as(&next));
    }
}

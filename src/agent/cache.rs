//! The agent's in-memory identity cache: every workload SVID the agent
//! holds, the bundles, and a `watch` channel that publishes each new state.
//!
//! The producer (the manager that syncs with the server and rotates SVIDs)
//! and the consumers (Workload API streams) never share a lock: the manager
//! builds a new immutable [`CacheSnapshot`] and publishes it; each stream
//! takes the latest snapshot and waits for the next change (the linkerd
//! pattern, shared/design/STYLE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::node::wire::AgentEntry;
use crate::registration::Selector;
use crate::spiffe::{Bundle, SpiffeId, TrustDomain};

/// One identity the agent can hand out: a registration entry and the
/// X509-SVID currently issued for it. Its Debug leaves the private key out,
/// so no log line or panic message can carry it.
#[derive(Clone)]
pub struct WorkloadIdentity {
    /// The registration entry's ID.
    pub entry_id: String,
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// A caller gets this identity when it has all of these selectors.
    pub selectors: Vec<Selector>,
    /// Operator hint, passed to workloads.
    pub hint: String,
    /// Foreign trust domains this identity's workloads also trust.
    pub federates_with: Vec<TrustDomain>,
    /// The entry's creation time; among identities with one hint, the oldest wins.
    pub created_at: i64,
    /// The entry revision the SVID was issued for: a new revision re-issues.
    pub revision: i64,
    /// DER chain, leaf first.
    pub svid_chain: Vec<Vec<u8>>,
    /// PKCS#8 DER of the SVID's key.
    pub key_pkcs8: Vec<u8>,
    /// The SVID's NotAfter, unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("entry_id", &self.entry_id)
            .field("spiffe_id", &self.spiffe_id)
            .field("selectors", &self.selectors)
            .field("hint", &self.hint)
            .field("federates_with", &self.federates_with)
            .field("created_at", &self.created_at)
            .field("revision", &self.revision)
            .field("svid_chain_len", &self.svid_chain.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// The identity of `entry` with an SVID (chain, key, NotAfter).
    pub fn issued(
        entry: AgentEntry,
        svid_chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
        not_after: i64,
    ) -> Self {
        WorkloadIdentity {
            entry_id: entry.id,
            spiffe_id: entry.spiffe_id,
            selectors: entry.selectors,
            hint: entry.hint,
            federates_with: entry.federates_with,
            created_at: entry.created_at,
            revision: entry.revision,
            svid_chain,
            key_pkcs8,
            not_after,
        }
    }

    /// Whether a caller with `caller` selectors is entitled to this identity.
    pub fn matches(&self, caller: &[Selector]) -> bool {
        !self.selectors.is_empty() && self.selectors.iter().all(|s| caller.contains(s))
    }
}

/// Everything the Workload API serves, at one moment.
#[derive(Debug, Clone)]
pub struct CacheSnapshot {
    /// The agent's own trust domain.
    pub trust_domain: TrustDomain,
    /// Identities with a current SVID, ordered by entry creation time then ID
    /// (so the default identity, index 0, is stable).
    pub identities: Vec<Arc<WorkloadIdentity>>,
    /// The own trust domain's bundle.
    pub bundle: Arc<Bundle>,
    /// Federated bundles by trust domain.
    pub federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// Increases with every published snapshot.
    pub generation: u64,
    /// False until the agent has something to serve: it synced with its
    /// server, or restored the SVIDs it saved before a restart. The Workload
    /// API answers Unavailable (retry) rather than PermissionDenied (no
    /// identity) while it is false.
    pub ready: bool,
    /// True while what is served was restored from the agent's data
    /// directory and no sync with the server has confirmed it yet: a caller
    /// without an identity gets Unavailable, since its entry may be one the
    /// agent has not heard of.
    pub restored: bool,
    /// True once an attempt to reach the server failed, until a connection
    /// succeeds: a request that the cache cannot answer fails at once
    /// instead of waiting for a sync that is not coming.
    pub server_unreachable: bool,
}

impl CacheSnapshot {
    /// An empty, not-yet-ready snapshot.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        CacheSnapshot {
            bundle: Arc::new(Bundle::new(trust_domain.clone())),
            trust_domain,
            identities: Vec::new(),
            federated: BTreeMap::new(),
            generation: 0,
            ready: false,
            restored: false,
            server_unreachable: false,
        }
    }

    /// The identities a caller with these selectors is entitled to, default first.
    pub fn identities_for(&self, caller: &[Selector]) -> Vec<Arc<WorkloadIdentity>> {
        self.identities
            .iter()
            .filter(|i| i.matches(caller))
            .cloned()
            .collect()
    }
}

/// The publishing side of the cache.
#[derive(Debug, Clone)]
pub struct Cache {
    tx: Arc<watch::Sender<Arc<CacheSnapshot>>>,
}

impl Cache {
    /// A cache holding an empty, not-ready snapshot.
    pub fn new(trust_domain: TrustDomain) -> Self {
        let (tx, _) = watch::channel(Arc::new(CacheSnapshot::empty(trust_domain)));
        Cache { tx: Arc::new(tx) }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<CacheSnapshot> {
        self.tx.borrow().clone()
    }

    /// Publishes a new snapshot (its generation is set here).
    pub fn publish(&self, mut snapshot: CacheSnapshot) {
        snapshot.generation = self.tx.borrow().generation + 1;
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// A receiver that sees every later snapshot (and the current one).
    pub fn subscribe(&self) -> watch::Receiver<Arc<CacheSnapshot>> {
        self.tx.subscribe()
    }
}

/// Mints JWT-SVIDs through the server; the Workload API calls it for
/// FetchJWTSVID. Implemented by the node client; tests may use the CA directly.
#[tonic::async_trait]
pub trait JwtSvidSource: Send + Sync + 'static {
    /// A JWT-SVID for the identity of `entry_id`, for `audience`.
    async fn fetch_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<String, tonic::Status>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn sel(v: &str) -> Selector {
        Selector::new("unix", v).unwrap()
    }

    /// An identity of example.org with a placeholder SVID (for tests that
    /// look at which identity is served, not at its certificate).
    pub(crate) fn identity(id: &str, selectors: Vec<Selector>) -> Arc<WorkloadIdentity> {
        Arc::new(WorkloadIdentity {
            entry_id: id.into(),
            spiffe_id: SpiffeId::new(&td(), &format!("/{id}")).unwrap(),
            selectors,
            hint: String::new(),
            federates_with: Vec::new(),
            created_at: 0,
            revision: 0,
            svid_chain: vec![vec![1]],
            key_pkcs8: vec![2],
            not_after: 0,
        })
    }

    #[test]
    fn a_new_cache_is_empty_and_not_ready() {
        let cache = Cache::new(td());
        let snap = cache.current();
        assert!(!snap.ready);
        assert_eq!(snap.generation, 0);
        assert!(snap.identities.is_empty());
        assert_eq!(snap.bundle.trust_domain, td());
        assert!(snap.bundle.x509_authorities.is_empty());
    }

    #[tokio::test]
    async fn subscribers_see_each_published_snapshot_with_a_new_generation() {
        let cache = Cache::new(td());
        let mut rx = cache.subscribe();
        assert_eq!(rx.borrow_and_update().generation, 0);

        let mut snap = CacheSnapshot::empty(td());
        snap.identities = vec![identity("a", vec![sel("uid:1")])];
        snap.ready = true;
        snap.generation = 77; // set by publish, whatever the producer says
        cache.publish(snap);

        rx.changed().await.unwrap();
        let seen = rx.borrow_and_update().clone();
        assert_eq!(seen.generation, 1);
        assert!(seen.ready);
        assert_eq!(seen.identities[0].entry_id, "a");
        assert!(Arc::ptr_eq(&seen, &cache.current()));

        cache.publish(CacheSnapshot::empty(td()));
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow_and_update().generation, 2);
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn a_caller_gets_the_identities_whose_selectors_it_all_has() {
        let mut snap = CacheSnapshot::empty(td());
        snap.identities = vec![
            identity("one", vec![sel("uid:1")]),
            identity("both", vec![sel("uid:1"), sel("gid:2")]),
            identity("none", Vec::new()),
            identity("other", vec![sel("uid:3")]),
        ];
        let ids = |caller: &[Selector]| -> Vec<String> {
            snap.identities_for(caller)
                .iter()
                .map(|i| i.entry_id.clone())
                .collect()
        };
        assert_eq!(ids(&[sel("uid:1")]), ["one"]);
        assert_eq!(ids(&[sel("gid:2"), sel("uid:1")]), ["one", "both"]);
        assert!(
            ids(&[]).is_empty(),
            "an entry without selectors matches no one"
        );
        assert!(ids(&[sel("uid:9")]).is_empty());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = crate::ca::KeyPair::generate(crate::ca::KeyType::EcP256).unwrap();
        let pkcs8 = key.pkcs8_der().to_vec();
        let mut id = (*identity("one", vec![sel("uid:1")])).clone();
        id.key_pkcs8 = pkcs8.clone();
        let mut snap = CacheSnapshot::empty(td());
        snap.identities = vec![Arc::new(id.clone())];
        for text in [format!("{id:?}"), format!("{id:#?}"), format!("{snap:?}")] {
            assert!(text.contains("one"), "{text}");
            assert!(!text.contains("key_pkcs8"), "{text}");
            // The key as Debug prints a byte vector, as hex, and as PEM base64.
            let as_debug = format!("{pkcs8:?}");
            let inner = &as_debug[1..as_debug.len() - 1];
            assert!(!text.contains(inner), "{text}");
            assert!(!text.contains(&hex::encode(&pkcs8)), "{text}");
            let pem = crate::ca::keys::der_to_pem(&pkcs8, "PRIVATE KEY");
            let body = pem.lines().nth(1).unwrap();
            assert!(!text.contains(body), "{text}");
        }
    }
}

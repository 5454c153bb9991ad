//! Reconciling held SVIDs with the authorized entries: which entries need
//! an SVID now, getting them signed in batches (the key is made here and
//! only a CSR leaves the node), and holding what comes back.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::transport::Channel;

use super::renewal::svid_renew_at;
use super::{Manager, SessionError};
use crate::agent::cache::WorkloadIdentity;
use crate::ca::{KeyPair, KeyType};
use crate::node::make_csr;
use crate::proto::node::{self, node_client::NodeClient as Grpc};

/// CSRs per BatchNewX509SVID call.
const SIGN_BATCH: usize = 500;

/// An identity the manager holds, with what decides its next issuance.
pub(super) struct Held {
    /// The identity served, with the entry revision it was issued for.
    pub(super) identity: Arc<WorkloadIdentity>,
    /// When it is due for renewal, unix seconds.
    pub(super) renew_at: i64,
    /// The signing CA's key identifier (the leaf's AKI), to spot SVIDs
    /// signed by a tainted authority.
    pub(super) issuer_key_id: Option<Vec<u8>>,
}

impl Manager {
    /// Drops identities whose entries are gone or whose SVIDs expired by
    /// `now`, and returns the IDs of the entries that need an SVID: none
    /// held, an older revision, due for renewal, or signed by a tainted
    /// authority.
    pub(super) fn due_entries(&mut self, now: i64) -> Vec<String> {
        self.held
            .retain(|id, h| self.entries.contains_key(id) && h.identity.not_after > now);
        // IDs only: cloning 100,000 entries here doubled the agent's memory.
        self.entries
            .iter()
            .filter(|(id, e)| match self.held.get(*id) {
                Some(h) => {
                    h.identity.revision != e.revision
                        || h.renew_at <= now
                        || h.issuer_key_id
                            .as_ref()
                            .is_some_and(|k| self.tainted_x509.contains(k))
                }
                None => true,
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Issues SVIDs for entries that lack a current one, drops identities
    /// whose entries are gone, and publishes the result.
    pub(super) async fn reconcile(
        &mut self,
        client: &mut Grpc<Channel>,
    ) -> Result<(), SessionError> {
        let due = self.due_entries(self.clock.now_unix());
        for chunk in due.chunks(SIGN_BATCH) {
            let mut keys = BTreeMap::new();
            let mut params = Vec::with_capacity(chunk.len());
            for id in chunk {
                let key = KeyPair::generate(KeyType::EcP256).map_err(SessionError::Key)?;
                params.push(node::NewX509svidParams {
                    entry_id: id.clone(),
                    csr: make_csr(&key)?,
                });
                keys.insert(id.clone(), key);
            }
            let resp = client
                .batch_new_x509svid(node::BatchNewX509svidRequest { params })
                .await?
                .into_inner();
            self.hold_issued(resp.results, keys, self.clock.now_unix())?;
        }
        if !due.is_empty() {
            tracing::debug!(
                issued = due.len(),
                held = self.held.len(),
                "SVIDs reconciled"
            );
        }
        self.publish();
        Ok(())
    }

    /// Holds the SVIDs the server signed (at `issued_at`) with the keys
    /// made for them; results for entries no longer held, or that the
    /// server refused, are skipped.
    pub(super) fn hold_issued(
        &mut self,
        results: Vec<node::X509svidResult>,
        mut keys: BTreeMap<String, KeyPair>,
        issued_at: i64,
    ) -> Result<(), SessionError> {
        for r in results {
            let (Some(stored), Some(key)) =
                (self.entries.get(&r.entry_id), keys.remove(&r.entry_id))
            else {
                continue;
            };
            let entry = stored.parse(&r.entry_id)?;
            if r.code != 0 || r.cert_chain.is_empty() {
                tracing::warn!(entry = %r.entry_id, code = r.code, message = %r.message, "the server did not sign");
                continue;
            }
            let issuer_key_id = crate::ca::x509::cert_facts(&r.cert_chain[0])
                .ok()
                .and_then(|f| f.authority_key_id);
            self.held.insert(
                entry.id.clone(),
                Held {
                    renew_at: svid_renew_at(issued_at, r.expires_at),
                    issuer_key_id,
                    identity: Arc::new(WorkloadIdentity::issued(
                        entry,
                        r.cert_chain,
                        key.pkcs8_der().to_vec(),
                        r.expires_at,
                    )),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixture::*;
    use crate::ca::{KeyPair, KeyType};
    use crate::proto::node;

    #[test]
    fn what_is_due_depends_on_the_clock_revision_and_expiry() {
        let mut f = synced(&[("a", 1), ("b", 1), ("c", 1)]);
        let ca = new_ca();
        // a: 100 s of life, renews in (40, 50]; b: 1000 s, renews in (400, 500].
        issue(&mut f, &ca, &[("a", 100), ("b", 1_000)]);
        let m = &mut f.manager;
        assert_eq!(held_ids(m), ["a", "b"]);
        let renew_a = m.held["a"].renew_at;
        assert!(T0 + 40 < renew_a && renew_a <= T0 + 50, "{renew_a}");

        assert_eq!(
            m.due_entries(T0 + 10),
            ["c"],
            "only the entry without an SVID"
        );
        assert_eq!(m.due_entries(renew_a), ["a", "c"], "a at its renewal time");
        assert_eq!(held_ids(m), ["a", "b"], "due is not dropped");

        // An SVID at its NotAfter is dropped, not only due.
        assert_eq!(m.due_entries(T0 + 100), ["a", "c"]);
        assert_eq!(held_ids(m), ["b"]);
        assert_eq!(m.due_entries(T0 + 500), ["a", "b", "c"], "b at half-life");

        // A new revision is due at once; a removed entry's SVID is dropped.
        let diff = node::SyncUpdate {
            upserted: vec![wire_entry("b", 2)],
            removed: vec!["c".into()],
            ..Default::default()
        };
        m.apply(diff).unwrap();
        assert_eq!(m.due_entries(T0 + 10), ["a", "b"]);
        m.entries.remove("b");
        m.due_entries(T0 + 10);
        assert!(m.held.is_empty());
    }

    #[test]
    fn issued_svids_are_held_unless_refused_or_unknown() {
        let mut f = synced(&[("a", 3), ("b", 1)]);
        let key_a = KeyPair::generate(KeyType::EcP256).unwrap();
        let pkcs8_a = key_a.pkcs8_der().to_vec();
        let chain_a = vec![leaf(&f.ca, "/a", &key_a, 600, T0)];
        let mut keys = BTreeMap::new();
        keys.insert("a".to_string(), key_a);
        keys.insert("b".to_string(), KeyPair::generate(KeyType::EcP256).unwrap());
        keys.insert(
            "gone".to_string(),
            KeyPair::generate(KeyType::EcP256).unwrap(),
        );
        let results = vec![
            node::X509svidResult {
                entry_id: "a".into(),
                cert_chain: chain_a.clone(),
                expires_at: T0 + 600,
                ..Default::default()
            },
            node::X509svidResult {
                entry_id: "b".into(),
                code: tonic::Code::PermissionDenied as i32,
                message: "no".into(),
                ..Default::default()
            },
            node::X509svidResult {
                entry_id: "gone".into(),
                cert_chain: chain_a.clone(),
                expires_at: T0 + 600,
                ..Default::default()
            },
        ];
        f.manager.hold_issued(results, keys, T0).unwrap();
        assert_eq!(held_ids(&f.manager), ["a"]);
        let a = &f.manager.held["a"];
        assert_eq!(a.identity.revision, 3);
        assert_eq!(a.identity.svid_chain, chain_a);
        assert_eq!(a.identity.key_pkcs8, pkcs8_a);
        assert_eq!(a.identity.not_after, T0 + 600);
        assert_eq!(a.identity.spiffe_id.as_str(), "spiffe://example.org/a");
        let ca_ski = crate::ca::x509::cert_facts(f.ca.cert_der())
            .unwrap()
            .subject_key_id;
        assert!(ca_ski.is_some());
        assert_eq!(a.issuer_key_id, ca_ski, "the issuer is the leaf's AKI");
    }
}

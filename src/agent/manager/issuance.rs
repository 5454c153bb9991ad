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
    pub(super) identity: Arc<WorkloadIdentity>,
    /// The entry revision it was issued for: a new revision re-issues.
    pub(super) revision: i64,
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
                    h.revision != e.revision
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
                    revision: entry.revision,
                    renew_at: svid_renew_at(issued_at, r.expires_at),
                    issuer_key_id,
                    identity: Arc::new(WorkloadIdentity {
                        entry_id: entry.id,
                        spiffe_id: entry.spiffe_id,
                        selectors: entry.selectors,
                        hint: entry.hint,
                        federates_with: entry.federates_with,
                        created_at: entry.created_at,
                        svid_chain: r.cert_chain,
                        key_pkcs8: key.pkcs8_der().to_vec(),
                        not_after: r.expires_at,
                    }),
                },
            );
        }
        Ok(())
    }
}

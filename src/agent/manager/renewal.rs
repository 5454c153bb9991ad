//! When things are due: workload SVIDs at half their life minus a jitter
//! (so SVIDs issued together do not renew together), the agent's own SVID
//! at half its life. Also renewing the agent's own SVID, which ends the
//! session so the next one presents it.

use ring::rand::SecureRandom as _;
use std::sync::Arc;
use tonic::transport::Channel;

use super::{Manager, SessionError};
use crate::ca::{KeyPair, KeyType};
use crate::node::{make_csr, AgentCredential};
use crate::proto::node::{self, node_client::NodeClient as Grpc};

impl Manager {
    /// The next time something is due: the earliest workload renewal or
    /// the agent's own.
    pub(super) fn next_wake(&self) -> i64 {
        let agent = self.agent_renew_at();
        self.held
            .values()
            .map(|h| h.renew_at)
            .min()
            .unwrap_or(agent)
            .min(agent)
    }

    /// Half-life of the agent's own SVID; now if it cannot be read.
    pub(super) fn agent_renew_at(&self) -> i64 {
        // Half of the remaining life at load time is a fine approximation
        // of half-life; renewal resets it.
        let facts = crate::ca::x509::cert_facts(&self.cred.chain[0]).ok();
        match facts {
            Some(f) => f.not_before + (f.not_after - f.not_before) / 2,
            None => self.clock.now_unix(),
        }
    }

    /// Whether the agent's own SVID is due for renewal.
    pub(super) fn agent_svid_due(&self) -> bool {
        self.clock.now_unix() >= self.agent_renew_at()
    }

    /// Renews the agent's own SVID and saves it.
    pub(super) async fn renew_agent(
        &mut self,
        client: &mut Grpc<Channel>,
    ) -> Result<(), SessionError> {
        let key = KeyPair::generate(KeyType::EcP256).map_err(SessionError::Key)?;
        let csr = make_csr(&key)?;
        let resp = client
            .renew_agent(node::RenewAgentRequest { csr })
            .await?
            .into_inner();
        let leaf = resp
            .svid_chain
            .first()
            .ok_or(SessionError::EmptyAgentSvid)?;
        let facts = crate::ca::x509::cert_facts(leaf).map_err(SessionError::AgentSvid)?;
        let cred = AgentCredential {
            spiffe_id: self.cred.spiffe_id.clone(),
            chain: resp.svid_chain,
            key: Arc::new(key),
            not_after: facts.not_after,
        };
        self.store
            .save_credential(&cred)
            .map_err(SessionError::SaveCredential)?;
        self.cred = cred;
        tracing::info!(not_after = facts.not_after, "agent SVID renewed");
        Ok(())
    }
}

/// When an SVID issued at `issued_at` and expiring at `expires_at` is due:
/// at half its life, minus up to a tenth of its life of jitter.
pub(super) fn svid_renew_at(issued_at: i64, expires_at: i64) -> i64 {
    let lifetime = (expires_at - issued_at).max(1);
    issued_at + lifetime / 2 - jitter_secs(lifetime / 10)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // On failure the jitter is just zero.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

/// A random number of seconds below `max` (zero when `max` is not positive).
fn jitter_secs(max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    (random_u64() % max as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn svids_renew_between_two_fifths_and_half_of_their_life() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let at = svid_renew_at(1_000, 1_000 + 3_600);
            assert!((1_000 + 1_800 - 360 < at) && at <= 1_000 + 1_800, "{at}");
            seen.insert(at);
        }
        // The jitter is real: 200 draws over 360 values do not all agree.
        assert!(seen.len() > 1);
        // A lifetime too short for jitter renews at exactly half of it.
        assert_eq!(svid_renew_at(1_000, 1_009), 1_004);
        // An already expired answer still yields a time, not a panic.
        assert_eq!(svid_renew_at(1_000, 900), 1_000);
    }

    #[test]
    fn jitter_secs_stays_below_its_bound() {
        assert_eq!(jitter_secs(0), 0);
        assert_eq!(jitter_secs(-5), 0);
    }

    #[test]
    fn the_next_wake_and_the_agent_svid_follow_the_fake_clock() {
        let mut f = synced(&[("a", 1)]);
        let facts = crate::ca::x509::cert_facts(&f.manager.cred.chain[0]).unwrap();
        let agent_half = facts.not_before + (facts.not_after - facts.not_before) / 2;
        assert_eq!(f.manager.agent_renew_at(), agent_half);
        assert_eq!(f.manager.next_wake(), agent_half, "nothing held yet");
        assert!(!f.manager.agent_svid_due());
        f.clock.set(agent_half - 1);
        assert!(!f.manager.agent_svid_due());
        f.clock.set(agent_half);
        assert!(f.manager.agent_svid_due());

        f.clock.set(T0);
        let ca = new_ca();
        issue(&mut f, &ca, &[("a", 100)]);
        assert_eq!(f.manager.next_wake(), f.manager.held["a"].renew_at);
    }
}

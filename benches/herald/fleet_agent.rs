//! Item 8's simulated agents: each one a real node API client (the
//! agent's own `ServerConnector` and `attest`, TLS over loopback TCP)
//! that attests with its join token, opens its Sync stream on its own mTLS connection,
//! takes in its snapshot, asks for an X509-SVID for every entry in one
//! BatchNewX509SVID call (the agent's own batch), and then keeps reading
//! its stream, noting when a probe entry or a federated bundle arrives.
//!
//! What a real agent does beside that (generating a key per SVID, the
//! Workload API, renewals) is left out: a thousand of them share this
//! process and two cores with the server, and the item measures the
//! server. So the CSRs are made before the clock starts and reused across
//! agents (the server verifies every one as if it were new).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use herald::node::ServerConnector;
use herald::proto::node::{self, node_client::NodeClient};
use herald::tls::Roots;
use tokio::sync::{Notify, Semaphore};
use tonic::transport::Channel;

use crate::cluster::trust_domain;

/// Agents per loopback source address: what one address may hold stays
/// well inside the server's default per-address limits (64 connections,
/// 8 of them anonymous), as if every 25 agents shared one NAT address.
pub const AGENTS_PER_ADDRESS: usize = 25;

/// Attestations in flight at once from one source address (each is a
/// connection without a client certificate, of which the server accepts
/// 8 per address by default; a closed one may still count for a moment).
const ATTESTING_PER_ADDRESS: usize = 3;

/// The loopback source address of agent `i`: 127.1.0.1, 127.1.0.2, …
pub fn source_address(i: usize) -> IpAddr {
    let n = (i / AGENTS_PER_ADDRESS) as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + n))
}

/// What every agent's reader reports to the bench.
#[derive(Default)]
pub struct Sightings {
    /// Probe entries (by SPIFFE ID) and when their agent received them.
    probes: Mutex<HashMap<String, Instant>>,
    probe_seen: Notify,
    /// The federated authority (DER) waited for, and its arrivals.
    bundle: Mutex<(Vec<u8>, Vec<Instant>)>,
    bundle_seen: Notify,
    /// Streams that ended while the bench still watched them.
    pub ended: AtomicUsize,
}

impl Sightings {
    /// When a probe entry `spiffe_id` reached its agent, waiting for it.
    pub async fn probe(&self, spiffe_id: &str) -> Instant {
        loop {
            let seen = self.probe_seen.notified();
            if let Some(t) = self.probes.lock().unwrap().get(spiffe_id) {
                return *t;
            }
            seen.await;
        }
    }

    /// From now on, counts the agents that receive `authority` in a
    /// federated bundle.
    pub fn expect_bundle(&self, authority: Vec<u8>) {
        *self.bundle.lock().unwrap() = (authority, Vec::new());
    }

    /// The arrivals of the expected bundle, once `n` agents have it.
    pub async fn bundle_arrivals(&self, n: usize) -> Vec<Instant> {
        loop {
            let seen = self.bundle_seen.notified();
            {
                let b = self.bundle.lock().unwrap();
                if b.1.len() >= n {
                    return b.1.clone();
                }
            }
            seen.await;
        }
    }

    fn saw(&self, update: &node::SyncUpdate) {
        let now = Instant::now();
        let mut probe = false;
        for e in &update.upserted {
            if e.spiffe_id.contains("/fleet/probe/") {
                self.probes.lock().unwrap().insert(e.spiffe_id.clone(), now);
                probe = true;
            }
        }
        if probe {
            self.probe_seen.notify_waiters();
        }
        let mut bundle = self.bundle.lock().unwrap();
        let hit = update
            .federated_bundles
            .iter()
            .any(|b| !bundle.0.is_empty() && b.x509_authorities.first() == Some(&bundle.0));
        if hit {
            bundle.1.push(now);
            drop(bundle);
            self.bundle_seen.notify_waiters();
        }
    }
}

/// What the bench needs to start one agent.
pub struct Join {
    pub index: usize,
    pub token: String,
    pub node_addr: SocketAddr,
    pub roots: Vec<Vec<u8>>,
}

/// An agent holding its SVIDs, its connection kept open.
pub struct Held {
    /// When its snapshot was complete, and when it held every SVID.
    pub synced: Instant,
    pub held: Instant,
    pub svids: usize,
    _client: NodeClient<Channel>,
}

/// Attests, syncs and gets every SVID, then hands the stream to a reader
/// task; an error names the step that failed.
pub async fn start(
    join: Join,
    csrs: Arc<Vec<Vec<u8>>>,
    attesting: Arc<Semaphore>,
    sightings: Arc<Sightings>,
) -> Result<Held, String> {
    let i = join.index;
    let connector = ServerConnector::new(
        join.node_addr,
        &trust_domain(),
        Roots::new(join.roots),
        false,
    )
    .map_err(|e| format!("agent {i}: connector: {e}"))?
    .bind_local(source_address(i));
    let cred = {
        let _permit = attesting.acquire().await.map_err(|e| e.to_string())?;
        herald::node::attest(&connector, &join.token)
            .await
            .map_err(|e| format!("agent {i}: attest: {}", herald::errors::Chain(&e)))?
            .0
    };
    let mut client = connector
        .authenticated(&cred)
        .await
        .map_err(|e| format!("agent {i}: mTLS connect: {e}"))?;
    let mut stream = client
        .sync(node::SyncRequest::default())
        .await
        .map_err(|e| format!("agent {i}: Sync: {e}"))?
        .into_inner();
    let mut ids = Vec::new();
    loop {
        let update = stream
            .message()
            .await
            .map_err(|e| format!("agent {i}: Sync stream: {e}"))?
            .ok_or_else(|| format!("agent {i}: Sync ended before its snapshot"))?;
        ids.extend(update.upserted.into_iter().map(|e| e.id));
        if update.complete {
            break;
        }
    }
    let synced = Instant::now();
    let params = ids
        .into_iter()
        .zip(csrs.iter().cycle())
        .map(|(entry_id, csr)| node::NewX509svidParams {
            entry_id,
            csr: csr.clone(),
        })
        .collect();
    let results = client
        .batch_new_x509svid(node::BatchNewX509svidRequest { params })
        .await
        .map_err(|e| format!("agent {i}: BatchNewX509SVID: {e}"))?
        .into_inner()
        .results;
    if let Some(refused) = results.iter().find(|r| r.code != 0) {
        return Err(format!("agent {i}: not signed: {}", refused.message));
    }
    let held = Instant::now();
    tokio::spawn(async move {
        while let Ok(Some(update)) = stream.message().await {
            sightings.saw(&update);
        }
        sightings.ended.fetch_add(1, Ordering::SeqCst);
    });
    Ok(Held {
        synced,
        held,
        svids: results.len(),
        _client: client,
    })
}

/// Starts every agent at once (attestations `ATTESTING_PER_ADDRESS` at a
/// time from each source address).
pub async fn start_all(
    joins: Vec<Join>,
    csrs: Arc<Vec<Vec<u8>>>,
    sightings: Arc<Sightings>,
) -> Vec<Held> {
    let addresses = joins.len().div_ceil(AGENTS_PER_ADDRESS);
    let attesting: Vec<_> = (0..addresses)
        .map(|_| Arc::new(Semaphore::new(ATTESTING_PER_ADDRESS)))
        .collect();
    let tasks: Vec<_> = joins
        .into_iter()
        .map(|j| {
            let gate = attesting[j.index / AGENTS_PER_ADDRESS].clone();
            tokio::spawn(start(j, csrs.clone(), gate, sightings.clone()))
        })
        .collect();
    let mut held = Vec::with_capacity(tasks.len());
    for t in tasks {
        held.push(
            t.await
                .expect("agent task")
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    held
}

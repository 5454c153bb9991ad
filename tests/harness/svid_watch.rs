//! A workload that watches its X.509 context for a whole test, as a real
//! one would: the `spiffe` crate's `stream_x509_contexts`, every update
//! recorded, and between updates a look every quarter second at what it
//! holds (plus a fresh `fetch_x509_context` every second). Whatever breaks
//! the promise "the workload never holds an expired SVID" is written down
//! as a violation for the test to assert on at the end, rather than a
//! panic in a background task that nobody would see.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;

use super::bin::now;
use super::workload::{client, wait_for_svid};

/// One SVID as the workload received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived, unix seconds.
    pub at: i64,
    pub spiffe_id: String,
    /// The leaf's serial, lowercase hex.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The signing CA's key identifier (each server has its own CA).
    pub authority_key_id: Option<Vec<u8>>,
}

#[derive(Default)]
struct Record {
    /// Every context received, in order.
    updates: Vec<Vec<Seen>>,
    violations: Vec<String>,
}

/// The watching workload; its tasks run on the runtime given to
/// [`SvidWatch::start`] and end with it.
pub struct SvidWatch {
    record: Arc<Mutex<Record>>,
}

/// What the workload holds, each leaf read with `cert_facts`.
fn seen_of(context: &spiffe::X509Context) -> Vec<Seen> {
    context
        .svids()
        .iter()
        .map(|s| {
            let facts = herald::ca::x509::cert_facts(s.leaf().as_ref()).expect("a readable leaf");
            Seen {
                at: now(),
                spiffe_id: s.spiffe_id().to_string(),
                serial: facts.serial,
                not_before: facts.not_before,
                not_after: facts.not_after,
                authority_key_id: facts.authority_key_id,
            }
        })
        .collect()
}

/// The SVIDs of `held` already expired at `at`, described.
fn expired(held: &[Seen], at: i64, when: &str) -> Vec<String> {
    held.iter()
        .filter(|s| s.not_after <= at)
        .map(|s| {
            format!(
                "{when}: {} (serial {}) expired at {} but held at {at}",
                s.spiffe_id, s.serial, s.not_after
            )
        })
        .collect()
}

impl SvidWatch {
    /// Starts watching the Workload API at `socket` once this process has
    /// an SVID there (see [`wait_for_svid`]).
    pub fn start(rt: &tokio::runtime::Runtime, socket: &Path) -> SvidWatch {
        let record = Arc::new(Mutex::new(Record::default()));
        let c = rt.block_on(async {
            let c = client(socket).await;
            wait_for_svid(&c).await;
            c
        });
        let mut stream = rt
            .block_on(c.stream_x509_contexts())
            .expect("an X509 context stream");
        let first = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), stream.next()).await })
            .expect("a first X509 context within 20 s")
            .expect("the X509 context stream ended at once")
            .expect("a first X509 context");
        record.lock().unwrap().updates.push(seen_of(&first));
        let on_stream = record.clone();
        rt.spawn(async move {
            while let Some(next) = stream.next().await {
                let mut r = on_stream.lock().unwrap();
                match next {
                    Ok(context) => {
                        let held = seen_of(&context);
                        let bad = expired(&held, now(), "on update");
                        r.violations.extend(bad);
                        r.updates.push(held);
                    }
                    Err(e) => {
                        r.violations
                            .push(format!("the X509 context stream failed: {e}"));
                        return;
                    }
                }
            }
            on_stream
                .lock()
                .unwrap()
                .violations
                .push("the X509 context stream ended".to_owned());
        });
        let sampled = record.clone();
        rt.spawn(async move {
            for tick in 0u64.. {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let fetched = if tick % 4 == 0 {
                    Some(c.fetch_x509_context().await)
                } else {
                    None
                };
                let mut r = sampled.lock().unwrap();
                let latest = r.updates.last().cloned().unwrap_or_default();
                let bad = expired(&latest, now(), "between updates");
                r.violations.extend(bad);
                match fetched {
                    Some(Ok(context)) => {
                        let bad = expired(&seen_of(&context), now(), "on fetch");
                        r.violations.extend(bad);
                    }
                    Some(Err(e)) => r.violations.push(format!("fetch_x509_context failed: {e}")),
                    None => {}
                }
            }
        });
        SvidWatch { record }
    }

    /// Each distinct SVID of `spiffe_id` received, in the order first seen.
    pub fn svids_of(&self, spiffe_id: &str) -> Vec<Seen> {
        let r = self.record.lock().unwrap();
        let mut serials = BTreeSet::new();
        r.updates
            .iter()
            .flatten()
            .filter(|s| s.spiffe_id == spiffe_id && serials.insert(s.serial.clone()))
            .cloned()
            .collect()
    }

    /// The SPIFFE IDs of the last context received.
    pub fn latest_ids(&self) -> BTreeSet<String> {
        let r = self.record.lock().unwrap();
        r.updates
            .last()
            .map(|u| u.iter().map(|s| s.spiffe_id.clone()).collect())
            .unwrap_or_default()
    }

    /// How many contexts arrived so far.
    pub fn update_count(&self) -> usize {
        self.record.lock().unwrap().updates.len()
    }

    /// Everything that broke the promise so far.
    pub fn violations(&self) -> Vec<String> {
        self.record.lock().unwrap().violations.clone()
    }
}

//! The profile's companion: ad-hoc timing, on one thread, of each step on
//! the hot paths the items above exercise, beside the raw crypto it must
//! contain. Issuance (agent: key + CSR; server: CSR verification,
//! certificate signing, the per-batch authorization read and the per-batch
//! durable write), entry sync (wire conversions) and the Workload API
//! (caller attestation, matching the caller among the cached identities).

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::agent::attestor::UnixAttestor;
use herald::agent::cache::{CacheSnapshot, WorkloadIdentity};
use herald::ca::serial::SerialBlock;
use herald::ca::template::serial_hex;
use herald::ca::{verify_csr, KeyPair, KeyType, SvidRequest, X509Authority};
use herald::clock::now_unix;
use herald::node::make_csr;
use herald::node::wire::{entry_from_wire, entry_to_wire};
use herald::registration::{RegistrationEntry, Selector};
use herald::server::authorized::authorized_entries;
use herald::spiffe::SpiffeId;
use herald::store::{DataStore, IssuanceRecord, SledStore};

use crate::bound::CryptoBound;
use crate::child;
use crate::cluster::trust_domain;
use crate::harness::dirs::temp_dir;
use crate::measure::{fmt_dur, fmt_kib, status_kib};
use crate::report::{heading, ratio, Report, Row};
use crate::scale::Scale;

/// 500-record `append_issuances` calls timed.
const APPENDS: usize = 20;

/// Mean time of `f` over `iters` calls (after one warm-up call).
fn time<T>(iters: usize, mut f: impl FnMut(usize) -> T) -> Duration {
    std::hint::black_box(f(0));
    let start = Instant::now();
    for i in 0..iters {
        std::hint::black_box(f(i));
    }
    start.elapsed() / iters as u32
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn store_entry(i: usize, parent: &SpiffeId) -> RegistrationEntry {
    RegistrationEntry {
        id: uuid::Uuid::new_v4().to_string(),
        revision: 1,
        created_at: now_unix(),
        ..RegistrationEntry::new(
            SpiffeId::new(&trust_domain(), &format!("/bench/breakdown/{i}")).unwrap(),
            parent.clone(),
            vec![Selector::new("unix", format!("uid:{}", 5_000_000 + i)).unwrap()],
        )
    }
}

fn identity(i: usize, selector: Selector) -> Arc<WorkloadIdentity> {
    Arc::new(WorkloadIdentity {
        entry_id: format!("entry-{i}"),
        spiffe_id: SpiffeId::new(&trust_domain(), &format!("/bench/cached/{i}")).unwrap(),
        selectors: vec![selector],
        hint: String::new(),
        federates_with: vec![],
        created_at: i as i64,
        revision: 1,
        svid_chain: vec![vec![0x30; 600]],
        key_pkcs8: vec![0x30; 138],
        not_after: now_unix() + 3600,
    })
}

/// A fresh store holding `n` entries created in `calls` create_entries
/// calls (each one sled transaction); how much this process's RSS grew, and
/// its peak (VmHWM) over the RSS before (KiB). Run in a child process.
pub fn store_with_entries(n: usize, calls: usize, agent: &SpiffeId) -> (u64, u64) {
    let dir = temp_dir("hb-prof-");
    let me = std::process::id();
    let rss0 = status_kib(me, "VmRSS");
    let store = SledStore::open(&dir.path().join("store")).unwrap();
    for c in 0..calls {
        let part = (c * n / calls..(c + 1) * n / calls)
            .map(|i| store_entry(i, agent))
            .collect();
        store.create_entries(part).unwrap();
    }
    let rss = status_kib(me, "VmRSS").saturating_sub(rss0);
    let hwm = status_kib(me, "VmHWM").saturating_sub(rss0);
    (rss, hwm)
}

/// This process's (uid, gid) as the socket's peer credential would give them.
fn uid_gid() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// Runs the breakdown.
pub fn run(scale: &Scale, bound: &CryptoBound, report: &mut Report) {
    heading("P", "Hot-path breakdown (one thread, mean per call)");
    let iters = scale.breakdown_iters;
    let td = trust_domain();

    // --- issuance: agent side, then server side ---
    let keygen = time(iters, |_| KeyPair::generate(KeyType::EcP256).unwrap());
    let key = KeyPair::generate(KeyType::EcP256).unwrap();
    let csr_sign = time(iters, |_| make_csr(&key).unwrap());
    let csr = make_csr(&key).unwrap();
    let verify = time(iters, |_| verify_csr(&csr).unwrap());
    let ca_key = Arc::new(KeyPair::generate(KeyType::EcP256).unwrap());
    let ca = X509Authority::self_signed(&td, ca_key, 86_400, now_unix()).unwrap();
    let spki = verify_csr(&csr).unwrap().public_key_spki;
    let id = SpiffeId::new(&td, "/bench/breakdown").unwrap();
    let sign = time(iters, |_| {
        ca.sign_svid(
            &SvidRequest {
                spiffe_id: &id,
                public_key_spki: &spki,
                ttl_secs: 3600,
                dns_names: &[],
            },
            now_unix(),
        )
        .unwrap()
    });

    // --- the store: entries (RSS per transaction size), then the per-batch
    // work of BatchNewX509SVID ---
    let e = scale.breakdown_entries;
    let agent = SpiffeId::new(&td, "/herald/agent/breakdown").unwrap();
    let single = child::measure(&format!("sled-entries {e} 1"));
    let chunked = child::measure(&format!("sled-entries {e} 10"));
    let dir = temp_dir("hb-prof-");
    let store = SledStore::open(&dir.path().join("store")).unwrap();
    store
        .create_entries((0..e).map(|i| store_entry(i, &agent)).collect())
        .unwrap();
    let json_kib = (0..e)
        .map(|i| serde_json::to_vec(&store_entry(i, &agent)).unwrap().len())
        .sum::<usize>() as u64
        / 1024;
    let authorized = time(iters.min(200), |_| {
        authorized_entries(&store, &agent, now_unix()).unwrap()
    });
    // Fresh serials every call (an existing serial would be replaced),
    // drawn in blocks as the CA draws a batch's.
    let batches: Vec<Vec<IssuanceRecord>> = (0..APPENDS)
        .map(|b| {
            let mut serials = SerialBlock::new();
            (0..500)
                .map(|i| IssuanceRecord {
                    serial: serial_hex(&serials.next_serial(now_unix()).unwrap()),
                    spiffe_id: id.clone(),
                    agent_id: Some(agent.clone()),
                    entry_id: Some(format!("entry-{b}-{i}")),
                    not_after: now_unix() + 3600,
                    issued_at: now_unix(),
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for b in &batches {
        store.append_issuances(b).unwrap();
    }
    let append = start.elapsed() / APPENDS as u32;

    // --- entry sync: the wire conversions per entry ---
    let entries: Vec<RegistrationEntry> = (0..1_000).map(|i| store_entry(i, &agent)).collect();
    let to_wire = time(iters, |i| entry_to_wire(&entries[i % entries.len()]));
    let wire: Vec<_> = entries.iter().map(entry_to_wire).collect();
    let from_wire = time(iters, |i| {
        entry_from_wire(wire[i % wire.len()].clone()).unwrap()
    });

    // --- the Workload API's per-call work ---
    let attestor = UnixAttestor::new();
    let (uid, gid) = uid_gid();
    let pid = std::process::id() as i32;
    let attest = time(iters, |_| attestor.attest(pid, uid, gid).unwrap());
    let remembered = time(iters, |_| {
        attestor.attest_remembered(pid, uid, gid).unwrap()
    });
    let caller = attestor.attest(pid, uid, gid).unwrap();
    let mut snap = CacheSnapshot::empty(td.clone());
    snap.identities = (0..scale.workloads)
        .map(|i| {
            let sel = Selector::new("unix", format!("uid:{}", 1_000_000 + i)).unwrap();
            identity(i, sel)
        })
        .collect();
    snap.identities.push(identity(
        scale.workloads,
        Selector::new("unix", format!("uid:{uid}")).unwrap(),
    ));
    let matching = time(iters, |_| snap.identities_for(&caller));

    let steps = [
        (
            "agent: KeyPair::generate",
            keygen,
            format!("ring keygen {}", fmt_dur(secs(1.0 / bound.keygen_1))),
        ),
        (
            "agent: make_csr (rcgen, one signature)",
            csr_sign,
            format!("ring sign {}", fmt_dur(secs(1.0 / bound.sign_1))),
        ),
        (
            "server: verify_csr",
            verify,
            format!("ring verify {}", fmt_dur(secs(1.0 / bound.verify_1))),
        ),
        (
            "server: X509Authority::sign_svid",
            sign,
            format!("ring sign {}", fmt_dur(secs(1.0 / bound.sign_1))),
        ),
    ];
    let raw = [
        1.0 / bound.keygen_1,
        1.0 / bound.sign_1,
        1.0 / bound.verify_1,
        1.0 / bound.sign_1,
    ];
    for ((figure, v, baseline), raw) in steps.into_iter().zip(raw) {
        report.add(Row {
            item: "P breakdown",
            figure: figure.into(),
            value: fmt_dur(v),
            baseline,
            ratio: ratio(v.as_secs_f64(), raw),
            target: "–".into(),
            met: None,
        });
    }
    for (calls, kib) in [(1, &single), (10, &chunked)] {
        report.add(Row {
            item: "P breakdown",
            figure: format!("sled: create_entries of {e} in {calls} call(s), RSS / peak growth"),
            value: format!("{} / {}", fmt_kib(kib[0]), fmt_kib(kib[1])),
            baseline: format!("their JSON {}", fmt_kib(json_kib)),
            ratio: ratio(kib[1] as f64, json_kib as f64),
            target: "–".into(),
            met: None,
        });
    }
    let per_svid_raw = 1.0 / bound.sign_1 + 1.0 / bound.verify_1;
    let others = [
        (
            format!("server: authorized_entries, {e} entries (once per batch call)"),
            authorized,
            format!("per entry {}", fmt_dur(authorized / e as u32)),
        ),
        (
            "server: append_issuances, 500 records (once per batch call)".into(),
            append,
            format!("per record {}", fmt_dur(append / 500)),
        ),
        ("sync: entry_to_wire per entry".into(), to_wire, "–".into()),
        (
            "sync: entry_from_wire per entry".into(),
            from_wire,
            "–".into(),
        ),
        (
            "workload API: UnixAttestor::attest per call".into(),
            attest,
            "–".into(),
        ),
        (
            "workload API: UnixAttestor::attest_remembered per call (a hit)".into(),
            remembered,
            format!("attest {}", fmt_dur(attest)),
        ),
        (
            format!("workload API: identities_for among {}", scale.workloads + 1),
            matching,
            "–".into(),
        ),
    ];
    for (figure, v, note) in others {
        report.add(Row {
            item: "P breakdown",
            figure,
            value: fmt_dur(v),
            baseline: format!("{note}; 1 sign+verify {}", fmt_dur(secs(per_svid_raw))),
            ratio: ratio(v.as_secs_f64(), per_svid_raw),
            target: "–".into(),
            met: None,
        });
    }
}

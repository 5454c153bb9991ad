//! The hardware's bound, measured at the start of every run: raw ring
//! ECDSA P-256 rates on one core and on all cores at once. An issuance
//! must at least verify one CSR signature and make one certificate
//! signature; a renewal also makes a key and signs the CSR on the agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};

use crate::measure::{fmt_rate, thread_cpu_secs};
use crate::scale::Scale;

/// Raw rates, per second.
#[derive(Debug, Clone, Copy)]
pub struct CryptoBound {
    pub cores: usize,
    /// One thread: signatures per CPU second.
    pub sign_1: f64,
    /// One thread: verifications per CPU second.
    pub verify_1: f64,
    /// One thread: key pairs generated (and loaded for signing) per CPU second.
    pub keygen_1: f64,
    /// All cores at once: sign + verify pairs per second (item 1's bound).
    pub issuance_all: f64,
    /// All cores at once: keygen + 2 sign + verify per second (a renewal:
    /// the agent makes a key and signs its CSR, the server verifies and signs).
    pub renewal_all: f64,
}

/// A message the size of an SVID's TBSCertificate.
const MESSAGE: [u8; 400] = [0x5a; 400];

fn key(rng: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), rng).unwrap()
}

fn sign(k: &EcdsaKeyPair, rng: &SystemRandom) -> Vec<u8> {
    k.sign(rng, &MESSAGE).unwrap().as_ref().to_vec()
}

fn verify(k: &EcdsaKeyPair, sig: &[u8]) {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, k.public_key().as_ref())
        .verify(&MESSAGE, sig)
        .unwrap();
}

/// Runs `op` on `threads` threads for `time`; operations per second, all
/// threads together.
fn rate(threads: usize, time: Duration, op: fn(&EcdsaKeyPair, &SystemRandom)) -> f64 {
    run(threads, time, op).0
}

/// Runs `op` on one thread for `time`; operations per CPU second of that
/// thread, which a busy machine (other processes taking turns on the
/// cores) inflates far less than a rate per wall-clock second. Figures
/// compared with it are CPU times too.
fn rate_per_cpu(time: Duration, op: fn(&EcdsaKeyPair, &SystemRandom)) -> f64 {
    run(1, time, op).1
}

/// Operations per wall-clock second (all threads), and per CPU second
/// (all threads' CPU time together).
fn run(threads: usize, time: Duration, op: fn(&EcdsaKeyPair, &SystemRandom)) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("bench-bound-{i}"))
                .spawn(move || {
                    let rng = SystemRandom::new();
                    let k = key(&rng);
                    let cpu0 = thread_cpu_secs();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        op(&k, &rng);
                        n += 1;
                    }
                    (n, thread_cpu_secs() - cpu0)
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut cpu) = (0u64, 0.0);
    for w in workers {
        let (n, c) = w.join().unwrap();
        total += n;
        cpu += c;
    }
    let wall = start.elapsed().as_secs_f64();
    (total as f64 / wall, total as f64 / cpu.max(1e-3))
}

/// Sign + verify pairs per second on `threads` threads at once.
pub fn issuance_all(threads: usize, time: Duration) -> f64 {
    rate(threads, time, |k, rng| {
        let sig = sign(k, rng);
        verify(k, &sig);
    })
}

impl CryptoBound {
    /// Measures every rate for `scale.bound_time` each.
    pub fn measure(scale: &Scale) -> CryptoBound {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let t = scale.bound_time;
        CryptoBound {
            cores,
            sign_1: rate_per_cpu(t, |k, rng| {
                sign(k, rng);
            }),
            verify_1: rate_per_cpu(t, |k, _| {
                thread_local! {
                    static SIG: std::cell::OnceCell<Vec<u8>> = const { std::cell::OnceCell::new() };
                }
                // One signature, made once per thread, verified again and again.
                SIG.with(|s| verify(k, s.get_or_init(|| sign(k, &SystemRandom::new()))));
            }),
            keygen_1: rate_per_cpu(t, |_, rng| {
                key(rng);
            }),
            issuance_all: issuance_all(cores, t),
            renewal_all: rate(cores, t, |k, rng| {
                let fresh = key(rng);
                let csr_sig = sign(&fresh, rng);
                verify(&fresh, &csr_sig);
                sign(k, rng);
            }),
        }
    }

    /// Prints the rates.
    pub fn print(&self) {
        println!("\n== raw ring ECDSA P-256 (the bound every item is judged against)");
        println!(
            "  one core, per CPU second: sign {}, verify {}, keygen {}",
            fmt_rate(self.sign_1),
            fmt_rate(self.verify_1),
            fmt_rate(self.keygen_1)
        );
        println!(
            "  {} cores at once: sign+verify {} (issuance bound), keygen+2 sign+verify {} (renewal bound)",
            self.cores,
            fmt_rate(self.issuance_all),
            fmt_rate(self.renewal_all)
        );
    }
}

//! Runs every fuzz target body over its seed corpus (fuzz/corpus/<target>/)
//! and over deterministic mutations of it, on stable Rust. This is not a
//! substitute for coverage-guided fuzzing with cargo-fuzz (see README), but
//! it keeps the targets compiling and catches panics on near-valid input in
//! every CI run. A panic in a target fails the test.

use std::path::Path;

const MUTATIONS_PER_SEED: usize = 2_000;

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let interesting = [0u8, 0xff, b'"', b'.', b'/', b'%', b':', 0x30, 0x80, b'A'];
                v.insert(i, interesting[rng.below(interesting.len())]);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                v.truncate(i);
            }
            4 if !other.is_empty() => {
                // Splice a piece of another seed in.
                let a = rng.below(other.len());
                let b = a + rng.below(other.len() - a + 1);
                let i = rng.below(v.len() + 1);
                v.splice(i..i, other[a..b].iter().copied());
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn run_target(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut runs = 0;
    for (i, seed) in seeds.iter().enumerate() {
        target(seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..MUTATIONS_PER_SEED {
            let input = mutate(&mut rng, seed, other);
            target(&input);
            runs += 1;
        }
    }
    assert!(runs >= seeds.len() * MUTATIONS_PER_SEED);
}

#[test]
fn spiffe_id_target() {
    run_target("spiffe_id", herald::fuzzing::spiffe_id);
}

#[test]
fn bundle_json_target() {
    run_target("bundle_json", herald::fuzzing::bundle_json);
}

#[test]
fn csr_target() {
    run_target("csr", herald::fuzzing::csr);
}

#[test]
fn jwt_svid_target() {
    run_target("jwt_svid", herald::fuzzing::jwt_svid);
}

#[test]
fn h2_authority_target() {
    run_target("h2_authority", herald::fuzzing::h2_authority);
}

#[test]
fn workload_svids_target() {
    run_target("workload_svids", herald::fuzzing::workload_svids);
}

#[test]
fn k8s_psat_token_target() {
    run_target("k8s_psat_token", herald::fuzzing::k8s_psat_token);
}

#[test]
fn k8s_api_json_target() {
    run_target("k8s_api_json", herald::fuzzing::k8s_api_json);
}

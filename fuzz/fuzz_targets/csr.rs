#![no_main]
//! Fuzz target: see herald::fuzzing::csr.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::csr(data));

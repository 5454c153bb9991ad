#![no_main]
//! Fuzz target: see herald::fuzzing::spiffe_id.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::spiffe_id(data));

#![no_main]
//! Fuzz target: see herald::fuzzing::k8s_psat_token.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::k8s_psat_token(data));

#![no_main]
//! Fuzz target: see herald::fuzzing::h2_authority.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::h2_authority(data));

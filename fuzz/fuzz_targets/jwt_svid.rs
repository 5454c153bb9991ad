#![no_main]
//! Fuzz target: see herald::fuzzing::jwt_svid.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::jwt_svid(data));

#![no_main]
//! Fuzz target: see herald::fuzzing::bundle_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::bundle_json(data));

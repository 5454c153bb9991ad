#![no_main]
//! Fuzz target: see herald::fuzzing::k8s_api_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::k8s_api_json(data));

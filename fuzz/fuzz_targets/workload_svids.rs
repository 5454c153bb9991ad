#![no_main]
//! Fuzz target: see herald::fuzzing::workload_svids.
libfuzzer_sys::fuzz_target!(|data: &[u8]| herald::fuzzing::workload_svids(data));

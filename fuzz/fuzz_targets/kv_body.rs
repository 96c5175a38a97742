#![no_main]
//! Fuzz target: see `credvault_server::fuzzing::kv_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_server::fuzzing::kv_body(data));

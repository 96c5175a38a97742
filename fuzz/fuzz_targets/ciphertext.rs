#![no_main]
//! Fuzz target: see `credvault_server::fuzzing::ciphertext`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| credvault_server::fuzzing::ciphertext(data));

//! `cargo fuzz run client_hello`: see `egressd::fuzzing::client_hello` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| egressd::fuzzing::client_hello(data));

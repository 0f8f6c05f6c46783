//! `cargo fuzz run target_authority`: see `egressd::fuzzing::target_authority` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| egressd::fuzzing::target_authority(data));

//! `cargo fuzz run policy_yaml`: see `egressd::fuzzing::policy_yaml` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| egressd::fuzzing::policy_yaml(data));

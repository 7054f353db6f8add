#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| subnodesync_core::fuzzing::desired_state(data));

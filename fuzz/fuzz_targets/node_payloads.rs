#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| subnodesync_core::fuzzing::node_payloads(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    subnodesync_engine::fuzzing::ingest_sequence(data);
});

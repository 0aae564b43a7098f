//! History files as `lincheck` reads them (JSON lines of operation events),
//! on arbitrary bytes. The logic lives in `sim_tests::fuzzing`, so
//! `cargo test -p sim-tests` replays this target's corpus on stable Rust
//! (sim-tests/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sim_tests::fuzzing::history_jsonl(data));

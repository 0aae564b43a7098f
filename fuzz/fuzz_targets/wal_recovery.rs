//! WAL segment recovery on arbitrary bytes: only exact records are reported,
//! torn tails and corruption are located. The logic lives in
//! `tribune_core::fuzzing`, so `cargo test` replays this target's corpus on
//! stable Rust (core/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tribune_core::fuzzing::wal_recovery(data));

//! Consul user event payloads (what a serf user event named
//! `consul:event:*` carries) of arbitrary bytes. The logic lives in
//! `tribune_core::fuzzing`, so `cargo test` replays this target's corpus on
//! stable Rust (core/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tribune_core::fuzzing::user_event(data));

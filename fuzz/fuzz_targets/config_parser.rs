//! Agent config files: arbitrary bytes as HCL and as JSON, then the service
//! and check decoders (logic in `tribune_core::fuzzing`, so `cargo test`
//! replays the corpus on stable Rust, core/tests/fuzz_corpus.rs), and the
//! agent's watch decoder, which lives in io-tokio.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tribune_core::fuzzing::config_parser(data);
    for config in tribune_core::fuzzing::config_values(data) {
        if let Some(serde_json::Value::Array(watches)) = config.get("watches") {
            for watch in watches {
                let _ = tribune::agent::watches::decode(watch);
            }
        }
    }
});

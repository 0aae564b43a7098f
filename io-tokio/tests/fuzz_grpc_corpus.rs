//! Replays the `grpc_health_response` fuzz corpus through the gRPC health
//! response decoder on stable Rust: every seed must keep the fuzz target's
//! properties, `valid-*` seeds must decode and `bad-*` seeds must be refused.

use std::path::Path;
use tribune::checks::grpc_wire::{decode_response, fuzzing};

#[test]
fn grpc_health_response_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/grpc_health_response");
    let entries = std::fs::read_dir(&dir).expect("the grpc_health_response corpus exists");
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("readable corpus entry").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| fuzzing(&data));
        assert!(outcome.is_ok(), "{} breaks a property", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let decoded = decode_response(&data);
        if name.starts_with("valid-") {
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
        } else if name.starts_with("bad-") {
            assert!(decoded.is_err(), "{name}: {decoded:?}");
        }
        replayed += 1;
    }
    assert!(replayed >= 10, "only {replayed} seeds in {}", dir.display());
}

//! Replays io-tokio's fuzz corpora on stable Rust, so `cargo test` keeps
//! every seed and every crash a fuzzer once found fixed: every seed must
//! keep its target's properties (no panic); where the target has a
//! decoder, `valid-*` seeds must decode and `bad-*` seeds must not.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every seed of `target` through `run`, checks `valid-`/`bad-`
/// names against `decodes` when given, and wants at least `min` seeds.
fn replay(target: &str, run: fn(&[u8]), decodes: Option<fn(&[u8]) -> bool>, min: usize) {
    let dir = corpus_dir(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("the {target} corpus exists: {e}"));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("readable corpus entry").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} breaks a property", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(decodes) = decodes {
            if name.starts_with("valid-") {
                assert!(decodes(&data), "{name} does not decode");
            } else if name.starts_with("bad-") {
                assert!(!decodes(&data), "{name} decodes");
            }
        }
        replayed += 1;
    }
    assert!(
        replayed >= min,
        "only {replayed} seeds in {}",
        dir.display()
    );
}

#[test]
fn dns_packet_corpus() {
    replay("dns_packet", tribune::dns::fuzzing::dns_packet, None, 10);
}

#[test]
fn grpc_health_response_corpus() {
    use tribune::checks::grpc_wire::{decode_response, fuzzing};
    replay(
        "grpc_health_response",
        fuzzing,
        Some(|data| decode_response(data).is_ok()),
        10,
    );
}

#[test]
fn server_rpc_bodies_corpus() {
    use tribune::raft::rpc::{fuzz_decodes, fuzzing};
    replay("server_rpc_bodies", fuzzing, Some(fuzz_decodes), 8);
}

/// The committed `valid-*` RPC seeds are today's encoding, so a wire change
/// shows up here.
#[test]
fn committed_rpc_seeds_match_the_current_encoding() {
    for (name, bytes) in tribune::raft::rpc::fuzz_seeds() {
        let path = corpus_dir("server_rpc_bodies").join(name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, bytes,
            "{name} differs from today's encoding; after a deliberate wire change, write \
             the bytes of tribune::raft::rpc::fuzz_seeds() to the corpus"
        );
    }
}

//! Replays the `server_rpc_bodies` fuzz corpus on stable Rust: every seed
//! keeps the target's properties; `valid-*` seeds decode as the body type
//! their first byte names, `bad-*` seeds do not. The committed valid seeds
//! are the ones `fuzz_seeds()` makes, so a wire change shows up here.

use std::path::Path;
use tribune::raft::rpc::{fuzz_decodes, fuzz_seeds, fuzzing};

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/server_rpc_bodies")
}

#[test]
fn server_rpc_bodies_corpus() {
    let mut replayed = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("the corpus exists") {
        let path = entry.expect("readable entry").path();
        let data = std::fs::read(&path).expect("readable seed");
        let outcome = std::panic::catch_unwind(|| fuzzing(&data));
        assert!(outcome.is_ok(), "{} breaks a property", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("valid-") {
            assert!(fuzz_decodes(&data), "{name} does not decode");
        } else if name.starts_with("bad-") {
            assert!(!fuzz_decodes(&data), "{name} decodes");
        }
        replayed += 1;
    }
    assert!(replayed >= 8, "only {replayed} seeds");
}

#[test]
fn committed_valid_seeds_match_the_current_encoding() {
    for (name, bytes) in fuzz_seeds() {
        let path = corpus_dir().join(name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, bytes,
            "{name} differs from today's encoding; after a deliberate wire change, write \
             the bytes of tribune::raft::rpc::fuzz_seeds() to the corpus"
        );
    }
}

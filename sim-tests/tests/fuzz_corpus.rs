//! Replays the committed corpus of the cargo-fuzz target `history_jsonl`
//! (`fuzz/corpus/history_jsonl/*`) through the function the target calls,
//! so `cargo test` on stable Rust exercises every seed a fuzzer kept.
//! `valid-*` seeds must pair into a history, `bad-*` seeds must be refused
//! (what `lincheck` answers with exit code 2); other names only must not
//! panic.

use std::path::Path;

#[test]
fn history_jsonl_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/history_jsonl");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "corpus {} holds no seeds", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).expect("readable corpus file");
        let replayed = std::panic::catch_unwind(|| sim_tests::fuzzing::history_jsonl(&data));
        if replayed.is_err() {
            failures.push(format!("{name}: panicked"));
            continue;
        }
        match sim_tests::parse_jsonl(data.as_slice()) {
            Err(e) if name.starts_with("valid-") => failures.push(format!("{name}: refused: {e}")),
            Ok(_) if name.starts_with("bad-") => failures.push(format!("{name}: accepted")),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

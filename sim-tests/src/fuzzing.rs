//! What the cargo-fuzz target `history_jsonl` (fuzz/fuzz_targets/) runs on
//! arbitrary bytes, here so that a plain `cargo test` replays its corpus
//! (tests/fuzz_corpus.rs). `lincheck` reads history files it is handed;
//! whatever they hold, it must answer (exit 2 on a malformed file), never
//! crash.

use crate::history::{parse_event, parse_jsonl, write_jsonl};
use crate::linearizability;

/// Histories up to this many operations are also checked (the search is
/// exponential in the worst case; the fuzzer wants quick runs).
const CHECKED_OPERATIONS_MAX: usize = 32;

/// Parses `data` as a history: each line that parses as an event writes
/// back to a line that parses as the same event; a whole history pairs or
/// is refused, and a small paired one is checked without a panic.
pub fn history_jsonl(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        for (i, line) in text.lines().enumerate() {
            let Ok(event) = parse_event(line, i + 1) else {
                continue;
            };
            let mut written = Vec::new();
            write_jsonl(std::slice::from_ref(&event), &mut written).expect("writes to memory");
            let written = String::from_utf8(written).expect("written as UTF-8");
            let again = parse_event(written.trim_end(), 1);
            assert!(
                again.as_ref().is_ok_and(|again| *again == event),
                "{line:?} wrote back as {written:?}, which parses as {again:?}"
            );
        }
    }
    if let Ok(history) = parse_jsonl(data) {
        if history.operations.len() <= CHECKED_OPERATIONS_MAX {
            let _ = linearizability::check(&history);
        }
    }
}

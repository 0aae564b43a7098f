//! `lincheck HISTORY.jsonl` (or `-` for stdin): checks a JSON-lines history
//! of KV register operations for linearizability.
//!
//! Exit status: 0 linearizable, 1 not linearizable (with an explanation on
//! stdout), 2 unreadable or malformed input, or bad usage (on stderr).
//! The format is documented in the book (`book/src/simulation.md`).

use sim_tests::{linearizability, parse_jsonl, History, HistoryError};
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: lincheck HISTORY.jsonl   (`-` reads standard input)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if path == "-h" || path == "--help" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let history = match read(path) {
        Ok(history) => history,
        Err(error) => {
            eprintln!("lincheck: {path}: {error}");
            return ExitCode::from(2);
        }
    };
    let report = linearizability::check(&history);
    // A closed pipe (`lincheck h.jsonl | head`) is not an error worth a
    // panic; the exit status still carries the verdict.
    let _ = writeln!(io::stdout().lock(), "{}", report.to_string().trim_end());
    if report.is_linearizable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read(path: &str) -> Result<History, HistoryError> {
    if path == "-" {
        return parse_jsonl(io::stdin().lock());
    }
    let file = File::open(path).map_err(HistoryError::Io)?;
    parse_jsonl(BufReader::new(file))
}

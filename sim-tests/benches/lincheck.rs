//! Linearizability checker throughput on generated register histories.
//!
//! `cargo bench -p sim-tests --bench lincheck` prints a markdown table:
//! per workload, the time to parse the history's JSON lines and the time to
//! check it (median of 3 runs, one thread). Histories come from
//! `sim_tests::generate`: 8 processes running operations back to back,
//! latencies up to 100 time units, 40% reads, 35% writes, 15% CAS,
//! 10% deletes, some outcomes unknown (`info`), some of those taking effect
//! up to 2,000 units after their invoke. The rows marked "violating" have
//! one read in the middle of the history changed to a value never written:
//! the time to find and explain the violation.

use sim_tests::generate::{register_history, RegisterWorkload};
use sim_tests::{linearizability, parse_jsonl, write_jsonl, Event, EventType, Function};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
/// `cargo test --benches` runs this binary without `--bench`: then every
/// operation count is divided by this, as a smoke test of the bench code.
const SMOKE_DIVISOR: usize = 100;

fn main() {
    let divisor = if std::env::args().any(|arg| arg == "--bench") {
        1
    } else {
        println!("smoke run with counts / {SMOKE_DIVISOR}; `cargo bench` for figures\n");
        SMOKE_DIVISOR
    };
    println!("| operations | keys | processes | unknown | parse ms | check ms | ops/s checked |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let shapes: [(usize, usize, u64, bool); 9] = [
        (10_000, 100, 2, false),
        (10_000, 10, 2, false),
        (10_000, 1, 2, false),
        (100_000, 100, 2, false),
        (100_000, 10, 2, false),
        (100_000, 10, 10, false),
        (100_000, 1, 2, false),
        (10_000, 10, 2, true),
        (100_000, 10, 2, true),
    ];
    for (operations, keys, unknown_percent, violating) in shapes {
        let workload = RegisterWorkload {
            seed: 42,
            processes: 8,
            keys,
            operations: operations / divisor,
            latency_max: 100,
            unknown_percent,
        };
        let mut events = register_history(&workload);
        if violating {
            corrupt_middle_read(&mut events);
        }
        let mut jsonl = Vec::new();
        write_jsonl(&events, &mut jsonl).expect("writes to memory");
        let mut parse_times = Vec::new();
        let mut check_times = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            let history = parse_jsonl(jsonl.as_slice()).expect("generated histories parse");
            parse_times.push(start.elapsed());
            let start = Instant::now();
            let report = linearizability::check(black_box(&history));
            check_times.push(start.elapsed());
            assert_eq!(report.is_linearizable(), !violating, "{report}");
        }
        let check = median(check_times);
        let label = if violating { " (violating)" } else { "" };
        println!(
            "| {}{label} | {keys} | {} | {unknown_percent}% | {:.1} | {:.1} | {:.0} |",
            workload.operations,
            workload.processes,
            median(parse_times).as_secs_f64() * 1e3,
            check.as_secs_f64() * 1e3,
            workload.operations as f64 / check.as_secs_f64(),
        );
    }
}

fn corrupt_middle_read(events: &mut [Event]) {
    let middle = events.len() / 2;
    let read = events[middle..]
        .iter_mut()
        .find(|e| e.event_type == EventType::Ok && e.f == Function::Read)
        .expect("reads after the middle");
    read.value = Some("never written".to_owned());
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

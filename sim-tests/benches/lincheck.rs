//! Linearizability checker throughput on generated register histories.
//!
//! `cargo bench -p sim-tests --bench lincheck` prints a markdown table:
//! per workload, the time to parse the history's JSON lines and the time to
//! check it (median of 3 runs, one thread). Histories come from
//! `sim_tests::generate`: 8 processes running operations back to back,
//! latencies up to 100 time units, 40% reads, 35% writes, 15% CAS,
//! 10% deletes, some outcomes unknown (`info`), some of those taking effect
//! up to 2,000 units after their invoke.

use sim_tests::generate::{register_history, RegisterWorkload};
use sim_tests::{linearizability, parse_jsonl, write_jsonl};
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
    let shapes: [(usize, usize, u64); 7] = [
        (10_000, 100, 2),
        (10_000, 10, 2),
        (10_000, 1, 2),
        (100_000, 100, 2),
        (100_000, 10, 2),
        (100_000, 10, 10),
        (100_000, 1, 2),
    ];
    for (operations, keys, unknown_percent) in shapes {
        let workload = RegisterWorkload {
            seed: 42,
            processes: 8,
            keys,
            operations: operations / divisor,
            latency_max: 100,
            unknown_percent,
        };
        let mut jsonl = Vec::new();
        write_jsonl(&register_history(&workload), &mut jsonl).expect("writes to memory");
        let mut parse_times = Vec::new();
        let mut check_times = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            let history = parse_jsonl(jsonl.as_slice()).expect("generated histories parse");
            parse_times.push(start.elapsed());
            let start = Instant::now();
            let report = linearizability::check(black_box(&history));
            check_times.push(start.elapsed());
            assert!(report.is_linearizable(), "{report}");
        }
        let check = median(check_times);
        println!(
            "| {} | {keys} | {} | {unknown_percent}% | {:.1} | {:.1} | {:.0} |",
            workload.operations,
            workload.processes,
            median(parse_times).as_secs_f64() * 1e3,
            check.as_secs_f64() * 1e3,
            workload.operations as f64 / check.as_secs_f64(),
        );
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

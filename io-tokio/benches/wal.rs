//! WAL benchmark: fsync'd appends per second and acknowledgement latency
//! with N concurrent appenders of small entries, and how many appends each
//! fdatasync covered (group commit). Run through `bench/wal.sh`, which also
//! runs the etcd anchor on the same disk.
//!
//! Environment: WAL_BENCH_DIR (a directory on the disk to measure; default
//! the system temp dir), WAL_BENCH_SECS (per concurrency, default 10),
//! WAL_BENCH_CONCURRENCY (default "1 16 128"), WAL_BENCH_ENTRY_BYTES (256),
//! WAL_BENCH_SEGMENTS ("preallocated growing": each concurrency runs with
//! preallocated segment files, the default, and with files that grow as
//! written, back to back, for an A/B in one sitting).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tribune::storage::{Entry, Wal, WalConfig};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[rank]) / 1000.0
}

/// The disk's own floor: one writer, 256-byte write + fdatasync, in a loop.
fn raw_fdatasync_per_second(dir: &Path, seconds: u64) -> f64 {
    let path = dir.join(format!("tribune-raw-fdatasync-{}", std::process::id()));
    let mut file = File::create(&path).unwrap();
    let block = [7u8; 256];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    rate
}

struct Row {
    appenders: usize,
    appends_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    appends_per_fsync: f64,
    fdatasync_ms_mean: f64,
}

fn run(dir: &Path, appenders: usize, seconds: u64, entry_bytes: usize, preallocate: bool) -> Row {
    let _ = std::fs::remove_dir_all(dir);
    let wal = Wal::open(WalConfig {
        preallocate,
        ..WalConfig::new(dir)
    })
    .unwrap();
    let next = Mutex::new(1u64);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut latencies_us: Vec<u32> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..appenders)
            .map(|_| {
                scope.spawn(|| {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        let pending = {
                            let mut next = next.lock().unwrap();
                            let entry = Entry {
                                index: *next,
                                payload: vec![0x5a; entry_bytes],
                            };
                            *next += 1;
                            wal.append(vec![entry])
                        };
                        pending.wait().unwrap();
                        latencies.push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    latencies
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let stats = wal.stats();
    drop(wal);
    let _ = std::fs::remove_dir_all(dir);
    Row {
        appenders,
        appends_per_second: latencies_us.len() as f64 / elapsed,
        p50_ms: percentile(&latencies_us, 0.50),
        p99_ms: percentile(&latencies_us, 0.99),
        appends_per_fsync: stats.records as f64 / stats.batches.max(1) as f64,
        fdatasync_ms_mean: stats.fdatasync_micros as f64 / 1000.0 / stats.batches.max(1) as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = PathBuf::from(env_or(
        "WAL_BENCH_DIR",
        &std::env::temp_dir().to_string_lossy(),
    ));
    let seconds: u64 = env_or("WAL_BENCH_SECS", "10").parse().unwrap();
    let entry_bytes: usize = env_or("WAL_BENCH_ENTRY_BYTES", "256").parse().unwrap();
    let concurrency = env_or("WAL_BENCH_CONCURRENCY", "1 16 128");
    let dir = base.join(format!("tribune-wal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    // The disk is shared with other work, so its fdatasync rate drifts:
    // measure the raw rate right before each row.
    let segments = env_or("WAL_BENCH_SEGMENTS", "preallocated growing");
    println!(
        "| appenders | segments | appends/s | p50 ack (ms) | p99 ack (ms) | appends per fdatasync \
         | mean fdatasync (ms) | raw fdatasync/s just before |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for appenders in concurrency.split_whitespace() {
        for kind in segments.split_whitespace() {
            let preallocate = match kind {
                "preallocated" => true,
                "growing" => false,
                other => panic!("WAL_BENCH_SEGMENTS: {other:?} is not preallocated or growing"),
            };
            let raw = raw_fdatasync_per_second(&base, 3);
            let row = run(
                &dir,
                appenders.parse().unwrap(),
                seconds,
                entry_bytes,
                preallocate,
            );
            print_row(&row, kind, raw);
        }
    }
}

fn print_row(row: &Row, kind: &str, raw: f64) {
    println!(
        "| {} | {kind} | {:.0} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} |",
        row.appenders,
        row.appends_per_second,
        row.p50_ms,
        row.p99_ms,
        row.appends_per_fsync,
        row.fdatasync_ms_mean,
        raw
    );
}

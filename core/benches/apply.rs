//! FSM benchmarks: apply throughput, memory per key, watch fire cost.
//!
//! `cargo bench -p tribune-core --bench apply` prints markdown tables.
//!
//! Memory is the process's resident set (`VmRSS`) growth while one fresh
//! child process inserts N keys, so it counts what the allocator really
//! takes (chunk headers, rounding, B-tree slack). A counting
//! `#[global_allocator]` would need `unsafe impl GlobalAlloc`, which the
//! workspace's `unsafe_code = "forbid"` refuses for every target. The
//! in-memory layout sizes are printed beside it to explain the figure.

// Benches measure wall time and process memory by design.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::mem::size_of;
use std::time::Instant;
use tribune_core::command::{Command, KvOp, KvVerb};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::kv::KvEntry;
use tribune_core::watch::{WatchKey, WatchTarget, Watches};

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const PAYLOAD_BYTES: usize = KEY_BYTES + VALUE_BYTES;
const APPLIES: u64 = 1_000_000;
const KEY_SPACE: u64 = 100_000;
const DISTINCT_KEYS: u64 = 1_000_000;
const PREFIX_WATCHERS: usize = 10_000;
const FIRES: u64 = 200_000;
const RUNS: usize = 3;
const CHILD_FLAG: &str = "--child-memory";
/// `cargo test --benches` runs this binary without `--bench`: then every
/// count is divided by this, as a smoke test of the bench code.
const SMOKE_DIVISOR: u64 = 1000;

/// Key number `i` as exactly 16 bytes: `k/` + 14 hex digits.
fn write_key(out: &mut String, i: u64) {
    use std::fmt::Write;
    out.clear();
    write!(out, "k/{i:014x}").expect("writing to a String cannot fail");
    debug_assert_eq!(out.len(), KEY_BYTES);
}

/// A bijection on 0..2^56 that scatters consecutive numbers, so inserts
/// land all over the B-tree as real keys would.
fn scatter(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 56) - 1)
}

/// One reusable Set command: only its key and first value byte change, so
/// the loop allocates nothing the store does not keep.
struct Writer {
    fsm: Fsm,
    cmd: Command,
    fx: Effects,
    index: u64,
}

impl Writer {
    fn new() -> Writer {
        let op = KvOp {
            value: vec![b'v'; VALUE_BYTES],
            ..KvOp::new(KvVerb::Set, String::with_capacity(KEY_BYTES))
        };
        Writer {
            fsm: Fsm::default(),
            cmd: Command::Kv(op),
            fx: Effects::default(),
            index: 0,
        }
    }

    fn set(&mut self, key_number: u64) {
        if let Command::Kv(op) = &mut self.cmd {
            write_key(&mut op.key, key_number);
            op.value[0] = self.index as u8;
        }
        self.index += 1;
        black_box(self.fsm.apply(self.index, &self.cmd, &mut self.fx));
        self.fx.clear();
    }
}

/// A throughput bench: returns applies per second.
type RateBench = fn(u64) -> f64;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Applies per second: 1M sets over a pre-filled 100k-key space.
fn overwrite_rate(divisor: u64) -> f64 {
    let (applies, key_space) = (APPLIES / divisor, KEY_SPACE / divisor);
    let mut w = Writer::new();
    for i in 0..key_space {
        w.set(scatter(i));
    }
    let start = Instant::now();
    for i in 0..applies {
        w.set(scatter(scatter(i) % key_space));
    }
    applies as f64 / start.elapsed().as_secs_f64()
}

/// Applies per second: 1M sets of distinct keys into an empty store.
fn insert_rate(divisor: u64) -> f64 {
    let keys = DISTINCT_KEYS / divisor;
    let mut w = Writer::new();
    let start = Instant::now();
    for i in 0..keys {
        w.set(scatter(i));
    }
    let rate = keys as f64 / start.elapsed().as_secs_f64();
    assert_eq!(w.fsm.kv.len() as u64, keys);
    rate
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    kib.map_or(0, |k| k * 1024)
}

/// Child process body: resident bytes per key after N inserts.
fn child_memory(layout: &str, keys: u64) -> f64 {
    let order: fn(u64) -> u64 = if layout.ends_with("sequential") {
        |i| i
    } else {
        scatter
    };
    if layout.starts_with("btreemap") {
        // The floor for an ordered map of these keys: no entry metadata.
        let mut map = std::collections::BTreeMap::<Box<str>, Box<[u8]>>::new();
        let mut key = String::new();
        let value = vec![b'v'; VALUE_BYTES];
        let before = resident_bytes();
        for i in 0..keys {
            write_key(&mut key, order(i));
            map.insert(key.as_str().into(), value.as_slice().into());
        }
        let after = resident_bytes();
        black_box(&map);
        return (after - before) as f64 / keys as f64;
    }
    let mut w = Writer::new();
    w.set(u64::MAX >> 8);
    let before = resident_bytes();
    for i in 0..keys {
        w.set(order(i));
    }
    let after = resident_bytes();
    black_box(&w.fsm);
    (after - before) as f64 / keys as f64
}

/// Runs [`child_memory`] in a fresh process so earlier benches' freed heap
/// cannot hide growth.
fn memory_per_key(layout: &str, divisor: u64) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let keys = (DISTINCT_KEYS / divisor).to_string();
    let out = std::process::Command::new(exe)
        .args([CHILD_FLAG, layout, &keys])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Nanoseconds per `Watches::fire` of one touched key with 10k prefix
/// watchers registered, for a key no watcher covers and one a watcher does
/// (which is then re-registered, as a blocking query would).
fn fire_cost(divisor: u64) -> (f64, f64, f64) {
    let fires = FIRES / divisor;
    let mut watches = Watches::default();
    for i in 0..PREFIX_WATCHERS {
        let prefix = format!("svc/{i:05}/");
        watches
            .register(vec![WatchTarget::KvPrefix(prefix)])
            .expect("below the waiter bound");
    }
    let miss = [WatchKey::Kv("other/0000000001".to_string())];
    let start = Instant::now();
    for _ in 0..fires {
        black_box(watches.fire(&miss));
    }
    let miss_ns = start.elapsed().as_nanos() as f64 / fires as f64;

    let hit = [WatchKey::Kv("svc/00042/config".to_string())];
    let again = || vec![WatchTarget::KvPrefix("svc/00042/".to_string())];
    let start = Instant::now();
    for _ in 0..fires {
        let woken = watches.fire(&hit);
        assert_eq!(woken.len(), 1);
        watches.register(again()).expect("room");
    }
    let hit_ns = start.elapsed().as_nanos() as f64 / fires as f64;

    let mut empty = Watches::default();
    empty
        .register(vec![WatchTarget::KvKey("unrelated".to_string())])
        .expect("room");
    let start = Instant::now();
    for _ in 0..fires {
        black_box(empty.fire(&miss));
    }
    let no_prefix_ns = start.elapsed().as_nanos() as f64 / fires as f64;
    (miss_ns, hit_ns, no_prefix_ns)
}

/// `Fsm::snapshot` and `Fsm::restore` of a store of `keys` values of
/// `value_bytes` each: (snapshot MB/s, restore MB/s, snapshot bytes).
fn snapshot_rate(keys: u64, value_bytes: usize) -> (f64, f64, usize) {
    let mut fsm = Fsm::default();
    let mut fx = Effects::default();
    let mut op = KvOp {
        value: vec![b'v'; value_bytes],
        ..KvOp::new(KvVerb::Set, String::new())
    };
    for i in 0..keys {
        write_key(&mut op.key, scatter(i));
        op.value[0] = i as u8;
        let cmd = Command::Kv(op.clone());
        black_box(fsm.apply(i + 1, &cmd, &mut fx));
        fx.clear();
    }
    let mut encode = Vec::new();
    let mut decode = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        bytes = black_box(fsm.snapshot());
        encode.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let restored = Fsm::restore(&bytes).expect("own snapshot restores");
        decode.push(start.elapsed().as_secs_f64());
        assert_eq!(restored.kv.len(), fsm.kv.len());
    }
    let mb = bytes.len() as f64 / 1e6;
    (mb / median(encode), mb / median(decode), bytes.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == CHILD_FLAG) {
        let layout = args.get(at + 1).map_or("fsm-random", String::as_str);
        let keys = args.get(at + 2).and_then(|n| n.parse().ok());
        println!("{}", child_memory(layout, keys.unwrap_or(DISTINCT_KEYS)));
        return;
    }
    let divisor = if args.iter().any(|a| a == "--bench") {
        1
    } else {
        println!("smoke run with counts / {SMOKE_DIVISOR}; `cargo bench` for figures\n");
        SMOKE_DIVISOR
    };

    println!("## Fsm::apply throughput (KV set, 16 B keys, 100 B values, 1 core)\n");
    println!("| workload | applies/s | ns/apply |");
    println!("|---|---:|---:|");
    let workloads: [(&str, RateBench); 2] = [
        ("1M sets over a pre-filled 100k-key space", overwrite_rate),
        ("1M sets of distinct keys (inserts)", insert_rate),
    ];
    for (name, bench) in workloads {
        let rate = median((0..RUNS).map(|_| bench(divisor)).collect());
        println!("| {name} | {rate:.0} | {:.0} |", 1e9 / rate);
    }

    println!("\n## Memory per key (N = 1,000,000; RSS growth in a fresh process)\n");
    println!("| store, insert order | bytes/key | payload | overhead/key |");
    println!("|---|---:|---:|---:|");
    let layouts = [
        ("Fsm KV, scattered keys", "fsm-random"),
        ("Fsm KV, ascending keys", "fsm-sequential"),
        (
            "bare BTreeMap<Box<str>, Box<[u8]>>, scattered",
            "btreemap-random",
        ),
    ];
    for (name, layout) in layouts {
        match memory_per_key(layout, divisor) {
            Some(per_key) => println!(
                "| {name} | {per_key:.1} | {PAYLOAD_BYTES} | {:.1} |",
                per_key - PAYLOAD_BYTES as f64
            ),
            None => println!("| {name} | n/a | {PAYLOAD_BYTES} | n/a |"),
        }
    }
    let slot = size_of::<tribune_core::kv_key::KvKey>() + size_of::<KvEntry>();
    println!(
        "\nLayout: size_of KvEntry = {} B (Option<SessionId> = {} B), B-tree slot \
         (KvKey, inline up to 22 B, + KvEntry) = {slot} B, leaf of 11 slots ≈ {} B.",
        size_of::<KvEntry>(),
        size_of::<Option<tribune_core::ids::SessionId>>(),
        11 * slot + 16,
    );

    println!("\n## Fsm::snapshot / Fsm::restore (KV only, 16 B keys)\n");
    println!("| store | snapshot bytes | snapshot MB/s | restore MB/s |");
    println!("|---|---:|---:|---:|");
    for (keys, value_bytes) in [(1_000_000 / divisor, 100), (20_000 / divisor, 10_240)] {
        let (encode, decode, bytes) = snapshot_rate(keys.max(1), value_bytes);
        println!("| {keys} keys × {value_bytes} B values | {bytes} | {encode:.0} | {decode:.0} |");
    }

    let (miss_ns, hit_ns, no_prefix_ns) = fire_cost(divisor);
    println!("\n## Watches::fire, one touched key\n");
    println!("| registered waiters | touched key | ns/fire |");
    println!("|---|---|---:|");
    println!("| {PREFIX_WATCHERS} prefix watchers | matches none | {miss_ns:.0} |");
    println!("| {PREFIX_WATCHERS} prefix watchers | matches one (re-registered) | {hit_ns:.0} |");
    println!("| 1 key watcher, no prefix watchers | matches none | {no_prefix_ns:.0} |");
}

//! Gossip benchmark: CPU time per simulated member-second of the full
//! SWIM + Lifeguard state machines in the virtual network
//! ([`tribune_core::gossip::sim`]), over the first simulated minute (joins
//! included: every member learns every alive message) and over a second,
//! steady-state minute.
//!
//! `cargo bench -p tribune-core --bench gossip` (N = 20, 100, 200, 500).
//!
//! Then convergence after joins in virtual time, as the serf anchor
//! measures it on real processes: members carrying Consul's client tags
//! join member 0 one after another (one join every 13 ms), and the table
//! gives the virtual time from the last join until every member lists every
//! other alive, with packets filled by their compressed size (tribune) and
//! to 1,400 bytes uncompressed (memberlist's rule, `enable_compression`
//! off here: the packing is the same, and compression does not change what
//! fits in that case).

// Benches measure wall time by design.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;
use tribune_core::gossip::serf::encode_tags;
use tribune_core::gossip::sim::{consul_client_tags, NetConfig, Sim};
use tribune_core::gossip::Config;
use tribune_core::time::Duration;

fn cpu_per_member_second(n: usize) {
    let config = Config::lan();
    let mut sim = Sim::new(n, &config, NetConfig::default(), 99);
    for i in 1..n {
        sim.join(i, 0);
    }
    sim.check_invariants = false;
    let minute = Duration::from_secs(60);
    for phase in ["join+first minute", "steady minute"] {
        let steps = sim.steps;
        let wall = Instant::now();
        sim.run_for(minute);
        let elapsed = wall.elapsed();
        let per_us = elapsed.as_nanos() as f64 / 1000.0 / (n as f64 * minute.as_secs() as f64);
        println!(
            "| {n} | {phase} | {per_us:.1} | {} | {elapsed:.2?} |",
            sim.steps - steps
        );
    }
    assert!(
        sim.all_see_alive(&(0..n).collect::<Vec<_>>()),
        "N={n} did not converge"
    );
}

/// Virtual seconds from the last of `n - 1` sequential joins until every
/// member sees all `n` alive.
fn convergence_after_joins(n: usize, compress: bool, seed: u64) -> f64 {
    let config = Config {
        enable_compression: compress,
        ..Config::lan()
    };
    let mut sim = Sim::new(n, &config, NetConfig::default(), seed);
    sim.check_invariants = false;
    for i in 0..n {
        let meta = encode_tags(&consul_client_tags(i)).expect("tags fit");
        sim.with_node(i, |list, now| list.update_meta(now, meta).expect("meta"));
    }
    for i in 1..n {
        sim.join(i, 0);
        sim.run_for(Duration::from_millis(13));
    }
    let all: Vec<usize> = (0..n).collect();
    let took = sim
        .run_until_true(Duration::from_millis(10), Duration::from_secs(120), |s| {
            s.all_see_alive(&all)
        })
        .expect("converged");
    took.as_nanos() as f64 / 1e9
}

fn main() {
    println!("| N | phase | µs CPU per simulated member-second | steps | wall |");
    println!("|---:|---|---:|---:|---:|");
    for n in [20, 100, 200, 500] {
        cpu_per_member_second(n);
    }
    println!();
    println!("| N | converge after the last join, compressed fill (s) | uncompressed fill (s) |");
    println!("|---:|---|---|");
    for n in [10, 30, 60, 120] {
        let mut cells = Vec::new();
        for compress in [true, false] {
            let mut runs: Vec<f64> = (0..5)
                .map(|seed| convergence_after_joins(n, compress, 7 + seed))
                .collect();
            runs.sort_by(f64::total_cmp);
            let shown: Vec<String> = runs.iter().map(|t| format!("{t:.2}")).collect();
            cells.push(format!("median {:.2} ({})", runs[2], shown.join(", ")));
        }
        println!("| {n} | {} | {} |", cells[0], cells[1]);
    }
}

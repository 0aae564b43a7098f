//! Gossip benchmark: CPU time per simulated member-second of the full
//! SWIM + Lifeguard state machines in the virtual network
//! ([`tribune_core::gossip::sim`]), over the first simulated minute (joins
//! included: every member learns every alive message) and over a second,
//! steady-state minute.
//!
//! `cargo bench -p tribune-core --bench gossip` (N = 20, 100, 200, 500).

// Benches measure wall time by design.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;
use tribune_core::gossip::sim::{NetConfig, Sim};
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

fn main() {
    println!("| N | phase | µs CPU per simulated member-second | steps | wall |");
    println!("|---:|---|---:|---:|---:|");
    for n in [20, 100, 200, 500] {
        cpu_per_member_second(n);
    }
}

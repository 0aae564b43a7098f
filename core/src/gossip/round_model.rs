//! An idealized round model of dissemination, in the spirit of
//! memberlist's convergence simulator: every member knows every other; in
//! each gossip round every member that still has the broadcast queued
//! sends one packet to each of `gossip_nodes` random members, drawing from
//! the real [`BroadcastQueue`] so the retransmit limit
//! (`retransmit_mult * ceil(log10(n + 1))`) applies exactly; packets are
//! lost with a given probability; receivers queue what is new to them.
//! Piggybacking on probes is ignored, so real clusters are faster.

use super::broadcast::BroadcastQueue;
use super::config::retransmit_limit;
use super::message::Message;
use super::Config;
use crate::rng::Rng;

/// Rounds until no one has the broadcast queued, and how many members got it.
struct Outcome {
    rounds_to_all: Option<u32>,
    rounds_until_quiet: u32,
    reached: usize,
}

fn disseminate(n: usize, config: &Config, loss_ppm: u64, seed: u64) -> Outcome {
    let mut rng = Rng::from_seed(seed);
    let mut queues: Vec<BroadcastQueue> = (0..n).map(|_| BroadcastQueue::new()).collect();
    let mut has = vec![false; n];
    has[0] = true;
    queues[0].queue(Some("event".into()), Message::User(vec![1; 32]), None);
    let mut reached = 1;
    let mut active: Vec<usize> = vec![0];
    let (mut round, mut rounds_to_all) = (0u32, None);
    let budget = config.packet_budget_bytes();
    while !active.is_empty() {
        round += 1;
        let mut received = Vec::new();
        for &sender in &active {
            for _ in 0..config.gossip_nodes {
                let target = loop {
                    let t = rng.below(n as u64) as usize;
                    if t != sender {
                        break t;
                    }
                };
                let sent = queues[sender].get_broadcasts(2, budget, config.retransmit_mult, n);
                if sent.is_empty() {
                    break;
                }
                if rng.below(1_000_000) >= loss_ppm {
                    received.push(target);
                }
            }
        }
        for target in received {
            if !has[target] {
                has[target] = true;
                reached += 1;
                queues[target].queue(Some("event".into()), Message::User(vec![1; 32]), None);
            }
        }
        if reached == n && rounds_to_all.is_none() {
            rounds_to_all = Some(round);
        }
        active = (0..n).filter(|&i| !queues[i].is_empty()).collect();
    }
    Outcome {
        rounds_to_all,
        rounds_until_quiet: round,
        reached,
    }
}

const RUNS: u64 = 3;

#[test]
fn gossip_figures_dissemination_rounds_grow_logarithmically() {
    let config = Config::lan();
    let mut worst_rounds = Vec::new();
    for n in [1_000usize, 10_000] {
        for loss_ppm in [0u64, 100_000] {
            let mut rounds = Vec::new();
            let mut reached_all = 0;
            for seed in 0..RUNS {
                let out = disseminate(n, &config, loss_ppm, seed);
                rounds.push(out.rounds_to_all.unwrap_or(u32::MAX));
                reached_all += usize::from(out.reached == n);
                assert!(out.rounds_until_quiet >= out.rounds_to_all.unwrap_or(0));
            }
            println!(
                "gossip figures: round model N={n} fanout={} retransmit limit={} loss={}%: rounds to reach all {:?} ({}/{RUNS} runs reached all; {:.1}s at {}ms/round)",
                config.gossip_nodes,
                retransmit_limit(config.retransmit_mult, n),
                loss_ppm / 10_000,
                rounds,
                reached_all,
                f64::from(*rounds.iter().max().unwrap_or(&0)) * config.gossip_interval.as_millis() as f64 / 1000.0,
                config.gossip_interval.as_millis(),
            );
            assert_eq!(reached_all, RUNS as usize, "every run reaches every member");
            if loss_ppm == 0 {
                worst_rounds.push(*rounds.iter().max().unwrap_or(&0));
            }
        }
    }
    // O(log n): each size stays within twice log_{fanout+1}(n) rounds, and
    // ten times the members adds a few rounds, not a factor.
    let log_base = (config.gossip_nodes as f64 + 1.0).ln();
    for (n, rounds) in [(1_000f64, worst_rounds[0]), (10_000f64, worst_rounds[1])] {
        assert!(
            f64::from(rounds) <= 2.0 * (n.ln() / log_base).ceil(),
            "{n}: {rounds}"
        );
    }
    assert!(worst_rounds[1] <= worst_rounds[0] + 5, "{worst_rounds:?}");
}

//! Cluster properties in the virtual network: convergence, failure
//! detection within the configured bound, Lifeguard keeping a slow member
//! alive, loss tolerance, graceful leave and restart, determinism.

use super::config::push_pull_scale;
use super::message::NodeState;
use super::sim::{NetConfig, Sim};
use super::swim::MemberEvent;
use super::Config;
use crate::time::{Duration, Instant};

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// `n` members that each join node 0 at time zero.
fn joined(n: usize, config: &Config, net: NetConfig, seed: u64) -> Sim {
    let mut sim = Sim::new(n, config, net, seed);
    for i in 1..n {
        sim.join(i, 0);
    }
    sim
}

/// The longest convergence we accept after joins: one (scaled) push/pull
/// interval, which alone guarantees every pair has met through node 0,
/// plus a few seconds of gossip.
fn convergence_bound(config: &Config, n: usize) -> Duration {
    Duration(push_pull_scale(config.push_pull_interval, n).0 + Duration::from_secs(10).0)
}

fn leaves_about(sim: &Sim, observer: usize, name: &str) -> Vec<NodeState> {
    sim.nodes[observer]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            MemberEvent::Leave(m) if m.name == name => Some(m.state),
            _ => None,
        })
        .collect()
}

fn converges(n: usize, seed: u64) -> Duration {
    let config = Config::lan();
    let mut sim = joined(n, &config, NetConfig::default(), seed);
    let took = sim
        .run_until_true(
            Duration::from_millis(100),
            convergence_bound(&config, n),
            |s| s.all_see_alive(&all(n)),
        )
        .unwrap_or_else(|| panic!("{n} members did not converge"));
    // Keep running: a healthy lossless cluster never declares anyone dead.
    sim.run_for(Duration::from_secs(20));
    assert!(sim.all_see_alive(&all(n)));
    for node in &sim.nodes {
        assert_eq!(node.list.stats().suspicion_timeouts, 0, "{}", node.name);
        assert!(node
            .events
            .iter()
            .all(|(_, e)| !matches!(e, MemberEvent::Leave(_))));
    }
    took
}

#[test]
fn gossip_cluster_of_5_converges() {
    converges(5, 1);
}

#[test]
fn gossip_cluster_of_20_converges() {
    converges(20, 2);
}

#[test]
fn gossip_cluster_of_50_converges() {
    converges(50, 3);
}

#[test]
fn gossip_cluster_of_100_converges() {
    converges(100, 4);
}

/// Run with `cargo test -p tribune-core --release gossip_cluster_of_200 -- --ignored`.
#[test]
#[ignore = "large cluster: run in release"]
fn gossip_cluster_of_200_converges_release() {
    converges(200, 5);
}

#[test]
fn gossip_stopped_member_is_declared_dead_by_all_within_the_bound() {
    let config = Config::lan();
    let n = 20;
    let mut sim = joined(n, &config, NetConfig::default(), 11);
    sim.run_until_true(
        Duration::from_millis(100),
        convergence_bound(&config, n),
        |s| s.all_see_alive(&all(n)),
    )
    .expect("converged");
    let victim = 7;
    let victim_name = sim.nodes[victim].name.clone();
    sim.nodes[victim].down = true;
    let stopped_at = sim.now;
    let rest: Vec<usize> = all(n).into_iter().filter(|&i| i != victim).collect();
    let bound = config.detection_bound(n);
    let took = sim
        .run_until_true(Duration::from_millis(100), bound, |s| {
            rest.iter().all(|&i| {
                s.nodes[i].list.member(&victim_name).map(|m| m.state) == Some(NodeState::Dead)
            })
        })
        .unwrap_or_else(|| panic!("not all declared {victim_name} dead within {bound:?}"));
    assert!(took <= bound);
    // Everybody else stays alive, and nobody but the victim was ever
    // reported gone.
    sim.run_for(Duration::from_secs(10));
    assert!(sim.all_see_alive(&rest));
    for &i in &rest {
        assert_eq!(leaves_about(&sim, i, &victim_name), vec![NodeState::Dead]);
        let others = sim.nodes[i]
            .events
            .iter()
            .filter(|(t, e)| {
                *t >= stopped_at && matches!(e, MemberEvent::Leave(m) if m.name != victim_name)
            })
            .count();
        assert_eq!(others, 0);
    }
    println!("gossip figures: stopped member of {n} declared dead by all after {took:?} (bound {bound:?})");
}

fn deaths_seen(sim: &Sim, observer: usize, of: Option<&str>) -> Vec<(Instant, String)> {
    sim.nodes[observer]
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            MemberEvent::Leave(m) if of.is_none_or(|name| m.name == name) => {
                Some((*t, m.name.clone()))
            }
            _ => None,
        })
        .collect()
}

/// What a slow-member run saw.
struct SlowRun {
    /// Deaths of healthy members reported by anyone.
    healthy_deaths: usize,
    /// Deaths of the slow member reported by anyone.
    slow_deaths: usize,
    max_health: u32,
    refutations: u64,
    /// Probes the slow member failed, i.e. accusations it started.
    slow_probe_failures: u64,
    /// Everyone sees everyone alive at the end of the slow phase.
    alive_at_end: bool,
}

/// A slow member: everything it sends leaves `out_delay` late, for two
/// simulated minutes; then it recovers for thirty seconds.
fn slow_member_run(config: &Config, out_delay: Duration, seed: u64) -> SlowRun {
    let n = 10;
    let mut sim = joined(n, config, NetConfig::default(), seed);
    sim.run_until_true(
        Duration::from_millis(100),
        convergence_bound(config, n),
        |s| s.all_see_alive(&all(n)),
    )
    .expect("converged");
    let slow = 3;
    let slow_name = sim.nodes[slow].name.clone();
    sim.nodes[slow].out_delay = out_delay;
    let mut max_health = 0;
    for _ in 0..120 {
        sim.run_for(Duration::from_secs(1));
        max_health = max_health.max(sim.nodes[slow].list.health_score());
    }
    let alive_at_end = sim.all_see_alive(&all(n));
    let mut healthy_deaths = 0;
    let mut slow_deaths = 0;
    for i in 0..n {
        for (_, name) in deaths_seen(&sim, i, None) {
            if name == slow_name {
                slow_deaths += 1;
            } else {
                healthy_deaths += 1;
            }
        }
    }
    let stats = sim.nodes[slow].list.stats().clone();
    // Healed, the slow member is back everywhere, whatever happened.
    sim.nodes[slow].out_delay = Duration::ZERO;
    sim.run_for(Duration::from_secs(30));
    assert!(sim.all_see_alive(&all(n)), "recovered after the slow phase");
    SlowRun {
        healthy_deaths,
        slow_deaths,
        max_health,
        refutations: stats.refutations,
        slow_probe_failures: stats.probes_failed,
        alive_at_end,
    }
}

/// Replies later than the probe timeout but within the probe interval:
/// memberlist keeps listening for the direct ack until the interval ends,
/// so the slow member is never declared dead (nor anyone else), with or
/// without the TCP fallback.
#[test]
fn gossip_slow_member_within_the_probe_interval_is_not_declared_dead() {
    let config = Config::lan();
    let delay = Duration(config.probe_timeout.0 + Duration::from_millis(300).0);
    assert!(config.probe_timeout < delay && delay < config.probe_interval);
    for (tcp, seed) in [(true, 21), (false, 22)] {
        let config = Config {
            disable_tcp_pings: !tcp,
            ..config.clone()
        };
        let run = slow_member_run(&config, delay, seed);
        assert_eq!((run.healthy_deaths, run.slow_deaths), (0, 0), "tcp {tcp}");
        assert!(run.alive_at_end);
    }
}

/// Outgoing packets later than a whole probe interval: the slow member's
/// own probes fail (it accuses healthy peers) and its answers miss every
/// prober's deadline (it is suspected over and over and must refute).
/// Lifeguard raises its health score so it probes, and accuses, less
/// often than it would without Lifeguard; the healthy members refute its
/// accusations and none of them is ever declared dead.
#[test]
fn gossip_slow_member_beyond_the_probe_interval_cannot_kill_healthy_members() {
    let lan = Config::lan();
    let delay = Duration(lan.probe_interval.0 + lan.probe_timeout.0 / 2);
    let lifeguard = slow_member_run(&lan, delay, 23);
    let without = Config {
        awareness_max_multiplier: 1,
        ..lan.clone()
    };
    let plain = slow_member_run(&without, delay, 23);
    println!(
        "gossip figures: slow member (+{delay:?}): lifeguard {} accusations, health max {}, {} refutations, {} deaths of it; without lifeguard {} accusations, {} deaths of it",
        lifeguard.slow_probe_failures,
        lifeguard.max_health,
        lifeguard.refutations,
        lifeguard.slow_deaths,
        plain.slow_probe_failures,
        plain.slow_deaths
    );
    assert_eq!(lifeguard.healthy_deaths, 0);
    assert!(lifeguard.max_health > 0, "Lifeguard engaged");
    assert!(
        lifeguard.refutations > 0,
        "the slow member refuted suspicions of itself"
    );
    assert!(
        lifeguard.slow_probe_failures * 2 < plain.slow_probe_failures,
        "Lifeguard halves the slow member's false accusations"
    );
}

#[test]
fn gossip_ten_percent_loss_converges_and_user_broadcasts_reach_all() {
    let config = Config::lan();
    let n = 20;
    let net = NetConfig {
        loss_ppm: 100_000,
        ..NetConfig::default()
    };
    let mut sim = joined(n, &config, net, 31);
    sim.rebroadcast_user_messages = true;
    sim.run_until_true(
        Duration::from_millis(100),
        convergence_bound(&config, n),
        |s| s.all_see_alive(&all(n)),
    )
    .expect("converged under loss");
    let payloads: Vec<Vec<u8>> = (0..5).map(|k| format!("event-{k}").into_bytes()).collect();
    for (k, payload) in payloads.iter().enumerate() {
        let origin = k * 4;
        let p = payload.clone();
        sim.with_node(origin, |list, _| list.send_user_broadcast(p).expect("fits"));
        sim.mark_seen(origin, payload);
    }
    let took = sim
        .run_until_true(Duration::from_millis(100), Duration::from_secs(30), |s| {
            s.nodes.iter().enumerate().all(|(i, node)| {
                payloads
                    .iter()
                    .enumerate()
                    .all(|(k, p)| k * 4 == i || node.user_messages.contains(p))
            })
        })
        .expect("every user broadcast reached every member");
    sim.run_for(Duration::from_secs(30));
    assert!(sim.all_see_alive(&all(n)), "still converged under loss");
    println!(
        "gossip figures: 5 user broadcasts reached all {n} members under 10% loss in {took:?}"
    );
}

#[test]
fn gossip_graceful_leave_shows_left_and_a_restart_comes_back() {
    let config = Config::lan();
    let n = 10;
    let mut sim = joined(n, &config, NetConfig::default(), 41);
    sim.run_until_true(
        Duration::from_millis(100),
        convergence_bound(&config, n),
        |s| s.all_see_alive(&all(n)),
    )
    .expect("converged");
    let leaver = 4;
    let name = sim.nodes[leaver].name.clone();
    let old_incarnation = sim.nodes[leaver].list.incarnation();
    sim.with_node(leaver, |list, now| list.leave(now, Duration::from_secs(5)));
    let rest: Vec<usize> = all(n).into_iter().filter(|&i| i != leaver).collect();
    sim.run_until_true(Duration::from_millis(100), Duration::from_secs(10), |s| {
        s.nodes[leaver].leave_finished.is_some()
            && rest
                .iter()
                .all(|&i| s.nodes[i].list.member(&name).map(|m| m.state) == Some(NodeState::Left))
    })
    .expect("leave spread");
    assert!(matches!(sim.nodes[leaver].leave_finished, Some((_, true))));
    for &i in &rest {
        assert_eq!(leaves_about(&sim, i, &name), vec![NodeState::Left]);
    }
    // The process stops, then a new one with the same name starts at
    // incarnation 1 and joins: it learns it was left and refutes upward.
    sim.nodes[leaver].down = true;
    sim.run_for(Duration::from_secs(5));
    sim.restart(leaver, &config);
    sim.join(leaver, 0);
    sim.run_until_true(Duration::from_millis(100), Duration::from_secs(10), |s| {
        s.all_see_alive(&all(n))
    })
    .expect("restarted member alive everywhere");
    let new_incarnation = sim.nodes[leaver].list.incarnation();
    assert!(new_incarnation > old_incarnation);
    for &i in &rest {
        assert_eq!(
            sim.nodes[i].list.member(&name).unwrap().incarnation,
            new_incarnation
        );
        let rejoined = sim.nodes[i]
            .events
            .iter()
            .any(|(_, e)| matches!(e, MemberEvent::Join(m) if m.name == name));
        assert!(rejoined);
    }
}

fn traced_run(seed: u64) -> (u64, u64) {
    let config = Config::lan();
    let net = NetConfig {
        loss_ppm: 50_000,
        ..NetConfig::default()
    };
    let mut sim = Sim::new(20, &config, net, seed);
    sim.tracing = true;
    for i in 1..20 {
        sim.join(i, 0);
    }
    sim.run_for(Duration::from_secs(20));
    sim.nodes[5].down = true;
    sim.run_for(Duration::from_secs(40));
    (sim.trace, sim.steps)
}

#[test]
fn gossip_same_seed_same_trace() {
    let first = traced_run(77);
    assert_eq!(first, traced_run(77));
    assert_ne!(first.0, traced_run(78).0);
}

/// Sixty members join one after another, 13 ms apart (as the serf
/// anchor's joins come): one who joined just before others could miss
/// their alive messages, gossiped while it was still unknown to most of
/// the pool, and waited for a later repair (6.4 s at seed 8). The
/// push/pull a probe interval after each join closes that tail.
#[test]
fn gossip_members_joining_together_all_meet_within_two_seconds() {
    let config = Config::lan();
    let n = 60;
    for seed in 7..12u64 {
        let mut sim = Sim::new(n, &config, NetConfig::default(), seed);
        for i in 1..n {
            sim.join(i, 0);
            sim.run_for(Duration::from_millis(13));
        }
        let all: Vec<usize> = (0..n).collect();
        let took = sim.run_until_true(Duration::from_millis(10), Duration::from_secs(2), |s| {
            s.all_see_alive(&all)
        });
        assert!(
            took.is_some(),
            "seed {seed}: not converged 2 s after the last join"
        );
    }
}

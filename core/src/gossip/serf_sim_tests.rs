//! Serf cluster properties in the virtual network: members and tags
//! converge, a killed node is failed and a leaving one left everywhere,
//! user events reach everyone exactly once under loss, late joiners
//! replay or skip old events as asked, queries reach every node, failed
//! and left members are reaped, and a seed replays exactly.

use super::serf::{encode_serf, Query, SerfMessage, QUERY_FLAG_ACK};
use super::serf_sim::SerfSim;
use super::serf_state::{MemberStatus, SerfConfig, SerfEvent, SerfState};
use super::sim::NetConfig;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

pub(super) fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

pub(super) fn except(n: usize, out: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !out.contains(i)).collect()
}

pub(super) const STEP: Duration = Duration::from_millis(100);

/// `n` nodes joined through node 0 and converged: everyone sees everyone
/// alive.
pub(super) fn converged(n: usize, config: &SerfConfig, net: NetConfig, seed: u64) -> SerfSim {
    let mut sim = SerfSim::new(n, config, net, seed);
    for i in 1..n {
        sim.join(i, 0, false);
    }
    sim.run_until_true(STEP, Duration::from_secs(120), |s| {
        s.all_see(&all(n), &all(n), MemberStatus::Alive)
    })
    .unwrap_or_else(|| panic!("{n} serf nodes did not converge"));
    sim
}

/// The member a membership event is about.
fn about(e: &SerfEvent) -> Option<&str> {
    match e {
        SerfEvent::MemberJoin(m)
        | SerfEvent::MemberLeave(m)
        | SerfEvent::MemberFailed(m)
        | SerfEvent::MemberUpdate(m)
        | SerfEvent::MemberReap(m) => Some(&m.name),
        _ => None,
    }
}

fn count(sim: &SerfSim, observer: usize, name: &str, kind: fn(&SerfEvent) -> bool) -> usize {
    sim.nodes[observer]
        .events
        .iter()
        .filter(|(_, e)| about(e) == Some(name) && kind(e))
        .count()
}

/// When `observer` first saw an event of `kind` about `name`.
fn first_at(sim: &SerfSim, observer: usize, name: &str, kind: fn(&SerfEvent) -> bool) -> Instant {
    sim.nodes[observer]
        .events
        .iter()
        .find(|(_, e)| about(e) == Some(name) && kind(e))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("node {observer}: no such event about {name}"))
}

fn converges_with_tags(n: usize, seed: u64) {
    let sim = converged(n, &SerfConfig::lan(), NetConfig::default(), seed);
    for i in all(n) {
        for j in all(n) {
            let m = sim.nodes[i].serf.member(&sim.nodes[j].name).expect("known");
            assert_eq!(m.addr, sim.nodes[j].addr);
            assert_eq!(m.tags, BTreeMap::from([("id".to_owned(), j.to_string())]));
            assert_eq!(m.vsn, super::serf_state::SERF_VSN);
            let joins = count(&sim, i, &sim.nodes[j].name, |e| {
                matches!(e, SerfEvent::MemberJoin(_))
            });
            assert_eq!(joins, 1, "node {i} saw {j} join once");
        }
        let stats = sim.nodes[i].serf.stats();
        assert_eq!(stats.malformed_messages + stats.bad_remote_states, 0);
        assert_eq!(sim.nodes[i].serf.members().count(), n);
    }
}

#[test]
fn serf_cluster_of_5_converges_with_tags() {
    converges_with_tags(5, 1);
}

#[test]
fn serf_cluster_of_30_converges_with_tags() {
    converges_with_tags(30, 2);
}

#[test]
fn serf_join_reports_its_outcome_and_announces_a_join_intent() {
    let mut sim = converged(3, &SerfConfig::lan(), NetConfig::default(), 3);
    let finished: Vec<_> = sim.nodes[1]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, SerfEvent::JoinFinished { .. }))
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(
        finished[0].1,
        SerfEvent::JoinFinished {
            attempted: 1,
            joined: 1
        }
    );
    // The join intent gave node 1 a status time above zero everywhere.
    sim.run_for(Duration::from_secs(5));
    for i in all(3) {
        let pp = sim.nodes[i].serf.local_push_pull();
        assert!(pp.status_ltimes[&sim.nodes[1].name] > 0, "observer {i}");
    }
    // A join to nowhere fails cleanly.
    let nowhere = "10.9.9.9:7946".parse().expect("addr");
    sim.with_node(2, |s, now| s.join(now, &[nowhere], false).expect("alive"));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.nodes[2].events.iter().any(|(_, e)| *e
        == SerfEvent::JoinFinished {
            attempted: 1,
            joined: 0
        }));
}

#[test]
fn serf_killed_node_is_failed_at_all_others() {
    let config = SerfConfig::lan();
    let n = 10;
    let mut sim = converged(n, &config, NetConfig::default(), 4);
    let victim = 3;
    let name = sim.nodes[victim].name.clone();
    sim.nodes[victim].down = true;
    let rest = except(n, &[victim]);
    sim.run_until_true(STEP, config.memberlist.detection_bound(n), |s| {
        s.all_see(&rest, &[victim], MemberStatus::Failed)
    })
    .expect("failure detected everywhere within memberlist's bound");
    assert!(sim.all_see(&rest, &rest, MemberStatus::Alive));
    for &i in &rest {
        assert_eq!(
            count(&sim, i, &name, |e| matches!(e, SerfEvent::MemberFailed(_))),
            1
        );
        assert_eq!(
            count(&sim, i, &name, |e| matches!(e, SerfEvent::MemberLeave(_))),
            0
        );
    }
}

#[test]
fn serf_graceful_leave_shows_left_everywhere() {
    let n = 8;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 5);
    let leaver = 2;
    let name = sim.nodes[leaver].name.clone();
    sim.with_node(leaver, |s, now| s.leave(now).expect("alive node leaves"));
    assert_eq!(sim.nodes[leaver].serf.state(), SerfState::Leaving);
    let rest = except(n, &[leaver]);
    sim.run_until_true(STEP, Duration::from_secs(30), |s| {
        s.all_see(&rest, &[leaver], MemberStatus::Left)
            && s.nodes[leaver].serf.state() == SerfState::Left
    })
    .expect("leave completes and everyone records it");
    let done = sim.nodes[leaver]
        .events
        .iter()
        .filter(|(_, e)| *e == SerfEvent::LeaveFinished)
        .count();
    assert_eq!(done, 1);
    assert_eq!(
        sim.nodes[leaver].serf.local_member().status,
        MemberStatus::Left
    );
    for &i in &rest {
        assert_eq!(
            count(&sim, i, &name, |e| matches!(e, SerfEvent::MemberLeave(_))),
            1
        );
        assert_eq!(
            count(&sim, i, &name, |e| matches!(e, SerfEvent::MemberFailed(_))),
            0,
            "a graceful leave is never a failure"
        );
        assert!(sim.nodes[i]
            .serf
            .local_push_pull()
            .left_members
            .contains(&name));
    }
    // Leaving again is a no-op; joining or firing events is refused.
    sim.with_node(leaver, |s, now| {
        assert!(s.leave(now).is_ok());
        assert!(s.user_event(now, "x", b"", false).is_err());
    });
}

/// (ltime, name, payload) of every user event a node delivered.
fn user_events(sim: &SerfSim, i: usize) -> Vec<(u64, String, Vec<u8>)> {
    sim.nodes[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            SerfEvent::User(u) => Some((u.ltime, u.name.clone(), u.payload.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn serf_user_events_reach_every_node_exactly_once_with_10_percent_loss() {
    let n = 20;
    let net = NetConfig {
        loss_ppm: 100_000,
        ..NetConfig::default()
    };
    let mut sim = converged(n, &SerfConfig::lan(), net, 6);
    let fired = 30;
    for k in 0..fired {
        let origin = (k * 7) % n;
        sim.with_node(origin, |s, now| {
            s.user_event(
                now,
                &format!("deploy-{}", k % 4),
                format!("v{k}").as_bytes(),
                k % 2 == 0,
            )
            .expect("event fits")
        });
        sim.run_for(Duration::from_millis(150));
    }
    sim.run_until_true(STEP, Duration::from_secs(60), |s| {
        all(n).iter().all(|&i| user_events(s, i).len() >= fired)
    })
    .expect("every event reaches every node");
    sim.run_for(Duration::from_secs(30));
    let mut reference = user_events(&sim, 0);
    reference.sort();
    assert_eq!(reference.len(), fired);
    for i in all(n) {
        let mut seen = user_events(&sim, i);
        seen.sort();
        assert_eq!(seen, reference, "node {i}: each event exactly once");
        let (_, event_clock, _) = sim.nodes[i].serf.clocks();
        let newest = seen.iter().map(|e| e.0).max().expect("events");
        assert!(event_clock > newest, "the event clock passed every event");
    }
    let duplicates: u64 = sim
        .nodes
        .iter()
        .map(|nd| nd.serf.stats().duplicate_user_events)
        .sum();
    assert!(
        duplicates > 0,
        "re-gossip made duplicates, and they were dropped"
    );
}

#[test]
fn serf_events_from_one_node_have_increasing_lamport_times() {
    let n = 4;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 7);
    for k in 0..5 {
        sim.with_node(1, |s, now| {
            s.user_event(now, "e", &[k], false).expect("fits")
        });
        // Another node's event in between must push node 1's clock past it.
        sim.run_for(Duration::from_secs(2));
        sim.with_node(2, |s, now| {
            s.user_event(now, "f", &[k], false).expect("fits")
        });
        sim.run_for(Duration::from_secs(2));
    }
    let events = user_events(&sim, 3);
    let from_1: Vec<u64> = events.iter().filter(|e| e.1 == "e").map(|e| e.0).collect();
    let from_2: Vec<u64> = events.iter().filter(|e| e.1 == "f").map(|e| e.0).collect();
    assert_eq!(from_1.len(), 5);
    for k in 0..5 {
        // e_k happened before f_k (delivered before f_k was fired), and
        // f_k before e_{k+1}: Lamport times respect that order.
        assert!(from_1[k] < from_2[k]);
        if k + 1 < 5 {
            assert!(from_2[k] < from_1[k + 1]);
        }
    }
}

#[test]
fn serf_late_joiner_replays_old_events_only_when_not_ignoring_them() {
    let n = 5;
    let config = SerfConfig::lan();
    let mut sim = converged(n, &config, NetConfig::default(), 8);
    for k in 0..3u8 {
        sim.with_node(0, |s, now| {
            s.user_event(now, "old", &[k], false).expect("fits")
        });
    }
    // Long enough for the gossip of these events to finish.
    sim.run_for(Duration::from_secs(60));
    let replaying = sim.add_node(&config);
    let ignoring = sim.add_node(&config);
    sim.join(replaying, 1, false);
    sim.join(ignoring, 2, true);
    sim.run_for(Duration::from_secs(5));
    let old = |sim: &SerfSim, i| user_events(sim, i).iter().filter(|e| e.1 == "old").count();
    assert_eq!(old(&sim, replaying), 3, "push/pull replays the buffer");
    assert_eq!(old(&sim, ignoring), 0, "ignore-old skips it");
    sim.with_node(0, |s, now| {
        s.user_event(now, "new", b"x", false).expect("fits")
    });
    sim.run_for(Duration::from_secs(60));
    for i in [replaying, ignoring] {
        let fresh = user_events(&sim, i).iter().filter(|e| e.1 == "new").count();
        assert_eq!(fresh, 1, "node {i} gets events after its join");
    }
    assert_eq!(old(&sim, ignoring), 0, "later push/pulls don't replay them");
    assert!(sim.nodes[ignoring].serf.stats().old_user_events > 0);
}

#[test]
fn serf_tag_change_is_an_update_everywhere() {
    let n = 6;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 9);
    let tags = BTreeMap::from([("role".to_owned(), "server".to_owned())]);
    sim.with_node(4, |s, now| s.set_tags(now, tags.clone()).expect("fits"));
    let name = sim.nodes[4].name.clone();
    sim.run_until_true(STEP, Duration::from_secs(30), |s| {
        all(n).iter().all(|&i| {
            s.nodes[i]
                .serf
                .member(&name)
                .is_some_and(|m| m.tags == tags)
        })
    })
    .expect("tags spread");
    for i in except(n, &[4]) {
        assert_eq!(
            count(&sim, i, &name, |e| matches!(e, SerfEvent::MemberUpdate(_))),
            1
        );
    }
}

#[test]
fn serf_query_reaches_every_node_once_and_acks_go_to_the_source() {
    let n = 8;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 10);
    let source = sim.nodes[0].addr;
    let query = Query {
        ltime: 5,
        id: 77,
        addr: super::message::addr_bytes(source.ip()),
        port: source.port(),
        source_node: sim.nodes[0].name.clone(),
        filters: Vec::new(),
        flags: QUERY_FLAG_ACK,
        relay_factor: 0,
        timeout_ns: 10_000_000_000,
        name: "uptime".to_owned(),
        payload: b"?".to_vec(),
    };
    let raw = encode_serf(&SerfMessage::Query(query));
    // As if node 0 had started it: delivered locally, then re-gossiped.
    sim.with_node(0, |s, now| s.handle_user_message(now, &raw));
    sim.run_for(Duration::from_secs(5));
    for i in all(n) {
        let queries: Vec<_> = sim.nodes[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                SerfEvent::Query(q) => Some(q.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(queries.len(), 1, "node {i} got the query once");
        let q = &queries[0];
        assert_eq!((q.ltime, q.id, q.name.as_str()), (5, 77, "uptime"));
        sim.with_node(i, |s, now| {
            s.respond_query(now, 5, 77, format!("up-{i}").into_bytes())
                .expect("open query");
            assert!(s.respond_query(now, 5, 77, Vec::new()).is_err(), "once");
        });
    }
    sim.run_for(Duration::from_secs(1));
    // Node 0 did not start this query through `Serf::query`, so it counts
    // the n acks and n answers as responses nobody waits for.
    assert_eq!(
        sim.nodes[0].serf.stats().unknown_query_responses,
        2 * n as u64
    );
}

#[test]
fn serf_failed_and_left_members_are_reaped_after_their_timeouts() {
    let mut config = SerfConfig::lan();
    config.reconnect_timeout = Duration::from_secs(120);
    config.tombstone_timeout = Duration::from_secs(60);
    config.reap_interval = Duration::from_secs(5);
    let n = 6;
    let mut sim = converged(n, &config, NetConfig::default(), 11);
    let (failed, leaver) = (1, 2);
    let (failed_name, leaver_name) = (
        sim.nodes[failed].name.clone(),
        sim.nodes[leaver].name.clone(),
    );
    sim.nodes[failed].down = true;
    sim.with_node(leaver, |s, now| s.leave(now).expect("alive"));
    let rest = except(n, &[failed, leaver]);
    sim.run_for(Duration::from_secs(300));
    for &i in &rest {
        let serf = &sim.nodes[i].serf;
        assert!(
            serf.member(&failed_name).is_none(),
            "node {i} reaped the failed"
        );
        assert!(
            serf.member(&leaver_name).is_none(),
            "node {i} reaped the left"
        );
        let failed_at = first_at(&sim, i, &failed_name, |e| {
            matches!(e, SerfEvent::MemberFailed(_))
        });
        let reaped_failed = first_at(&sim, i, &failed_name, |e| {
            matches!(e, SerfEvent::MemberReap(_))
        });
        let left_at = first_at(&sim, i, &leaver_name, |e| {
            matches!(e, SerfEvent::MemberLeave(_))
        });
        let reaped_left = first_at(&sim, i, &leaver_name, |e| {
            matches!(e, SerfEvent::MemberReap(_))
        });
        let waited_failed = reaped_failed.saturating_duration_since(failed_at);
        let waited_left = reaped_left.saturating_duration_since(left_at);
        assert!(waited_failed > config.reconnect_timeout);
        assert!(waited_failed <= Duration(config.reconnect_timeout.0 + Duration::from_secs(6).0));
        assert!(waited_left > config.tombstone_timeout);
        assert!(waited_left <= Duration(config.tombstone_timeout.0 + Duration::from_secs(6).0));
        assert_eq!(serf.members().count(), n - 2);
    }
}

#[test]
fn serf_force_leave_turns_failed_into_left_and_prune_erases() {
    let config = SerfConfig::lan();
    let n = 6;
    let mut sim = converged(n, &config, NetConfig::default(), 12);
    sim.nodes[1].down = true;
    sim.nodes[2].down = true;
    let rest = except(n, &[1, 2]);
    sim.run_until_true(STEP, config.memberlist.detection_bound(n), |s| {
        s.all_see(&rest, &[1, 2], MemberStatus::Failed)
    })
    .expect("failures detected");
    let (one, two) = (sim.nodes[1].name.clone(), sim.nodes[2].name.clone());
    sim.with_node(0, |s, now| s.force_leave(now, &one, false));
    sim.with_node(0, |s, now| s.force_leave(now, &two, true));
    sim.run_until_true(STEP, Duration::from_secs(30), |s| {
        s.all_see(&rest, &[1], MemberStatus::Left)
            && rest.iter().all(|&i| s.nodes[i].serf.member(&two).is_none())
    })
    .expect("force-leave spreads");
    for &i in &rest {
        assert_eq!(
            count(&sim, i, &one, |e| matches!(e, SerfEvent::MemberLeave(_))),
            1
        );
        assert_eq!(
            count(&sim, i, &two, |e| matches!(e, SerfEvent::MemberReap(_))),
            1
        );
    }
}

/// One scenario with joins, loss, events, a failure and a leave; returns
/// the trace hash and every node's event log.
fn scenario(seed: u64) -> (u64, Vec<Vec<(Instant, SerfEvent)>>) {
    let net = NetConfig {
        loss_ppm: 50_000,
        ..NetConfig::default()
    };
    let n = 8;
    let mut sim = converged(n, &SerfConfig::lan(), net, seed);
    for k in 0..5u8 {
        sim.with_node(usize::from(k), |s, now| {
            s.user_event(now, "e", &[k], false).expect("fits")
        });
        sim.run_for(Duration::from_millis(300));
    }
    sim.nodes[6].down = true;
    sim.with_node(5, |s, now| s.leave(now).expect("alive"));
    sim.run_for(Duration::from_secs(40));
    let logs = sim.nodes.iter().map(|nd| nd.events.clone()).collect();
    (sim.trace, logs)
}

#[test]
fn serf_same_seed_same_trace() {
    let a = scenario(99);
    let b = scenario(99);
    assert_eq!(a.0, b.0, "trace hash");
    assert_eq!(a.1, b.1, "event logs");
    let c = scenario(100);
    assert_ne!(a.0, c.0, "another seed takes another path");
}

#[test]
fn serf_reconnect_heals_a_partition_memberlist_gave_up_on() {
    let config = SerfConfig::lan();
    let n = 5;
    let mut sim = converged(n, &config, NetConfig::default(), 13);
    let cut = 4;
    sim.nodes[cut].down = true;
    let rest = except(n, &[cut]);
    sim.run_until_true(STEP, Duration::from_secs(120), |s| {
        s.all_see(&rest, &[cut], MemberStatus::Failed)
            && s.all_see(&[cut], &rest, MemberStatus::Failed)
    })
    .expect("both sides of the partition declare the other failed");
    // Past memberlist's gossip-to-the-dead window: only serf's reconnect
    // can bring the sides back together now.
    sim.run_for(Duration::from_secs(40));
    sim.nodes[cut].down = false;
    sim.run_until_true(STEP, Duration::from_secs(300), |s| {
        s.all_see(&all(n), &all(n), MemberStatus::Alive)
    })
    .expect("the partition heals");
    let attempts: u64 = sim
        .nodes
        .iter()
        .map(|nd| nd.serf.stats().reconnect_attempts)
        .sum();
    assert!(attempts > 0);
}

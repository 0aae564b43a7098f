//! Direct tests of the membership rules: one `Memberlist`, hand-fed
//! messages, outputs inspected.

use super::codec::{encode_message, packet_payload_len};
use super::message::{Ack, Alive, Dead, IndirectPing, Message, Nack, NodeState, Suspect};
use super::sim::{consul_client_tags, node_addr, node_name, VSN};
use super::swim::{LocalNode, MemberEvent, Memberlist, MemberlistError, Output};
use super::Config;
use crate::time::{Duration, Instant};
use proptest::prelude::*;

fn local(i: usize) -> LocalNode {
    LocalNode {
        name: node_name(i),
        addr: node_addr(i),
        meta: Vec::new(),
        vsn: VSN,
    }
}

fn drain(list: &mut Memberlist) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(o) = list.poll() {
        out.push(o);
    }
    list.check_invariants();
    out
}

fn alive(i: usize, incarnation: u32) -> Alive {
    let addr = node_addr(i);
    Alive {
        incarnation,
        node: node_name(i),
        addr: super::message::addr_bytes(addr.ip()),
        port: addr.port(),
        meta: Vec::new(),
        vsn: VSN,
    }
}

/// Node 0 knowing nodes 1..n alive at incarnation 1.
fn with_peers(config: Config, n: usize) -> Memberlist {
    let mut list = Memberlist::new(Instant(0), config, local(0), 42).unwrap();
    for i in 1..n {
        list.handle_packet(Instant(0), node_addr(i), Message::Alive(alive(i, 1)));
    }
    drain(&mut list);
    list
}

fn packets_to(outputs: &[Output]) -> Vec<(std::net::SocketAddr, &Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Packet { to, msgs } => Some((*to, &msgs[0])),
            _ => None,
        })
        .collect()
}

/// Advances through timeouts until `until`, collecting outputs.
fn run(list: &mut Memberlist, until: Instant) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(t) = list.poll_timeout() {
        if t > until {
            break;
        }
        list.handle_timeout(t);
        out.extend(drain(list));
    }
    out
}

#[test]
fn start_announces_self_alive_and_joins_itself() {
    let mut list = Memberlist::new(Instant(0), Config::lan(), local(0), 1).unwrap();
    let out = drain(&mut list);
    assert!(matches!(&out[..], [Output::Event(MemberEvent::Join(m))] if m.name == node_name(0)));
    assert_eq!(list.incarnation(), 1);
    assert_eq!(list.queued_broadcasts(), (1, 0));
    let big = LocalNode {
        meta: vec![0; 600],
        ..local(0)
    };
    assert!(matches!(
        Memberlist::new(Instant(0), Config::lan(), big, 1),
        Err(MemberlistError::MetaTooLarge { len: 600 })
    ));
}

#[test]
fn bad_input_is_ignored_and_counted() {
    let mut list = with_peers(Config::lan(), 3);
    let before: Vec<_> = list.members().cloned().collect();
    let t = Instant(1);
    let from = node_addr(9);
    let unknown = Suspect {
        incarnation: 5,
        node: "nobody".into(),
        from: node_name(1),
    };
    list.handle_packet(t, from, Message::Suspect(unknown));
    list.handle_packet(
        t,
        from,
        Message::Dead(Dead {
            incarnation: 5,
            node: "nobody".into(),
            from: node_name(1),
        }),
    );
    // Stale: node 1 is at incarnation 1; an alive at 1 again changes nothing.
    list.handle_packet(t, from, Message::Alive(alive(1, 1)));
    list.handle_packet(
        t,
        from,
        Message::Ack(Ack {
            seq_no: 999,
            payload: vec![],
        }),
    );
    list.handle_packet(t, from, Message::Nack(Nack { seq_no: 999 }));
    // Our name from another address.
    let mut impostor = alive(0, 50);
    impostor.addr = vec![192, 168, 9, 9];
    list.handle_packet(t, from, Message::Alive(impostor));
    // Unusable address, broken versions, wrong ping target.
    let mut bad_addr = alive(5, 1);
    bad_addr.addr = vec![1, 2, 3];
    list.handle_packet(t, from, Message::Alive(bad_addr));
    let mut bad_vsn = alive(6, 1);
    bad_vsn.vsn = [3, 1, 2, 0, 0, 0];
    list.handle_packet(t, from, Message::Alive(bad_vsn));
    let ping = super::message::Ping {
        seq_no: 1,
        node: "someone-else".into(),
        ..Default::default()
    };
    list.handle_packet(t, from, Message::Ping(ping));

    let out = drain(&mut list);
    assert!(out.is_empty(), "nothing answered: {out:?}");
    let after: Vec<_> = list.members().cloned().collect();
    assert_eq!(before, after, "table untouched");
    assert_eq!(list.incarnation(), 1);
    let s = list.stats();
    assert_eq!(s.unknown_member_messages, 2);
    assert_eq!(s.stale_incarnation_messages, 1);
    assert_eq!((s.unknown_ack_seq, s.unknown_nack_seq), (1, 1));
    assert_eq!(s.address_conflicts, 1);
    assert_eq!((s.bad_addresses, s.bad_protocol_versions), (1, 1));
    assert_eq!(s.pings_for_other_node, 1);
}

#[test]
fn accusations_about_us_are_refuted_with_a_higher_incarnation() {
    let mut list = with_peers(Config::lan(), 3);
    let t = Instant(10);
    let suspect = Suspect {
        incarnation: 7,
        node: node_name(0),
        from: node_name(1),
    };
    list.handle_packet(t, node_addr(1), Message::Suspect(suspect));
    assert_eq!(list.incarnation(), 8);
    assert_eq!(list.health_score(), 1, "being accused costs health");
    assert_eq!(list.member(&node_name(0)).unwrap().state, NodeState::Alive);
    let dead = Dead {
        incarnation: 8,
        node: node_name(0),
        from: node_name(2),
    };
    list.handle_packet(t, node_addr(2), Message::Dead(dead));
    assert_eq!(list.incarnation(), 9);
    assert_eq!(list.stats().refutations, 2);
    // The refutation is gossiped: our alive at 9 rides the next packet.
    list.handle_packet(
        t,
        node_addr(1),
        Message::Ping(super::message::Ping {
            seq_no: 3,
            node: node_name(0),
            ..Default::default()
        }),
    );
    let out = drain(&mut list);
    let Some(Output::Packet { msgs, .. }) = out.first() else {
        panic!("expected an ack packet: {out:?}");
    };
    assert!(matches!(&msgs[0], Message::Ack(a) if a.seq_no == 3));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, Message::Alive(a) if a.node == node_name(0) && a.incarnation == 9)));
}

/// A suspicion of an incarnation we already refuted comes from a member
/// that missed our refutation: we gossip our alive again (memberlist stays
/// silent, and the accuser declares us dead when its timer runs out).
#[test]
fn stale_accusations_about_us_are_answered_with_our_current_alive() {
    let mut list = with_peers(Config::lan(), 3);
    let t = Instant(10);
    let accuse = |list: &mut Memberlist, incarnation, seq_no| {
        let suspect = Suspect {
            incarnation,
            node: node_name(0),
            from: node_name(1),
        };
        list.handle_packet(t, node_addr(1), Message::Suspect(suspect));
        drain(list);
        list.handle_packet(
            t,
            node_addr(1),
            Message::Ping(super::message::Ping {
                seq_no,
                node: node_name(0),
                ..Default::default()
            }),
        );
        let out = drain(list);
        let Some(Output::Packet { msgs, .. }) = out.first() else {
            panic!("expected an ack packet: {out:?}");
        };
        msgs.iter()
            .filter_map(|m| match m {
                Message::Alive(a) if a.node == node_name(0) => Some(a.incarnation),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Refuted: alive at 4 is gossiped (and rides the ack).
    assert_eq!(accuse(&mut list, 3, 1), vec![4]);
    // Gossiped enough times, it leaves the queue; a later ping carries none.
    for seq_no in 2..40 {
        list.handle_packet(
            t,
            node_addr(2),
            Message::Ping(super::message::Ping {
                seq_no,
                node: node_name(0),
                ..Default::default()
            }),
        );
        drain(&mut list);
    }
    list.handle_packet(
        t,
        node_addr(2),
        Message::Ping(super::message::Ping {
            seq_no: 45,
            node: node_name(0),
            ..Default::default()
        }),
    );
    let quiet = drain(&mut list);
    assert!(
        !quiet.iter().any(|o| matches!(o, Output::Packet { msgs, .. }
            if msgs.iter().any(|m| matches!(m, Message::Alive(_))))),
        "the refutation is still queued: {quiet:?}"
    );
    // The same old accusation again: our alive at 4 once more, no new
    // incarnation, no health cost.
    let health = list.health_score();
    assert_eq!(accuse(&mut list, 3, 50), vec![4]);
    assert_eq!(list.incarnation(), 4);
    assert_eq!(list.health_score(), health);
    assert_eq!(list.stats().stale_accusations_answered, 1);
    let dead = Dead {
        incarnation: 2,
        node: node_name(0),
        from: node_name(2),
    };
    list.handle_packet(t, node_addr(2), Message::Dead(dead));
    assert_eq!(list.stats().stale_accusations_answered, 2);
    assert_eq!(list.incarnation(), 4);
}

#[test]
fn incarnation_rules_for_alive_suspect_dead_and_leave() {
    let mut list = with_peers(Config::lan(), 4);
    let t = Instant(5);
    let s = |inc, from: usize| Suspect {
        incarnation: inc,
        node: node_name(1),
        from: node_name(from),
    };
    list.handle_packet(t, node_addr(2), Message::Suspect(s(1, 2)));
    assert_eq!(
        list.member(&node_name(1)).unwrap().state,
        NodeState::Suspect
    );
    // Alive at the same incarnation does not clear a suspicion; a higher one does.
    list.handle_packet(t, node_addr(1), Message::Alive(alive(1, 1)));
    assert_eq!(
        list.member(&node_name(1)).unwrap().state,
        NodeState::Suspect
    );
    list.handle_packet(t, node_addr(1), Message::Alive(alive(1, 2)));
    assert_eq!(list.member(&node_name(1)).unwrap().state, NodeState::Alive);
    // A suspect about the old incarnation is stale now.
    list.handle_packet(t, node_addr(2), Message::Suspect(s(1, 3)));
    assert_eq!(list.member(&node_name(1)).unwrap().state, NodeState::Alive);
    // Dead from another member: Dead; from itself: Left.
    let dead = |node: usize, from: usize| Dead {
        incarnation: 2,
        node: node_name(node),
        from: node_name(from),
    };
    drain(&mut list);
    list.handle_packet(t, node_addr(2), Message::Dead(dead(1, 2)));
    list.handle_packet(
        t,
        node_addr(3),
        Message::Dead(Dead {
            incarnation: 1,
            ..dead(3, 3)
        }),
    );
    let out = drain(&mut list);
    let leaves: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(MemberEvent::Leave(m)) => Some((m.name.clone(), m.state)),
            _ => None,
        })
        .collect();
    assert_eq!(
        leaves,
        vec![
            (node_name(1), NodeState::Dead),
            (node_name(3), NodeState::Left)
        ]
    );
    // Back from the dead needs a higher incarnation, and is a join.
    list.handle_packet(t, node_addr(1), Message::Alive(alive(1, 2)));
    assert_eq!(list.member(&node_name(1)).unwrap().state, NodeState::Dead);
    list.handle_packet(t, node_addr(1), Message::Alive(alive(1, 3)));
    let out = drain(&mut list);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(MemberEvent::Join(m)) if m.name == node_name(1))));
}

#[test]
fn dead_name_is_reclaimed_by_a_new_address_only_after_the_reclaim_time() {
    for (reclaim, expect_taken) in [(Duration::ZERO, false), (Duration::from_secs(10), true)] {
        let config = Config {
            dead_node_reclaim_time: reclaim,
            ..Config::lan()
        };
        let mut list = with_peers(config, 3);
        let dead = Dead {
            incarnation: 1,
            node: node_name(1),
            from: node_name(2),
        };
        list.handle_packet(Instant(0), node_addr(2), Message::Dead(dead));
        let mut moved = alive(1, 1);
        moved.addr = vec![10, 9, 9, 9];
        // Too early for any reclaim.
        list.handle_packet(
            Instant::from_nanos(5_000_000_000),
            node_addr(7),
            Message::Alive(moved.clone()),
        );
        assert_eq!(list.member(&node_name(1)).unwrap().state, NodeState::Dead);
        list.handle_packet(
            Instant::from_nanos(11_000_000_000),
            node_addr(7),
            Message::Alive(moved),
        );
        let m = list.member(&node_name(1)).unwrap();
        assert_eq!(
            m.state == NodeState::Alive,
            expect_taken,
            "reclaim {reclaim:?}"
        );
        assert_eq!(m.addr.ip().to_string() == "10.9.9.9", expect_taken);
        assert_eq!(
            list.stats().address_conflicts,
            if expect_taken { 1 } else { 2 }
        );
    }
}

#[test]
fn failed_probe_goes_indirect_then_suspects_then_declares_dead() {
    let config = Config::lan();
    let mut list = with_peers(config.clone(), 6);
    // Run until the first probe goes out.
    let (t, target, seq) = loop {
        let t = list.poll_timeout().unwrap();
        list.handle_timeout(t);
        let out = drain(&mut list);
        let ping = packets_to(&out).into_iter().find_map(|(to, m)| match m {
            Message::Ping(p) => Some((to, p.clone())),
            _ => None,
        });
        if let Some((to, p)) = ping {
            break (t, to, p);
        }
    };
    let target_name = seq.node.clone();
    assert_eq!(list.member(&target_name).unwrap().addr, target);
    // No ack: after the probe timeout, indirect pings to 3 peers with nack
    // requested, plus a stream ping.
    let out = run(&mut list, t + config.probe_timeout);
    let indirect: Vec<_> = packets_to(&out)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::IndirectPing(ind) => Some((to, ind.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(indirect.len(), 3);
    assert!(indirect
        .iter()
        .all(|(to, ind)| ind.nack && ind.seq_no == seq.seq_no && *to != target));
    let stream = out.iter().find_map(|o| match o {
        Output::OpenPingStream { id, to, .. } => Some((*id, *to)),
        _ => None,
    });
    let (stream_id, stream_to) = stream.expect("stream ping in parallel");
    assert_eq!(stream_to, target);
    list.handle_stream_failed(t + config.probe_timeout, stream_id);
    // One nack out of three expected: health +2 when the probe ends.
    list.handle_packet(
        t + config.probe_timeout,
        indirect[0].0,
        Message::Nack(Nack { seq_no: seq.seq_no }),
    );
    drain(&mut list);
    run(&mut list, t + config.probe_interval);
    assert_eq!(list.member(&target_name).unwrap().state, NodeState::Suspect);
    assert_eq!(list.health_score(), 2);
    assert_eq!(list.stats().probes_failed, 1);
    // With 6 members k = 2 confirmations are expected, so the timer starts at max.
    let min = super::config::suspicion_timeout(config.suspicion_mult, 6, config.probe_interval);
    let max = min.saturating_mul(config.suspicion_max_timeout_mult as u64);
    let suspected_at = list.member(&target_name).unwrap().state_change;
    // Two distinct confirmations bring it down to min; a repeat does not count.
    let confirmers: Vec<usize> = (1..6)
        .filter(|i| node_name(*i) != target_name)
        .take(2)
        .collect();
    for from in [confirmers[0], confirmers[0], confirmers[1]] {
        let name = node_name(from);
        let s = Suspect {
            incarnation: 1,
            node: target_name.clone(),
            from: name,
        };
        list.handle_packet(suspected_at, node_addr(from), Message::Suspect(s));
    }
    drain(&mut list);
    let out = run(&mut list, suspected_at + max);
    assert_eq!(list.member(&target_name).unwrap().state, NodeState::Dead);
    let dead_at = out
        .iter()
        .find_map(|o| match o {
            Output::Event(MemberEvent::Leave(m)) if m.name == target_name => Some(m.state_change),
            _ => None,
        })
        .expect("leave event");
    assert!(
        dead_at < suspected_at + max,
        "confirmations shortened the suspicion"
    );
    assert!(dead_at >= suspected_at + min);
}

#[test]
fn indirect_probe_relays_the_ack_or_a_nack() {
    let config = Config::lan();
    let mut list = with_peers(config.clone(), 4);
    let t = Instant(7);
    let request = |seq| IndirectPing {
        seq_no: seq,
        target: vec![10, 0, 0, 2],
        port: 7946,
        node: node_name(2),
        nack: true,
        source_addr: vec![10, 0, 0, 1],
        source_port: 7946,
        source_node: node_name(1),
    };
    list.handle_packet(t, node_addr(1), Message::IndirectPing(request(77)));
    let out = drain(&mut list);
    let Some((to, Message::Ping(ping))) = packets_to(&out).into_iter().next() else {
        panic!("expected a ping: {out:?}");
    };
    assert_eq!(
        (to, ping.node.as_str()),
        (node_addr(2), node_name(2).as_str())
    );
    let local_seq = ping.seq_no;
    list.handle_packet(
        t,
        node_addr(2),
        Message::Ack(Ack {
            seq_no: local_seq,
            payload: vec![],
        }),
    );
    let out = drain(&mut list);
    assert!(
        matches!(packets_to(&out)[..], [(to, Message::Ack(a))] if to == node_addr(1) && a.seq_no == 77)
    );
    // A second request gets no ack: a nack after the probe timeout.
    list.handle_packet(t, node_addr(1), Message::IndirectPing(request(78)));
    drain(&mut list);
    let out = run(&mut list, t + config.probe_timeout);
    assert!(packets_to(&out)
        .iter()
        .any(|(to, m)| *to == node_addr(1) && matches!(m, Message::Nack(n) if n.seq_no == 78)));
}

#[test]
fn leave_broadcasts_dead_from_self_and_reports_when_sent() {
    let mut list = with_peers(Config::lan(), 3);
    list.leave(Instant(0), Duration::from_secs(5));
    let out = drain(&mut list);
    assert!(out.iter().any(
        |o| matches!(o, Output::Event(MemberEvent::Leave(m)) if m.name == node_name(0) && m.state == NodeState::Left)
    ));
    assert!(list.has_left());
    assert_eq!(
        list.update_meta(Instant(0), vec![1]),
        Err(MemberlistError::Left)
    );
    // Gossip carries the dead message its full count (4 * ceil(log10(4)) = 4).
    let out = run(&mut list, Instant::from_nanos(4_000_000_000));
    let sent_dead = packets_to(&out).len();
    assert!(sent_dead >= 1);
    assert!(
        out.contains(&Output::LeaveFinished {
            broadcast_sent: true
        }),
        "{out:?}"
    );
    // Alone, a leave finishes at once.
    let mut alone = Memberlist::new(Instant(0), Config::lan(), local(0), 3).unwrap();
    drain(&mut alone);
    alone.leave(Instant(0), Duration::from_secs(5));
    assert!(drain(&mut alone).contains(&Output::LeaveFinished {
        broadcast_sent: true
    }));
}

/// The payload bytes a packet of `msgs` takes before CRC and encryption,
/// as the shell will seal it.
fn payload_len(msgs: &[Message], compress: bool) -> usize {
    let parts: Vec<Vec<u8>> = msgs.iter().map(encode_message).collect();
    packet_payload_len(&parts, compress).unwrap()
}

#[test]
fn packets_respect_the_udp_budget() {
    for compress in [true, false] {
        let config = Config {
            enable_compression: compress,
            ..Config::lan()
        };
        let mut list = with_peers(config.clone(), 40);
        for i in 0..50 {
            // Incompressible payloads: the packet is full before LZW helps.
            let payload: Vec<u8> = (0..200u32).map(|j| (j * 97 + i * 31 % 251) as u8).collect();
            list.send_user_broadcast(payload).unwrap();
        }
        assert!(matches!(
            list.send_user_broadcast(vec![0; 1500]),
            Err(MemberlistError::BroadcastTooLarge { .. })
        ));
        let out = run(&mut list, Instant::from_nanos(3_000_000_000));
        let mut packets = 0;
        for o in &out {
            if let Output::Packet { msgs, .. } = o {
                packets += 1;
                let bytes = payload_len(msgs, compress);
                assert!(bytes <= config.udp_buffer_size, "{bytes} bytes");
            }
        }
        assert!(packets > 0);
    }
}

/// Node 0 with `n - 1` members carrying Consul's client tags, their alive
/// messages queued for gossip.
fn with_tagged_peers(config: Config, n: usize) -> Memberlist {
    let mut list = Memberlist::new(Instant(0), config, local(0), 42).unwrap();
    for i in 1..n {
        let msg = Alive {
            meta: super::serf::encode_tags(&consul_client_tags(i)).unwrap(),
            ..alive(i, 1)
        };
        list.handle_packet(Instant(0), node_addr(i), Message::Alive(msg));
    }
    drain(&mut list);
    list
}

/// Alive messages per gossip packet in the first gossip round, and the
/// largest payload.
fn first_round_alives(config: Config) -> (Vec<usize>, usize) {
    let compress = config.enable_compression;
    let mut list = with_tagged_peers(config.clone(), 60);
    let out = run(&mut list, Instant(0) + config.gossip_interval);
    let mut counts = Vec::new();
    let mut largest = 0;
    for o in &out {
        if let Output::Packet { msgs, .. } = o {
            if matches!(msgs[0], Message::Ping(_) | Message::Ack(_)) {
                continue;
            }
            counts.push(
                msgs.iter()
                    .filter(|m| matches!(m, Message::Alive(_)))
                    .count(),
            );
            largest = largest.max(payload_len(msgs, compress));
        }
    }
    (counts, largest)
}

#[test]
fn compressed_packets_carry_more_tagged_alive_messages() {
    let on = Config::lan();
    let off = Config {
        enable_compression: false,
        ..Config::lan()
    };
    let (with, with_largest) = first_round_alives(on.clone());
    let (without, without_largest) = first_round_alives(off);
    assert_eq!(with.len(), on.gossip_nodes);
    assert_eq!(without.len(), on.gossip_nodes);
    assert!(with_largest <= on.udp_buffer_size, "{with_largest}");
    assert!(without_largest <= on.udp_buffer_size, "{without_largest}");
    // Uncompressed, a 170-byte alive message fits 8 times in 1,400 bytes;
    // compressed, about twice as many.
    assert!(without.iter().all(|&c| c == 8), "{without:?}");
    assert!(with.iter().all(|&c| c >= 12), "{with:?} vs {without:?}");
}

#[test]
fn unanswered_join_stream_fails_after_twice_the_stream_timeout() {
    let config = Config::lan();
    let mut list = Memberlist::new(Instant(0), config.clone(), local(0), 5).unwrap();
    drain(&mut list);
    list.join(Instant(0), &[node_addr(1)]);
    let out = drain(&mut list);
    let Some(Output::OpenPushPull { id, state, .. }) = out.first() else {
        panic!("expected a push/pull: {out:?}");
    };
    assert!(state.join);
    assert_eq!(state.nodes.len(), 1, "we know only ourselves");
    let id = *id;
    let limit = Instant(0) + config.tcp_timeout.saturating_mul(2);
    let out = run(&mut list, limit + Duration::from_secs(1));
    assert!(out.contains(&Output::JoinResult {
        to: node_addr(1),
        ok: false
    }));
    // A late reply is ignored and counted.
    list.handle_push_pull_reply(limit + Duration::from_secs(2), id, Default::default());
    assert_eq!(list.stats().unknown_streams, 1);
    assert_eq!(list.stats().push_pull_failures, 1);
}

fn arb_message() -> impl Strategy<Value = Message> {
    let name = (0usize..6).prop_map(node_name);
    let inc = 0u32..6;
    prop_oneof![
        (name.clone(), inc.clone(), 0usize..8).prop_map(|(n, i, a)| {
            let mut m = alive(0, i);
            m.node = n;
            m.addr = super::message::addr_bytes(node_addr(a).ip());
            Message::Alive(m)
        }),
        (name.clone(), inc.clone(), name.clone()).prop_map(|(node, incarnation, from)| {
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }),
        (name.clone(), inc, name.clone()).prop_map(|(node, incarnation, from)| Message::Dead(
            Dead {
                incarnation,
                node,
                from
            }
        )),
        (0u32..20).prop_map(|seq_no| Message::Ack(Ack {
            seq_no,
            payload: vec![]
        })),
        (0u32..20).prop_map(|seq_no| Message::Nack(Nack { seq_no })),
        (0u32..20, name).prop_map(|(seq_no, node)| Message::Ping(super::message::Ping {
            seq_no,
            node,
            ..Default::default()
        })),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Message::User),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    /// Arbitrary message sequences and timer firings never panic and keep
    /// the table consistent (check_invariants after every step).
    #[test]
    fn random_inputs_keep_the_table_consistent(
        steps in proptest::collection::vec((arb_message(), 0u64..3_000), 1..80)
    ) {
        let mut list = with_peers(Config::local(), 4);
        let mut now = Instant(0);
        for (msg, advance_ms) in steps {
            now = now + Duration::from_millis(advance_ms);
            if list.poll_timeout().is_some_and(|t| t <= now) {
                list.handle_timeout(now);
                drain(&mut list);
            }
            list.handle_packet(now, node_addr(5), msg);
            drain(&mut list);
        }
    }
}

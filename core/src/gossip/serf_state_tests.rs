//! One `Serf` fed by hand: intent buffering and staleness, the user-event
//! ring, limits, refutation, query filters, push/pull state round trips
//! and merges, and bad input that must be counted, never fatal.

use super::message::{addr_bytes, Alive, Message, NodeState, PushNodeState, PushPull};
use super::serf::{
    decode_serf, encode_filter, encode_serf, encode_tags, BufferedEvent, BufferedEvents, Filter,
    Join, Leave, Query, SerfMessage, UserEvent,
};
use super::serf_events::literal_match;
use super::serf_state::{
    MemberStatus, Serf, SerfConfig, SerfError, SerfEvent, SerfOutput, SERF_VSN,
};
use crate::time::{Duration, Instant};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7946))
}

fn new_serf(config: SerfConfig) -> Serf {
    let mut s = Serf::new(Instant(0), config, "me".to_owned(), addr(1), 7).expect("valid");
    drain(&mut s);
    s
}

fn drain(s: &mut Serf) -> Vec<SerfOutput> {
    std::iter::from_fn(|| s.poll()).collect()
}

fn events(outs: &[SerfOutput]) -> Vec<SerfEvent> {
    outs.iter()
        .filter_map(|o| match o {
            SerfOutput::Event(e) => Some(e.clone()),
            SerfOutput::Memberlist(_) => None,
        })
        .collect()
}

/// memberlist hears that `name` at `10.0.0.i` is alive with `tags`.
fn alive(s: &mut Serf, name: &str, i: u8, incarnation: u32, tags: &[(&str, &str)]) {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let msg = Message::Alive(Alive {
        incarnation,
        node: name.to_owned(),
        addr: addr_bytes(addr(i).ip()),
        port: 7946,
        meta: encode_tags(&tags).expect("small"),
        vsn: SERF_VSN,
    });
    s.handle_packet(Instant(0), addr(i), msg);
}

fn user_msg(s: &mut Serf, msg: SerfMessage) -> Vec<SerfOutput> {
    s.handle_user_message(Instant(0), &encode_serf(&msg));
    drain(s)
}

fn status(s: &Serf, name: &str) -> Option<MemberStatus> {
    s.member(name).map(|m| m.status)
}

#[test]
fn serf_starts_alive_with_its_tags_and_clocks_at_one() {
    let mut config = SerfConfig::lan();
    config.tags.insert("dc".to_owned(), "dc1".to_owned());
    let mut s = Serf::new(Instant(0), config, "me".to_owned(), addr(1), 1).expect("valid");
    let outs = drain(&mut s);
    let me = s.local_member().clone();
    assert_eq!(me.status, MemberStatus::Alive);
    assert_eq!(me.tags["dc"], "dc1");
    assert_eq!(events(&outs), vec![SerfEvent::MemberJoin(me)]);
    assert_eq!(s.clocks(), (1, 1, 1));
}

#[test]
fn serf_refuses_bad_config_and_oversized_tags() {
    let mut config = SerfConfig::lan();
    config.user_event_size_limit = 9 * 1024 + 1;
    let e = Serf::new(Instant(0), config, "me".to_owned(), addr(1), 1).unwrap_err();
    assert!(matches!(e, SerfError::Config(_)));
    let mut s = new_serf(SerfConfig::lan());
    let huge = BTreeMap::from([("k".to_owned(), "v".repeat(600))]);
    assert!(matches!(
        s.set_tags(Instant(0), huge),
        Err(SerfError::Tags(_))
    ));
}

#[test]
fn serf_intent_for_an_unknown_node_is_remembered_until_it_appears() {
    let mut s = new_serf(SerfConfig::lan());
    let leave = Leave {
        ltime: 10,
        node: "a".to_owned(),
        prune: false,
    };
    user_msg(&mut s, SerfMessage::Leave(leave.clone()));
    assert_eq!(status(&s, "a"), None);
    // The same intent again is not news.
    user_msg(&mut s, SerfMessage::Leave(leave));
    alive(&mut s, "a", 2, 1, &[]);
    drain(&mut s);
    assert_eq!(status(&s, "a"), Some(MemberStatus::Leaving));
    assert_eq!(s.local_push_pull().status_ltimes["a"], 10);
    // A join intent at or below the status time is stale...
    user_msg(
        &mut s,
        SerfMessage::Join(Join {
            ltime: 10,
            node: "a".to_owned(),
        }),
    );
    assert_eq!(status(&s, "a"), Some(MemberStatus::Leaving));
    assert_eq!(s.stats().stale_intents, 1);
    // ...a newer one brings it back to alive.
    user_msg(
        &mut s,
        SerfMessage::Join(Join {
            ltime: 11,
            node: "a".to_owned(),
        }),
    );
    assert_eq!(status(&s, "a"), Some(MemberStatus::Alive));
    assert!(s.clocks().0 > 11, "the member clock witnessed the intents");
}

#[test]
fn serf_remembered_intents_expire() {
    let mut config = SerfConfig::lan();
    config.recent_intent_timeout = Duration::from_secs(10);
    config.reap_interval = Duration::from_secs(1);
    let mut s = new_serf(config);
    let leave = Leave {
        ltime: 4,
        node: "a".to_owned(),
        prune: false,
    };
    user_msg(&mut s, SerfMessage::Leave(leave));
    s.handle_timeout(Instant(Duration::from_secs(20).0));
    drain(&mut s);
    alive(&mut s, "a", 2, 1, &[]);
    assert_eq!(status(&s, "a"), Some(MemberStatus::Alive));
}

#[test]
fn serf_refutes_a_leave_intent_about_itself_while_alive() {
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "a", 2, 1, &[]);
    drain(&mut s);
    let ltime = s.clocks().0 + 5;
    let leave = Leave {
        ltime,
        node: "me".to_owned(),
        prune: false,
    };
    user_msg(&mut s, SerfMessage::Leave(leave));
    assert_eq!(s.local_member().status, MemberStatus::Alive);
    assert_eq!(s.stats().refuted_leave_intents, 1);
    // A join intent above the accusation is queued for gossip.
    let join = encode_serf(&SerfMessage::Join(Join {
        ltime: ltime + 1,
        node: "me".to_owned(),
    }));
    assert!(s.memberlist().user_broadcast_queued(&join));
    assert_eq!(s.local_push_pull().status_ltimes["me"], ltime + 1);
}

#[test]
fn serf_memberlist_failure_is_failed_and_then_forced_left() {
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "a", 2, 1, &[("role", "web")]);
    let outs = drain(&mut s);
    assert!(matches!(&events(&outs)[..], [SerfEvent::MemberJoin(m)] if m.tags["role"] == "web"));
    let dead = Message::Dead(super::message::Dead {
        incarnation: 1,
        node: "a".to_owned(),
        from: "b".to_owned(),
    });
    s.handle_packet(Instant(5), addr(3), dead);
    let outs = drain(&mut s);
    assert!(matches!(&events(&outs)[..], [SerfEvent::MemberFailed(m)] if m.name == "a"));
    s.force_leave(Instant(6), "a", false);
    let outs = drain(&mut s);
    assert!(
        matches!(&events(&outs)[..], [SerfEvent::MemberLeave(m)] if m.status == MemberStatus::Left)
    );
    assert_eq!(s.local_push_pull().left_members, vec!["a".to_owned()]);
    s.force_leave(Instant(7), "a", true);
    let outs = drain(&mut s);
    assert!(matches!(&events(&outs)[..], [SerfEvent::MemberReap(m)] if m.name == "a"));
    assert_eq!(status(&s, "a"), None);
}

fn event(ltime: u64, name: &str, payload: &[u8]) -> SerfMessage {
    SerfMessage::UserEvent(UserEvent {
        ltime,
        name: name.to_owned(),
        payload: payload.to_vec(),
        cc: false,
    })
}

fn delivered(outs: &[SerfOutput]) -> Vec<(u64, String)> {
    events(outs)
        .into_iter()
        .filter_map(|e| match e {
            SerfEvent::User(u) => Some((u.ltime, u.name)),
            _ => None,
        })
        .collect()
}

#[test]
fn serf_user_event_ring_deduplicates_by_time_name_and_payload() {
    let mut config = SerfConfig::lan();
    config.event_buffer = 8;
    let mut s = new_serf(config);
    assert_eq!(
        delivered(&user_msg(&mut s, event(5, "a", b"1"))),
        vec![(5, "a".into())]
    );
    assert!(delivered(&user_msg(&mut s, event(5, "a", b"1"))).is_empty());
    assert_eq!(s.stats().duplicate_user_events, 1);
    // Same time, other payload or name: a different event.
    assert_eq!(delivered(&user_msg(&mut s, event(5, "a", b"2"))).len(), 1);
    assert_eq!(delivered(&user_msg(&mut s, event(5, "b", b"1"))).len(), 1);
    // A new event is re-gossiped as the same bytes.
    let raw = encode_serf(&event(6, "c", b""));
    s.handle_user_message(Instant(0), &raw);
    assert_eq!(delivered(&drain(&mut s)), vec![(6, "c".into())]);
    assert!(s.memberlist().user_broadcast_queued(&raw));
    // Far ahead: the clock moves past 5 + 8, so time 5 falls out of the
    // window and is refused even though it is new.
    assert_eq!(delivered(&user_msg(&mut s, event(20, "z", b""))).len(), 1);
    assert!(delivered(&user_msg(&mut s, event(5, "new", b""))).is_empty());
    assert_eq!(s.stats().old_user_events, 1);
    // Time 13 is just inside the window; its slot (13 % 8 = 5) held time
    // 5's events and is taken over.
    assert!(delivered(&user_msg(&mut s, event(12, "y", b""))).is_empty());
    assert_eq!(delivered(&user_msg(&mut s, event(13, "y", b""))).len(), 1);
    assert!(delivered(&user_msg(&mut s, event(13, "y", b""))).is_empty());
    assert_eq!(s.clocks().1, 21);
}

#[test]
fn serf_user_event_is_stamped_delivered_and_gossiped() {
    let mut s = new_serf(SerfConfig::lan());
    s.user_event(Instant(0), "deploy", b"v1", true)
        .expect("fits");
    let outs = drain(&mut s);
    let ev = events(&outs);
    assert!(matches!(&ev[..], [SerfEvent::User(u)] if u.ltime == 1 && u.coalesce));
    assert_eq!(s.clocks().1, 2);
    s.user_event(Instant(0), "deploy", b"v2", false)
        .expect("fits");
    assert_eq!(delivered(&drain(&mut s)), vec![(2, "deploy".into())]);
    let too_big = vec![0u8; 600];
    assert!(matches!(
        s.user_event(Instant(0), "x", &too_big, false),
        Err(SerfError::UserEventTooLarge { .. })
    ));
    // Name + payload under the limit but over it once encoded.
    let edge = vec![0u8; 505];
    assert!(s.user_event(Instant(0), "x", &edge, false).is_err());
    assert_eq!(s.clocks().1, 3, "refused events don't move the clock");
}

#[test]
fn serf_push_pull_state_round_trips_through_the_codec() {
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "a", 2, 1, &[]);
    alive(&mut s, "b", 3, 1, &[]);
    drain(&mut s);
    s.user_event(Instant(0), "e", b"p", false).expect("fits");
    s.force_leave(Instant(0), "b", false);
    drain(&mut s);
    let pp = s.local_push_pull();
    assert_eq!(pp.events.len(), 512);
    assert_eq!(
        pp.events[1],
        Some(BufferedEvents {
            ltime: 1,
            events: vec![BufferedEvent {
                name: "e".into(),
                payload: b"p".to_vec()
            }]
        })
    );
    assert_eq!(pp.status_ltimes.len(), 3);
    let bytes = encode_serf(&SerfMessage::PushPull(pp.clone()));
    assert_eq!(
        decode_serf(&bytes).expect("decodes"),
        SerfMessage::PushPull(pp)
    );
    // What goes into memberlist's push/pull is exactly that encoding.
    let reply = s.handle_push_pull(Instant(0), addr(2), PushPull::default());
    assert_eq!(reply.user_state, bytes);
}

#[test]
fn serf_merges_a_remote_push_pull_like_serf() {
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "a", 2, 1, &[]);
    alive(&mut s, "b", 3, 1, &[]);
    drain(&mut s);
    let mut remote = super::serf::PushPull {
        ltime: 40,
        status_ltimes: BTreeMap::from([("a".into(), 7), ("b".into(), 9), ("ghost".into(), 3)]),
        left_members: vec!["b".into()],
        event_ltime: 30,
        events: vec![None; 512],
        query_ltime: 50,
    };
    remote.events[29] = Some(BufferedEvents {
        ltime: 29,
        events: vec![BufferedEvent {
            name: "old".into(),
            payload: Vec::new(),
        }],
    });
    // The peer's memberlist holds b dead (the life we know).
    let state = PushPull {
        join: false,
        nodes: vec![node_record("b", 3, 1, NodeState::Dead)],
        user_state: encode_serf(&SerfMessage::PushPull(remote)),
    };
    s.handle_push_pull(Instant(0), addr(2), state);
    let outs = drain(&mut s);
    assert_eq!(s.clocks(), (40, 30, 50), "clocks caught up to the peer's");
    assert_eq!(status(&s, "b"), Some(MemberStatus::Leaving));
    let pp = s.local_push_pull();
    assert_eq!(pp.status_ltimes["a"], 7);
    assert_eq!(
        pp.status_ltimes["b"], 10,
        "left members apply at status time + 1"
    );
    assert!(
        !pp.status_ltimes.contains_key("ghost"),
        "an intent, not a member"
    );
    assert_eq!(delivered(&outs), vec![(29, "old".into())]);
}

/// A memberlist record of `name` at `10.0.0.i`, as a push/pull carries it.
fn node_record(name: &str, i: u8, incarnation: u32, state: NodeState) -> PushNodeState {
    PushNodeState {
        name: name.into(),
        addr: addr_bytes(addr(i).ip()),
        port: 7946,
        meta: encode_tags(&BTreeMap::new()).expect("small"),
        incarnation,
        state,
        vsn: SERF_VSN,
    }
}

/// A peer's push/pull that lists `name` as left (status time 7), with its
/// memberlist's record of it (`None`: forgotten).
fn left_in_peer_state(name: &str, record: Option<(u32, NodeState)>) -> PushPull {
    let remote = super::serf::PushPull {
        ltime: 8,
        status_ltimes: BTreeMap::from([(name.into(), 7)]),
        left_members: vec![name.into()],
        event_ltime: 1,
        events: vec![None; 512],
        query_ltime: 1,
    };
    PushPull {
        join: false,
        nodes: record
            .map(|(incarnation, state)| node_record(name, 3, incarnation, state))
            .into_iter()
            .collect(),
        user_state: encode_serf(&SerfMessage::PushPull(remote)),
    }
}

/// A member that left and came back (memberlist has it alive at a later
/// incarnation) is not taken for leaving on the word of a peer that still
/// holds its earlier life left: serf would, and the member could then stay
/// `leaving` for good (Consul issue 13379: the peer's left members apply
/// one past its status time, which the member's rejoin need not exceed).
#[test]
fn serf_ignores_a_peers_left_record_of_a_members_earlier_life() {
    // A serf that has b alive at incarnation 2, then a peer's push/pull
    // that lists b left with its own record of b.
    let after_peer_state = |record| {
        let mut s = new_serf(SerfConfig::lan());
        alive(&mut s, "b", 3, 2, &[]);
        drain(&mut s);
        s.handle_push_pull(Instant(0), addr(2), left_in_peer_state("b", record));
        drain(&mut s);
        s
    };
    // The peer holds incarnation 1 dead: an earlier life.
    let s = after_peer_state(Some((1, NodeState::Dead)));
    assert_eq!(status(&s, "b"), Some(MemberStatus::Alive));
    assert_eq!(s.stats().leaves_of_an_earlier_life, 1);
    // A peer whose memberlist forgot b (dead past its
    // gossip_to_the_dead_time) speaks of an earlier life too.
    let s = after_peer_state(None);
    assert_eq!(status(&s, "b"), Some(MemberStatus::Alive));
    assert_eq!(s.stats().leaves_of_an_earlier_life, 1);
    // The same life (memberlist only suspects it on the peer's word): the
    // leave applies, as in serf.
    let s = after_peer_state(Some((2, NodeState::Dead)));
    assert_eq!(status(&s, "b"), Some(MemberStatus::Leaving));

    // Not known yet: the leave waits as an intent, and applies only if
    // memberlist then reports the life that left.
    for (incarnation, expected) in [(2, MemberStatus::Alive), (1, MemberStatus::Leaving)] {
        let mut s = new_serf(SerfConfig::lan());
        s.handle_push_pull(
            Instant(0),
            addr(2),
            left_in_peer_state("c", Some((1, NodeState::Dead))),
        );
        drain(&mut s);
        assert_eq!(status(&s, "c"), None, "an intent, not a member");
        alive(&mut s, "c", 4, incarnation, &[]);
        drain(&mut s);
        assert_eq!(status(&s, "c"), Some(expected), "incarnation {incarnation}");
    }
}

/// A peer holds a status time of ours newer than our own (say the leave
/// of our earlier life, which a push/pull reports as a plain status time):
/// we answer with a join newer still, so that nodes that took the leave
/// take us back. Our own status time, heard back, changes nothing.
#[test]
fn serf_answers_a_newer_status_time_of_its_own_with_a_fresh_join() {
    let mut s = new_serf(SerfConfig::lan());
    let ours = s.local_push_pull().status_ltimes["me"];
    let remote = |ltime| super::serf::PushPull {
        ltime: 12,
        status_ltimes: BTreeMap::from([("me".into(), ltime)]),
        left_members: Vec::new(),
        event_ltime: 1,
        events: vec![None; 512],
        query_ltime: 1,
    };
    let push_pull = |pp| PushPull {
        join: false,
        nodes: Vec::new(),
        user_state: encode_serf(&SerfMessage::PushPull(pp)),
    };
    s.handle_push_pull(Instant(0), addr(2), push_pull(remote(ours)));
    drain(&mut s);
    assert_eq!(s.stats().refuted_status_times, 0);
    s.handle_push_pull(Instant(0), addr(2), push_pull(remote(ours + 9)));
    drain(&mut s);
    assert_eq!(s.stats().refuted_status_times, 1);
    assert!(s.local_push_pull().status_ltimes["me"] > ours + 9);
    assert_eq!(status(&s, "me"), Some(MemberStatus::Alive));
}

/// A member taken for leaving comes back in a later life before this node
/// saw it go: a restarted member announces its old incarnation before it
/// refutes the record of its leave, or the leave's dead message was lost.
/// Once memberlist has it in a later life, the next join (any push/pull
/// carries one, however old) makes it alive again; serf would keep it
/// `leaving` for good. In the same life it stays leaving.
#[test]
fn serf_takes_a_member_leaving_from_an_earlier_life_back_when_it_shows_a_later_one() {
    let join = |s: &mut Serf, ltime| {
        let msg = SerfMessage::Join(Join {
            ltime,
            node: "c".into(),
        });
        user_msg(s, msg);
    };
    // Through a peer's record of life 1, met in life 1 first.
    let mut s = new_serf(SerfConfig::lan());
    s.handle_push_pull(
        Instant(0),
        addr(2),
        left_in_peer_state("c", Some((1, NodeState::Dead))),
    );
    alive(&mut s, "c", 4, 1, &[]);
    drain(&mut s);
    assert_eq!(status(&s, "c"), Some(MemberStatus::Leaving));
    join(&mut s, 3);
    assert_eq!(
        status(&s, "c"),
        Some(MemberStatus::Leaving),
        "still that life"
    );
    alive(&mut s, "c", 4, 2, &[]);
    join(&mut s, 3);
    assert_eq!(status(&s, "c"), Some(MemberStatus::Alive));

    // Through a gossiped leave that arrived in life 1.
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "c", 4, 1, &[]);
    let leave = SerfMessage::Leave(Leave {
        ltime: 8,
        node: "c".into(),
        prune: false,
    });
    user_msg(&mut s, leave);
    join(&mut s, 3);
    assert_eq!(
        status(&s, "c"),
        Some(MemberStatus::Leaving),
        "still that life"
    );
    alive(&mut s, "c", 4, 2, &[]);
    join(&mut s, 3);
    assert_eq!(status(&s, "c"), Some(MemberStatus::Alive));
    assert_eq!(s.stats().leaves_of_an_earlier_life, 1);
}

#[test]
fn serf_query_filters_select_nodes_and_tags() {
    let mut config = SerfConfig::lan();
    config.tags.insert("role".into(), "web-1".into());
    let mut s = new_serf(config);
    let query = |filters: Vec<Filter>, id| {
        SerfMessage::Query(Query {
            ltime: 3,
            id,
            addr: addr_bytes(addr(9).ip()),
            port: 7946,
            source_node: "q".into(),
            filters: filters.iter().map(encode_filter).collect(),
            flags: 0,
            relay_factor: 0,
            timeout_ns: 1_000_000_000,
            name: "hi".into(),
            payload: Vec::new(),
        })
    };
    let got = |outs: &[SerfOutput]| {
        events(outs)
            .iter()
            .filter(|e| matches!(e, SerfEvent::Query(_)))
            .count()
    };
    let tag = |expr: &str| Filter::Tag {
        tag: "role".into(),
        expr: expr.into(),
    };
    assert_eq!(
        got(&user_msg(
            &mut s,
            query(vec![Filter::Node(vec!["me".into()])], 1)
        )),
        1
    );
    assert_eq!(
        got(&user_msg(
            &mut s,
            query(vec![Filter::Node(vec!["x".into()])], 2)
        )),
        0
    );
    assert_eq!(got(&user_msg(&mut s, query(vec![tag("^web")], 3))), 1);
    assert_eq!(got(&user_msg(&mut s, query(vec![tag("^db")], 4))), 0);
    assert_eq!(got(&user_msg(&mut s, query(vec![tag("web-[0-9]")], 5))), 0);
    assert_eq!(s.stats().unsupported_filters, 1);
    assert_eq!(s.stats().queries_filtered, 3);
    // The same query again is a duplicate.
    assert_eq!(got(&user_msg(&mut s, query(vec![], 1))), 0);
    assert_eq!(s.stats().duplicate_queries, 1);
}

#[test]
fn serf_answers_conflict_queries_and_forwards_relays() {
    let mut s = new_serf(SerfConfig::lan());
    alive(&mut s, "a", 2, 1, &[]);
    drain(&mut s);
    let q = SerfMessage::Query(Query {
        ltime: 2,
        id: 9,
        addr: addr_bytes(addr(9).ip()),
        port: 7946,
        source_node: "q".into(),
        name: "_serf_conflict".into(),
        payload: b"a".to_vec(),
        timeout_ns: 1_000_000_000,
        ..Query::default()
    });
    let outs = user_msg(&mut s, q);
    assert!(events(&outs).is_empty(), "internal queries don't surface");
    let answer = outs.iter().find_map(|o| match o {
        SerfOutput::Memberlist(super::swim::Output::Packet { to, msgs }) if *to == addr(9) => {
            Some(msgs.clone())
        }
        _ => None,
    });
    let Some([Message::User(raw)]) = answer.as_deref() else {
        panic!("one user message to the querier: {outs:?}");
    };
    let SerfMessage::QueryResponse(resp) = decode_serf(raw).expect("decodes") else {
        panic!("a query response");
    };
    assert_eq!((resp.id, resp.from.as_str()), (9, "me"));
    let Ok(SerfMessage::ConflictResponse(Some(m))) = decode_serf(&resp.payload) else {
        panic!("a conflict response");
    };
    assert_eq!((m.name.as_str(), m.port, m.status), ("a", 7946, 1));
    let relay = SerfMessage::Relay(super::serf::Relay {
        dest_ip: addr_bytes(addr(8).ip()),
        dest_port: 7946,
        dest_zone: String::new(),
        dest_name: "x".into(),
        message: vec![5, 0x80],
    });
    let outs = user_msg(&mut s, relay);
    assert!(outs.iter().any(|o| matches!(o,
        SerfOutput::Memberlist(super::swim::Output::Packet { to, msgs })
            if *to == addr(8) && msgs == &vec![Message::User(vec![5, 0x80])])));
}

#[test]
fn serf_literal_tag_match_follows_go_regexp_for_literals() {
    assert_eq!(literal_match("web", "my-web-1"), Some(true));
    assert_eq!(literal_match("^web", "my-web"), Some(false));
    assert_eq!(literal_match("^web$", "web"), Some(true));
    assert_eq!(literal_match("1$", "web-1"), Some(true));
    assert_eq!(literal_match("", "anything"), Some(true));
    assert_eq!(literal_match("a.b", "a.b"), None);
}

#[test]
fn serf_counts_bad_input() {
    let mut s = new_serf(SerfConfig::lan());
    s.handle_user_message(Instant(0), &[]);
    s.handle_user_message(Instant(0), &[42, 1, 2]);
    s.handle_user_message(Instant(0), &[3, 0xc1]);
    s.handle_user_message(
        Instant(0),
        &encode_serf(&SerfMessage::KeyRequest(Default::default())),
    );
    let state = PushPull {
        join: false,
        nodes: Vec::new(),
        user_state: vec![3, 0x80],
    };
    s.handle_push_pull(Instant(0), addr(2), state);
    drain(&mut s);
    let st = s.stats();
    assert_eq!(
        (
            st.malformed_messages,
            st.unknown_message_types,
            st.unexpected_messages,
            st.bad_remote_states
        ),
        (2, 1, 1, 1)
    );
}

proptest! {
    /// Arbitrary bytes as serf messages and as push/pull user state never
    /// panic, and the machine's invariants hold after each.
    #[test]
    fn serf_survives_arbitrary_messages(
        inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..40)
    ) {
        let mut s = new_serf(SerfConfig::lan());
        for (k, bytes) in inputs.iter().enumerate() {
            let mut bytes = bytes.clone();
            // Steer half of them to real serf type bytes.
            if k % 2 == 0 && !bytes.is_empty() {
                bytes[0] %= 10;
            }
            s.handle_user_message(Instant(k as u64), &bytes);
            let state = PushPull { join: k % 3 == 0, nodes: Vec::new(), user_state: bytes };
            s.handle_push_pull(Instant(k as u64), addr(2), state);
            drain(&mut s);
            s.check_invariants();
            // Whatever state that left, serf's push/pull of it round-trips.
            let pp = s.local_push_pull();
            let bytes = encode_serf(&SerfMessage::PushPull(pp.clone()));
            prop_assert_eq!(decode_serf(&bytes), Ok(SerfMessage::PushPull(pp)));
        }
    }
}

//! Tests of serf's messages. Two kinds of evidence:
//! - golden vectors printed by Go 1.19 with go-msgpack 0.5.5 encoding Go
//!   structs with serf's field names and types (`LamportTime` is uint64,
//!   `Timeout` a `time.Duration`), prefixed with serf's type byte as
//!   `encodeMessage` does;
//! - packets and streams captured with tcpdump between two real serf 0.9.4
//!   agents (Debian bookworm's `serf`, node `a` with tag `role=web`, node
//!   `b` joining it, then `serf event deploy v1`, `serf query uptime` and
//!   `serf leave` on b), kept as fuzz seeds in
//!   `fuzz/corpus/gossip_{packet,stream}/valid-serf094-*`.

use super::*;
use crate::gossip::codec::tests::hex;
use crate::gossip::codec::{decode_packet, decode_packet_with, encode_packet, Inbound, Outbound};
use crate::gossip::crypto::{decode_key, Keyring};
use crate::gossip::message::{Message, NodeState};
use crate::gossip::stream::{decode_stream, encode_stream};
use crate::rng::Rng;
use proptest::prelude::*;

fn golden() -> Vec<(SerfMessage, &'static str)> {
    let status = BTreeMap::from([("a".to_owned(), 3)]);
    vec![
        (
            SerfMessage::Join(Join {
                ltime: 5,
                node: "a".into(),
            }),
            "0182a54c54696d6505a44e6f6465a161",
        ),
        (
            SerfMessage::Leave(Leave {
                ltime: 6,
                node: "a".into(),
                prune: true,
            }),
            "0083a54c54696d6506a44e6f6465a161a55072756e65c3",
        ),
        // "CC" sorts before "LTime".
        (
            SerfMessage::UserEvent(UserEvent {
                ltime: 7,
                name: "deploy".into(),
                payload: b"v1".to_vec(),
                cc: true,
            }),
            "0384a24343c3a54c54696d6507a44e616d65a66465706c6f79a75061796c6f6164a27631",
        ),
        // Timeout 5s is a positive Go int64: uint64 form (0xcf) in v0.5.
        (
            SerfMessage::Query(Query {
                ltime: 8,
                id: 12345,
                addr: vec![127, 0, 0, 1],
                port: 7946,
                source_node: "a".into(),
                filters: vec![
                    encode_filter(&Filter::Node(vec!["a".into(), "b".into()])),
                    encode_filter(&Filter::Tag {
                        tag: "role".into(),
                        expr: "web.*".into(),
                    }),
                ],
                flags: QUERY_FLAG_ACK,
                relay_factor: 0,
                timeout_ns: 5_000_000_000,
                name: "uptime".into(),
                payload: b"p".to_vec(),
            }),
            "048ba441646472a47f000001a746696c7465727392a60092a161a162b60182a445787072a57765622e2aa3546167a4726f6c65a5466c61677301a24944cd3039a54c54696d6508a44e616d65a6757074696d65a75061796c6f6164a170a4506f7274cd1f0aab52656c6179466163746f7200aa536f757263654e6f6465a161a754696d656f7574cf000000012a05f200",
        ),
        (
            SerfMessage::QueryResponse(QueryResponse {
                ltime: 8,
                id: 12345,
                from: "b".into(),
                flags: QUERY_FLAG_ACK,
                payload: vec![],
            }),
            "0585a5466c61677301a446726f6da162a24944cd3039a54c54696d6508a75061796c6f6164c0",
        ),
        // A nil slot in the event ring is msgpack nil.
        (
            SerfMessage::PushPull(PushPull {
                ltime: 10,
                status_ltimes: status,
                left_members: vec!["z".into()],
                event_ltime: 4,
                events: vec![
                    None,
                    Some(BufferedEvents {
                        ltime: 2,
                        events: vec![BufferedEvent {
                            name: "deploy".into(),
                            payload: b"v1".to_vec(),
                        }],
                    }),
                ],
                query_ltime: 1,
            }),
            "0286aa4576656e744c54696d6504a64576656e747392c082a64576656e74739182a44e616d65a66465706c6f79a75061796c6f6164a27631a54c54696d6502a54c54696d650aab4c6566744d656d6265727391a17aaa51756572794c54696d6501ac5374617475734c54696d657381a16103",
        ),
        // net.UDPAddr is a struct {IP, Port, Zone}; Zone "" is still sent.
        (
            SerfMessage::Relay(Relay {
                dest_ip: vec![127, 0, 0, 1],
                dest_port: 7946,
                dest_zone: String::new(),
                dest_name: "a".into(),
                message: vec![],
            }),
            "0982a8446573744164647283a24950a47f000001a4506f7274cd1f0aa45a6f6e65a0a8446573744e616d65a161",
        ),
        (
            SerfMessage::KeyRequest(KeyRequest { key: vec![0; 16] }),
            "0781a34b6579b000000000000000000000000000000000",
        ),
        (
            SerfMessage::KeyResponse(KeyResponse {
                result: true,
                message: String::new(),
                keys: vec!["AAAAAAAAAAAAAAAAAAAAAA==".into()],
                primary_key: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            }),
            "0884a44b65797391b8414141414141414141414141414141414141414141413d3da74d657373616765a0aa5072696d6172794b6579b8414141414141414141414141414141414141414141413d3da6526573756c74c3",
        ),
    ]
}

#[test]
fn serf_messages_match_go_bytes() {
    for (msg, go) in golden() {
        assert_eq!(encode_serf(&msg), hex(go), "encoding {msg:?}");
        assert_eq!(decode_serf(&hex(go)).unwrap(), msg);
    }
}

#[test]
fn relay_carries_the_inner_message_verbatim() {
    let inner = encode_serf(&golden()[4].0);
    let relay = SerfMessage::Relay(Relay {
        dest_ip: vec![10, 0, 0, 9],
        dest_port: 8301,
        dest_zone: String::new(),
        dest_name: "c".into(),
        message: inner.clone(),
    });
    let bytes = encode_serf(&relay);
    let SerfMessage::Relay(back) = decode_serf(&bytes).unwrap() else {
        panic!("not a relay");
    };
    assert_eq!(back.message, inner);
    assert_eq!(decode_serf(&back.message).unwrap(), golden()[4].0);
}

#[test]
fn filters_and_conflict_responses_round_trip() {
    for f in [
        Filter::Node(vec!["a".into(), "b".into()]),
        Filter::Tag {
            tag: "role".into(),
            expr: "web.*".into(),
        },
    ] {
        assert_eq!(decode_filter(&encode_filter(&f)).unwrap(), f);
    }
    assert_eq!(
        encode_filter(&Filter::Node(vec!["a".into(), "b".into()])),
        hex("0092a161a162")
    );
    assert!(decode_filter(&[7, 0x90]).is_err());
    let member = Member {
        name: "a".into(),
        addr: vec![127, 0, 0, 1],
        port: 7946,
        tags: BTreeMap::from([("role".into(), "web".into())]),
        status: 1,
        vsn: [2, 5, 4, 2, 5, 4],
    };
    for m in [None, Some(member)] {
        let msg = SerfMessage::ConflictResponse(m);
        assert_eq!(decode_serf(&encode_serf(&msg)).unwrap(), msg);
    }
    assert_eq!(encode_serf(&SerfMessage::ConflictResponse(None)), [6, 0xc0]);
}

#[test]
fn tags_match_go_and_respect_the_meta_limit() {
    let tags = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    assert_eq!(encode_tags(&tags).unwrap(), hex("ff81a4726f6c65a3776562"));
    assert_eq!(decode_tags(&hex("ff81a4726f6c65a3776562")).unwrap(), tags);
    // Pre-0.3 serf put the bare role in the meta.
    assert_eq!(decode_tags(b"web").unwrap(), tags);
    assert_eq!(
        decode_tags(b"").unwrap(),
        BTreeMap::from([("role".to_owned(), String::new())])
    );
    let big = BTreeMap::from([("k".to_owned(), "v".repeat(600))]);
    assert!(matches!(encode_tags(&big), Err(WireError::TooLarge { .. })));
    assert!(decode_tags(&[255, 0x81, 0x01, 0x02]).is_err());
}

const CAPTURE_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

/// User messages in a packet, decoded as serf messages.
fn serf_in(packet: &[u8], keyring: Option<&Keyring>) -> Vec<SerfMessage> {
    decode_packet(packet, keyring, "")
        .unwrap()
        .messages
        .into_iter()
        .filter_map(|m| match m {
            Message::User(b) => Some(decode_serf(&b).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn real_serf_packets_decode_and_reencode_identically() {
    // b's first packet to a: CRC, then a compound of b's alive (with a's
    // tags in the meta, as b relays) and b's serf join intent.
    let first = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-01.bin");
    let packet = decode_packet(first, None, "").unwrap();
    let alive = packet
        .messages
        .iter()
        .find_map(|m| match m {
            Message::Alive(a) if a.node == "a" => Some(a.clone()),
            _ => None,
        })
        .expect("alive for a");
    assert_eq!(alive.port, 7946);
    assert_eq!(decode_tags(&alive.meta).unwrap()["role"], "web");
    // CRC + user(join b at LTime 1), re-encoded byte for byte (compression
    // does not shrink it, so neither side uses it).
    let join = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-03.bin");
    assert_eq!(
        serf_in(join, None),
        vec![SerfMessage::Join(Join {
            ltime: 1,
            node: "b".into()
        })]
    );
    let msgs = decode_packet(join, None, "").unwrap().messages;
    let out = Outbound::new("", None);
    assert_eq!(
        encode_packet(&msgs, &out, &mut Rng::from_seed(0)).unwrap(),
        join
    );
    // The query from `serf query uptime`, in a CRC'd compound.
    let query = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-12.bin");
    let queries: Vec<_> = serf_in(query, None)
        .into_iter()
        .filter_map(|m| match m {
            SerfMessage::Query(q) => Some(q),
            _ => None,
        })
        .collect();
    assert_eq!(queries[0].name, "uptime");
    assert_eq!(queries[0].source_node, "a");
    // b's leave intent, then its own dead message (a graceful leave).
    let leave = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-26.bin");
    assert_eq!(
        serf_in(leave, None),
        vec![SerfMessage::Leave(Leave {
            ltime: 2,
            node: "b".into(),
            prune: false
        })]
    );
    let dead = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-27.bin");
    let msgs = decode_packet(dead, None, "").unwrap().messages;
    assert!(matches!(&msgs[..], [Message::Dead(d)] if d.node == "b" && d.from == "b"));
}

#[test]
fn real_serf_user_event_arrives_compressed() {
    // Compression is on in serf's LAN profile: the compound carrying the
    // `deploy` event was LZW-compressed by Go.
    let packed =
        include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-plain-udp-15.bin");
    assert_eq!(packed[0], 9);
    let events: Vec<_> = serf_in(packed, None)
        .into_iter()
        .filter_map(|m| match m {
            SerfMessage::UserEvent(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].name.as_str(), &events[0].payload[..]),
        ("deploy", &b"v1"[..])
    );
}

#[test]
fn real_serf_push_pull_streams_decode() {
    // b dials a and pushes what it knows (itself); a answers with what it
    // knew before merging (itself).
    let streams: [(&[u8], &[&str]); 2] = [
        (
            include_bytes!(
                "../../../fuzz/corpus/gossip_stream/valid-serf094-plain-tcp-35114-to-7946.bin"
            ),
            &["b"],
        ),
        (
            include_bytes!(
                "../../../fuzz/corpus/gossip_stream/valid-serf094-plain-tcp-7946-to-35114.bin"
            ),
            &["a"],
        ),
    ];
    for (stream, names) in streams {
        assert_eq!(stream[0], 9, "serf compresses its streams");
        let (msg, used) = decode_stream(stream, &Inbound::new("", None)).unwrap();
        assert_eq!(used, stream.len());
        let Message::PushPull(pp) = msg else {
            panic!("not a push/pull: {msg:?}");
        };
        assert!(pp.join);
        let mut got: Vec<&str> = pp.nodes.iter().map(|n| n.name.as_str()).collect();
        got.sort_unstable();
        assert_eq!(got, names);
        for n in &pp.nodes {
            assert_eq!(n.state, NodeState::Alive);
            assert_eq!(n.addr, [127, 0, 0, 1]);
            let tags = decode_tags(&n.meta).unwrap();
            assert_eq!(
                tags.get("role").map(String::as_str),
                (n.name == "a").then_some("web")
            );
        }
        let SerfMessage::PushPull(state) = decode_serf(&pp.user_state).unwrap() else {
            panic!("user state is not serf's push/pull");
        };
        for name in names {
            assert!(
                state.status_ltimes.contains_key(*name),
                "{name} in {state:?}"
            );
        }
        // Re-encoded (and compressed) as memberlist does, the stream is
        // byte-identical.
        let again = encode_stream(
            &Message::PushPull(pp),
            &Outbound::new("", None),
            &mut Rng::from_seed(0),
        );
        assert_eq!(again.unwrap(), stream);
    }
}

#[test]
fn real_encrypted_serf_traffic_opens_with_the_agents_key() {
    let ring = Keyring::new(decode_key(CAPTURE_KEY).unwrap()).unwrap();
    let packet = include_bytes!("../../../fuzz/corpus/gossip_packet/valid-serf094-enc-udp-30.bin");
    assert!(!decode_packet(packet, Some(&ring), "")
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(
        decode_packet(packet, Some(&Keyring::new(vec![1; 32]).unwrap()), ""),
        Err(WireError::NoKeyCouldDecrypt)
    );
    let lenient = Inbound {
        verify_incoming: false,
        ..Inbound::new("", None)
    };
    assert!(decode_packet_with(packet, &lenient).is_err());
    let stream = include_bytes!(
        "../../../fuzz/corpus/gossip_stream/valid-serf094-enc-tcp-42232-to-7946.bin"
    );
    let (msg, used) = decode_stream(stream, &Inbound::new("", Some(&ring))).unwrap();
    assert_eq!(used, stream.len());
    assert!(matches!(msg, Message::PushPull(pp) if pp.join && !pp.nodes.is_empty()));
}

fn arb_text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..24)
}

fn arb_serf() -> impl Strategy<Value = SerfMessage> {
    prop_oneof![
        (any::<u64>(), arb_text())
            .prop_map(|(ltime, node)| SerfMessage::Join(Join { ltime, node })),
        (any::<u64>(), arb_text(), any::<bool>())
            .prop_map(|(ltime, node, prune)| SerfMessage::Leave(Leave { ltime, node, prune })),
        (any::<u64>(), arb_text(), arb_bytes(), any::<bool>()).prop_map(
            |(ltime, name, payload, cc)| {
                SerfMessage::UserEvent(UserEvent {
                    ltime,
                    name,
                    payload,
                    cc,
                })
            }
        ),
        (
            (
                any::<u64>(),
                any::<u32>(),
                arb_bytes(),
                any::<u16>(),
                arb_text()
            ),
            (
                proptest::collection::vec(arb_bytes(), 0..3),
                any::<u32>(),
                any::<u8>(),
                any::<i64>()
            ),
            (arb_text(), arb_bytes())
        )
            .prop_map(
                |(
                    (ltime, id, addr, port, source_node),
                    (filters, flags, relay_factor, timeout_ns),
                    (name, payload),
                )| {
                    SerfMessage::Query(Query {
                        ltime,
                        id,
                        addr,
                        port,
                        source_node,
                        filters,
                        flags,
                        relay_factor,
                        timeout_ns,
                        name,
                        payload,
                    })
                }
            ),
        (
            any::<u64>(),
            proptest::collection::btree_map(arb_text(), any::<u64>(), 0..4),
            proptest::collection::vec(arb_text(), 0..3),
            proptest::collection::vec(
                proptest::option::of((
                    any::<u64>(),
                    proptest::collection::vec((arb_text(), arb_bytes()), 0..3)
                )),
                0..4
            ),
        )
            .prop_map(|(ltime, status_ltimes, left_members, events)| {
                SerfMessage::PushPull(PushPull {
                    ltime,
                    status_ltimes,
                    left_members,
                    event_ltime: ltime / 2,
                    events: events
                        .into_iter()
                        .map(|slot| {
                            slot.map(|(ltime, list)| BufferedEvents {
                                ltime,
                                events: list
                                    .into_iter()
                                    .map(|(name, payload)| BufferedEvent { name, payload })
                                    .collect(),
                            })
                        })
                        .collect(),
                    query_ltime: ltime / 3,
                })
            }),
        (
            any::<bool>(),
            arb_text(),
            proptest::collection::vec(arb_text(), 0..3),
            arb_text()
        )
            .prop_map(
                |(result, message, keys, primary_key)| SerfMessage::KeyResponse(KeyResponse {
                    result,
                    message,
                    keys,
                    primary_key
                })
            ),
    ]
}

proptest! {
    #[test]
    fn serf_messages_round_trip(msg in arb_serf()) {
        prop_assert_eq!(decode_serf(&encode_serf(&msg)).unwrap(), msg);
    }

    #[test]
    fn tags_round_trip(tags in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,16}", 0..8)) {
        let meta = encode_tags(&tags).unwrap();
        prop_assert_eq!(decode_tags(&meta).unwrap(), tags);
    }

    #[test]
    fn decoding_any_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_serf(&data);
        let _ = decode_tags(&data);
        let _ = decode_filter(&data);
    }
}

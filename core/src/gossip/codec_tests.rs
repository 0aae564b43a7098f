//! Tests of the packet codec. The golden vectors were printed by a Go test
//! compiled into memberlist 0.2.2's own package (Debian bookworm's
//! `golang-github-hashicorp-memberlist-dev`, with go-msgpack 0.5.5 and Go
//! 1.19), calling memberlist's unexported `encode`, `makeCompoundMessage`,
//! `compressPayload` and `crc32.ChecksumIEEE` on the values named in each
//! test. They agree with a derivation by hand from go-msgpack's rules, e.g.
//! `ping{SeqNo: 1, Node: "a"}`:
//!
//! ```text
//! 00                      pingMsg
//! 82                      map of 2 (SourceAddr/Port/Node omitempty: left out)
//! a4 4e 6f 64 65 a1 61    "Node" "a"      keys sorted bytewise: Node < SeqNo
//! a5 53 65 71 4e 6f 01    "SeqNo" 1       positive fixint
//! ```

use super::*;
use crate::rng::Rng;
use proptest::prelude::*;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const VSN: Vsn = [1, 5, 2, 2, 5, 4];

/// (Go value, Go bytes) pairs.
fn golden() -> Vec<(Message, &'static str)> {
    let long = "n".repeat(40);
    vec![
        (
            Message::Ping(Ping {
                seq_no: 1,
                node: "a".into(),
                ..Ping::default()
            }),
            "0082a44e6f6465a161a55365714e6f01",
        ),
        (
            Message::Ping(Ping {
                seq_no: 300,
                node: "node-b".into(),
                source_addr: vec![127, 0, 0, 1],
                source_port: 7946,
                source_node: "node-a".into(),
            }),
            "0085a44e6f6465a66e6f64652d62a55365714e6fcd012caa536f7572636541646472a47f000001aa536f757263654e6f6465a66e6f64652d61aa536f75726365506f7274cd1f0a",
        ),
        (
            Message::IndirectPing(IndirectPing {
                seq_no: 70000,
                target: vec![10, 0, 0, 2],
                port: 8301,
                node: "c".into(),
                nack: true,
                source_addr: vec![10, 0, 0, 1],
                source_port: 8301,
                source_node: "a".into(),
            }),
            "0188a44e61636bc3a44e6f6465a163a4506f7274cd206da55365714e6fce00011170aa536f7572636541646472a40a000001aa536f757263654e6f6465a161aa536f75726365506f7274cd206da6546172676574a40a000002",
        ),
        // A nil payload is msgpack nil (0xc0).
        (
            Message::Ack(Ack {
                seq_no: 1,
                payload: vec![],
            }),
            "0282a75061796c6f6164c0a55365714e6f01",
        ),
        (
            Message::Ack(Ack {
                seq_no: u32::MAX,
                payload: b"xyz".to_vec(),
            }),
            "0282a75061796c6f6164a378797aa55365714e6fceffffffff",
        ),
        (Message::Nack(Nack { seq_no: 200 }), "0b81a55365714e6fccc8"),
        (
            Message::Err(ErrResp {
                error: "boom".into(),
            }),
            "0d81a54572726f72a4626f6f6d",
        ),
        (
            Message::Suspect(Suspect {
                incarnation: 3,
                node: "b".into(),
                from: "a".into(),
            }),
            "0383a446726f6da161ab496e6361726e6174696f6e03a44e6f6465a162",
        ),
        // Vsn is a Go []uint8, i.e. []byte: a 6-byte string.
        (
            Message::Alive(Alive {
                incarnation: 1,
                node: "a".into(),
                addr: vec![127, 0, 0, 1],
                port: 7946,
                meta: vec![0xff, 0x80],
                vsn: VSN,
            }),
            "0486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461a2ff80a44e6f6465a161a4506f7274cd1f0aa356736ea6010502020504",
        ),
        (
            Message::Dead(Dead {
                incarnation: 9,
                node: "b".into(),
                from: "b".into(),
            }),
            "0583a446726f6da162ab496e6361726e6174696f6e09a44e6f6465a162",
        ),
        // 40-byte strings are str16 (0xda 0x00 0x28), not str8: go-msgpack
        // without WriteExt has no str8. 128 is uint8 (0xcc 0x80).
        (
            Message::Dead(Dead {
                incarnation: 128,
                node: long.clone(),
                from: long,
            }),
            "0583a446726f6dda00286e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6eab496e6361726e6174696f6ecc80a44e6f6465da00286e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e",
        ),
        (Message::User(b"hello".to_vec()), "0868656c6c6f"),
    ]
}

#[test]
fn messages_match_go_memberlist_bytes() {
    for (msg, go) in golden() {
        assert_eq!(encode_message(&msg), hex(go), "encoding {msg:?}");
        assert_eq!(decode_message(&hex(go)).unwrap(), msg);
        // And each also arrives as a packet on its own, except errResp,
        // which memberlist only sends on streams.
        let packet = decode_packet(&hex(go), None, "");
        if matches!(msg, Message::Err(_)) {
            assert!(packet.is_err());
        } else {
            assert_eq!(packet.unwrap().messages, vec![msg]);
        }
    }
}

#[test]
fn push_pull_matches_go_stream_bytes() {
    // sendLocalState's buffer for two nodes and 3 bytes of user state;
    // node b has nil Meta (0xc0), State is a Go int (0 alive, 2 dead).
    let go = "0683a44a6f696ec3a54e6f64657302ac5573657253746174654c656e0387a441646472a47f000001ab496e6361726e6174696f6e01a44d657461a2ff80a44e616d65a161a4506f7274cd1f0aa5537461746500a356736ea601050202050487a441646472a47f000002ab496e6361726e6174696f6e02a44d657461c0a44e616d65a162a4506f7274cd1f0ba5537461746502a356736ea601050202050402dead";
    let msg = Message::PushPull(sample_push_pull());
    assert_eq!(encode_message(&msg), hex(go));
    assert_eq!(decode_message(&hex(go)).unwrap(), msg);
}

pub(crate) fn sample_push_pull() -> PushPull {
    PushPull {
        join: true,
        nodes: vec![
            PushNodeState {
                name: "a".into(),
                addr: vec![127, 0, 0, 1],
                port: 7946,
                meta: vec![0xff, 0x80],
                incarnation: 1,
                state: NodeState::Alive,
                vsn: VSN,
            },
            PushNodeState {
                name: "b".into(),
                addr: vec![127, 0, 0, 2],
                port: 7947,
                meta: vec![],
                incarnation: 2,
                state: NodeState::Dead,
                vsn: VSN,
            },
        ],
        user_state: vec![2, 0xde, 0xad],
    }
}

#[test]
fn push_pull_header_reads_both_go_msgpack_int_forms() {
    // v0.5.5 writes Nodes: 200 as uint8 (0xcc 0xc8); go-msgpack v2 writes
    // it as int16 (0xd1 0x00 0xc8). Both must give 200 (then truncation,
    // since no nodes follow).
    for nodes in ["ccc8", "d100c8"] {
        let header = hex(&format!(
            "83a44a6f696ec2a54e6f646573{nodes}ac5573657253746174654c656e00"
        ));
        let err = decode_push_pull(&header).unwrap_err();
        assert!(matches!(err, WireError::Truncated { .. }), "{err:?}");
    }
    let negative = hex("81a54e6f646573ff");
    assert!(matches!(
        decode_push_pull(&negative),
        Err(WireError::Field { field: "Nodes", .. })
    ));
}

#[test]
fn unknown_fields_are_skipped_and_missing_ones_default() {
    // A ping from a future memberlist with an extra "Zone" field, and no
    // Node at all.
    let mut buf = vec![0x00, 0x82];
    msgpack::write_key(&mut buf, "Zone");
    msgpack::write_str(&mut buf, b"z1");
    msgpack::write_key(&mut buf, "SeqNo");
    msgpack::write_uint(&mut buf, 9);
    assert_eq!(
        decode_message(&buf).unwrap(),
        Message::Ping(Ping {
            seq_no: 9,
            ..Ping::default()
        })
    );
}

#[test]
fn compound_matches_go_and_keeps_whole_parts_of_a_truncated_one() {
    let go =
        hex("0702001000120082a44e6f6465a161a55365714e6f010282a75061796c6f6164c0a55365714e6f01");
    let (ping, ack) = (golden()[0].0.clone(), golden()[3].0.clone());
    let parts = [encode_message(&ping), encode_message(&ack)];
    assert_eq!(encode_compound(&parts).unwrap(), go);
    let packet = decode_packet(&go, None, "").unwrap();
    assert_eq!(packet.messages, vec![ping.clone(), ack]);
    assert_eq!(packet.truncated_parts, 0);
    // Cut inside the second part: the first survives, one is truncated.
    let cut = decode_packet(&go[..go.len() - 3], None, "").unwrap();
    assert_eq!(cut.messages, vec![ping]);
    assert_eq!(cut.truncated_parts, 1);
    // Cut inside the length table: the whole compound is refused.
    assert_eq!(
        decode_packet(&go[..4], None, ""),
        Err(WireError::Compound("truncated len slice"))
    );
    // A bad part is reported, the good one kept.
    let mixed = encode_compound(&[encode_message(&golden()[5].0), vec![0x63, 1]]).unwrap();
    let packet = decode_packet(&mixed, None, "").unwrap();
    assert_eq!(packet.messages, vec![golden()[5].0.clone()]);
    assert_eq!(
        packet.part_errors,
        vec![WireError::UnknownMessageType(0x63)]
    );
    assert!(encode_compound(&vec![vec![8u8]; 256]).is_err());
}

#[test]
fn crc_is_ieee_not_castagnoli() {
    // The standard check value of CRC-32/IEEE (Go printed cbf43926 too).
    assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
    assert_ne!(
        crc32_ieee(b"123456789"),
        crate::checksum::checksum(b"123456789")
    );
    let ping = hex("0082a44e6f6465a161a55365714e6f01");
    let mut packet = vec![12];
    packet.extend(crc32_ieee(&ping).to_be_bytes());
    packet.extend(&ping);
    assert_eq!(decode_packet(&packet, None, "").unwrap().messages.len(), 1);
    *packet.last_mut().unwrap() ^= 1;
    assert!(matches!(
        decode_packet(&packet, None, ""),
        Err(WireError::BadChecksum { .. })
    ));
}

#[test]
fn compressed_ping_matches_go() {
    // compressPayload(ping_a): {"Algo": 0, "Buf": <20 bytes of LZW>}.
    let go = hex("0982a4416c676f00a3427566b400010822e5e40d9932a1c2949a52264ec1000101");
    let ping = hex("0082a44e6f6465a161a55365714e6f01");
    assert_eq!(compress_payload(&ping), go);
    let packet = decode_packet(&go, None, "").unwrap();
    assert_eq!(packet.messages, vec![golden()[0].0.clone()]);
    let mut algo1 = go.clone();
    algo1[7] = 1;
    assert_eq!(
        decode_packet(&algo1, None, ""),
        Err(WireError::UnknownCompression(1))
    );
}

#[test]
fn labels_must_match() {
    let ping = encode_message(&golden()[0].0);
    let mut labelled = label_header("dc1").unwrap();
    assert_eq!(labelled, [244, 3, b'd', b'c', b'1']);
    labelled.extend(&ping);
    assert_eq!(
        decode_packet(&labelled, None, "dc1")
            .unwrap()
            .messages
            .len(),
        1
    );
    assert_eq!(
        decode_packet(&labelled, None, "dc2"),
        Err(WireError::LabelMismatch {
            expected: "dc2".into(),
            got: "dc1".into()
        })
    );
    // An unlabelled packet is refused by a labelled pool, and vice versa.
    assert!(matches!(
        decode_packet(&ping, None, "dc1"),
        Err(WireError::LabelMismatch { .. })
    ));
    assert!(matches!(
        decode_packet(&labelled, None, ""),
        Err(WireError::LabelMismatch { .. })
    ));
    assert!(matches!(
        decode_packet(&[244, 0, 0], None, ""),
        Err(WireError::BadLabel(_))
    ));
    assert!(matches!(
        decode_packet(&[244, 9, 1], None, ""),
        Err(WireError::Truncated { need: 11, .. })
    ));
    // Skipping the check assumes our label and refuses a present one.
    let skip = Inbound {
        skip_label_check: true,
        ..Inbound::new("dc1", None)
    };
    assert!(decode_packet_with(&ping, &skip).is_ok());
    assert!(decode_packet_with(&labelled, &skip).is_err());
    assert!(label_header(&"x".repeat(256)).is_err());
    assert!(label_header("").unwrap().is_empty());
}

#[test]
fn sealed_packets_open_with_every_option() {
    let ring = Keyring::with_keys(vec![1; 32], vec![vec![2; 16]]).unwrap();
    let secondary_only = Keyring::new(vec![2; 16]).unwrap();
    let mut rng = Rng::from_seed(11);
    let msgs: Vec<Message> = golden()
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| !matches!(m, Message::Err(_)))
        .collect();
    for label in ["", "dc1"] {
        for keyring in [None, Some(&ring)] {
            for (compress, crc) in [(false, false), (true, true), (true, false)] {
                let out = Outbound {
                    compress,
                    crc,
                    ..Outbound::new(label, keyring)
                };
                let packet = encode_packet(&msgs, &out, &mut rng).unwrap();
                let got = decode_packet(&packet, keyring, label).unwrap();
                assert_eq!(got.messages, msgs, "label {label:?} compress {compress}");
                assert!(got.part_errors.is_empty());
            }
        }
    }
    // A node whose keyring only has the sender's secondary key cannot read
    // what the primary sealed; one whose primary differs but holds the
    // sender's primary as secondary can.
    let packet = encode_packet(&msgs, &Outbound::new("", Some(&ring)), &mut rng).unwrap();
    assert_eq!(
        decode_packet(&packet, Some(&secondary_only), ""),
        Err(WireError::NoKeyCouldDecrypt)
    );
    let rotated = Keyring::with_keys(vec![2; 16], vec![vec![1; 32]]).unwrap();
    assert_eq!(
        decode_packet(&packet, Some(&rotated), "").unwrap().messages,
        msgs
    );
    // Plaintext is refused when encryption is on, unless verify_incoming
    // is off (rolling encryption out).
    let plain = encode_packet(&msgs, &Outbound::new("", None), &mut rng).unwrap();
    assert!(decode_packet(&plain, Some(&ring), "").is_err());
    let lenient = Inbound {
        verify_incoming: false,
        ..Inbound::new("", Some(&ring))
    };
    assert_eq!(decode_packet_with(&plain, &lenient).unwrap().messages, msgs);
    // The label is authenticated: the same bytes under another label header
    // do not open.
    let sealed = encode_packet(&msgs, &Outbound::new("dc1", Some(&ring)), &mut rng).unwrap();
    let mut relabelled = label_header("dc2").unwrap();
    relabelled.extend_from_slice(&sealed[5..]);
    assert_eq!(
        decode_packet(&relabelled, Some(&ring), "dc2"),
        Err(WireError::NoKeyCouldDecrypt)
    );
}

#[test]
fn stream_only_and_framing_types_are_refused_in_packets() {
    let mut rng = Rng::from_seed(1);
    let pp = Message::PushPull(sample_push_pull());
    assert!(encode_packet(
        std::slice::from_ref(&pp),
        &Outbound::new("", None),
        &mut rng
    )
    .is_err());
    assert!(matches!(
        decode_packet(&encode_message(&pp), None, ""),
        Err(WireError::UnexpectedMessageType { got: 6, .. })
    ));
    assert_eq!(decode_packet(&[], None, ""), Err(WireError::Empty));
    assert_eq!(
        decode_packet(&[200], None, ""),
        Err(WireError::UnknownMessageType(200))
    );
    assert!(matches!(
        decode_packet(&vec![8; 70_000], None, ""),
        Err(WireError::TooLarge { .. })
    ));
    // compound(compound(compound(...))) deeper than the limit.
    let mut nested = encode_message(&golden()[0].0);
    for _ in 0..=GOSSIP_NESTING_MAX {
        nested = encode_compound(&[nested]).unwrap();
    }
    let packet = decode_packet(&nested, None, "").unwrap();
    assert_eq!(packet.part_errors, vec![WireError::TooDeep]);
}

#[test]
fn packer_respects_the_budget_like_send_msg() {
    let out = Outbound::new("dc1", None);
    let budget = Packer::budget(1400, &out);
    assert_eq!(budget, 1400 - 5 - 5);
    let ring = Keyring::new(vec![0; 16]).unwrap();
    assert_eq!(
        Packer::budget(1400, &Outbound::new("", Some(&ring))),
        1400 - 5 - 29
    );
    assert!(Packer::new(budget).finish_is_none_when_empty());
    let mut packer = Packer::new(budget);
    packer.push(vec![8; 1000]).unwrap();
    // 2 + 2*2 + 1000 + 384 = 1390 = budget: fits exactly.
    packer.push(vec![8; 384]).unwrap();
    assert_eq!(packer.remaining(), 0);
    assert_eq!(packer.push(vec![8; 1]), Err(vec![8; 1]));
    let packet = packer.finish().unwrap();
    assert_eq!(packet.len(), budget);
    let sealed = seal_packet(
        &packet,
        &Outbound {
            compress: false,
            ..out
        },
        &mut Rng::from_seed(1),
    )
    .unwrap();
    assert_eq!(sealed.len(), 1400);
    // One message alone is sent as itself, even over the budget.
    let mut alone = Packer::new(10);
    alone.push(vec![8; 50]).unwrap();
    assert_eq!(alone.finish().unwrap(), vec![8; 50]);
    // Never more than 255 parts.
    let mut many = Packer::new(1 << 20);
    for _ in 0..255 {
        many.push(vec![8]).unwrap();
    }
    assert!(many.push(vec![8]).is_err());
    assert_eq!(many.len(), 255);
}

impl Packer {
    fn finish_is_none_when_empty(self) -> bool {
        self.is_empty() && self.finish().is_none()
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9.-]{0,12}", "\\PC{0,40}"]
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..48)
}

pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u32>(),
            arb_string(),
            arb_bytes(),
            any::<u16>(),
            arb_string()
        )
            .prop_map(|(seq_no, node, source_addr, source_port, source_node)| {
                Message::Ping(Ping {
                    seq_no,
                    node,
                    source_addr,
                    source_port,
                    source_node,
                })
            }),
        (
            (
                any::<u32>(),
                arb_bytes(),
                any::<u16>(),
                arb_string(),
                any::<bool>()
            ),
            (arb_bytes(), any::<u16>(), arb_string())
        )
            .prop_map(
                |((seq_no, target, port, node, nack), (source_addr, source_port, source_node))| {
                    Message::IndirectPing(IndirectPing {
                        seq_no,
                        target,
                        port,
                        node,
                        nack,
                        source_addr,
                        source_port,
                        source_node,
                    })
                }
            ),
        (any::<u32>(), arb_bytes())
            .prop_map(|(seq_no, payload)| Message::Ack(Ack { seq_no, payload })),
        any::<u32>().prop_map(|seq_no| Message::Nack(Nack { seq_no })),
        (any::<u32>(), arb_string(), arb_string()).prop_map(|(incarnation, node, from)| {
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }),
        (any::<u32>(), arb_string(), arb_string()).prop_map(|(incarnation, node, from)| {
            Message::Dead(Dead {
                incarnation,
                node,
                from,
            })
        }),
        (
            any::<u32>(),
            arb_string(),
            arb_bytes(),
            any::<u16>(),
            arb_bytes(),
            any::<[u8; 6]>()
        )
            .prop_map(|(incarnation, node, addr, port, meta, vsn)| {
                Message::Alive(Alive {
                    incarnation,
                    node,
                    addr,
                    port,
                    meta,
                    vsn,
                })
            }),
        arb_bytes().prop_map(Message::User),
        arb_string().prop_map(|error| Message::Err(ErrResp { error })),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in arb_message()) {
        prop_assert_eq!(decode_message(&encode_message(&msg)).unwrap(), msg);
    }

    #[test]
    fn packets_round_trip(
        msgs in proptest::collection::vec(arb_message(), 1..20),
        compress in any::<bool>(),
        crc in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let msgs: Vec<Message> = msgs.into_iter().filter(|m| !matches!(m, Message::Err(_))).collect();
        prop_assume!(!msgs.is_empty());
        let ring = Keyring::new(vec![5; 24]).unwrap();
        let out = Outbound { compress, crc, ..Outbound::new("pool", Some(&ring)) };
        let packet = encode_packet(&msgs, &out, &mut Rng::from_seed(seed)).unwrap();
        prop_assert_eq!(decode_packet(&packet, Some(&ring), "pool").unwrap().messages, msgs);
    }

    #[test]
    fn decoding_any_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_packet(&data, None, "");
        let _ = decode_message(&data);
    }
}

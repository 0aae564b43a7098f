//! These tests hold whatever core answers: they check the shell's framing,
//! header handling, EDNS and trimming, not which records a name gets.

use super::wire::UDP_ANSWER_LIMIT;
use super::*;
use crate::state::Identity;
use hickory_proto::op::{MessageType, Query};
use hickory_proto::rr::{RData as WireData, RecordType};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tribune_core::agent::LocalAgent;
use tribune_core::catalog::Node as CatalogNode;
use tribune_core::dns::{RData, Rcode, Record};

fn test_node() -> Arc<Node> {
    let identity = Identity {
        node_name: "n1".into(),
        node_id: "00000000-0000-0000-0000-000000000001".into(),
        datacenter: "dc1".into(),
        bind_addr: "127.0.0.1".into(),
        server_port: 8300,
        serf_lan_port: 8301,
        http_addr: "127.0.0.1:8500".into(),
        server: true,
        args: Vec::new(),
    };
    let node = CatalogNode {
        id: identity.node_id.clone(),
        name: identity.node_name.clone(),
        address: "127.0.0.1".into(),
        datacenter: "dc1".into(),
        tagged_addresses: Default::default(),
        meta: Default::default(),
        create_index: 0,
        modify_index: 0,
    };
    Node::new(identity, LocalAgent::new(node, 7), 7)
}

fn query(id: u16, name: &str, record_type: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(wire::name(name).expect("name"), record_type));
    message
}

fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.set_edns(edns);
    message
}

fn ask(packet: &[u8], udp: Option<usize>) -> Option<Message> {
    let node = test_node();
    let config = DnsConfig::new("dc1");
    let bytes = handle_packet(&node, &config, packet, udp)?;
    Some(Message::from_vec(&bytes).expect("the response decodes"))
}

fn encoded(message: &Message) -> Vec<u8> {
    message.to_vec().expect("encode")
}

fn a_records(count: u8) -> Answer {
    let mut answer = Answer::rcode(Rcode::NoError);
    answer.authoritative = true;
    answer.answers = (0..count)
        .map(|i| Record {
            name: "web.service.consul.".into(),
            ttl: 0,
            data: RData::A(Ipv4Addr::new(10, 0, 0, i)),
        })
        .collect();
    answer
}

#[test]
fn a_packet_shorter_than_a_header_is_dropped() {
    assert!(ask(&[], Some(512)).is_none());
    assert!(ask(&[0x12, 0x34, 0x01, 0x00, 0, 1], Some(512)).is_none());
}

#[test]
fn a_truncated_message_gets_formerr_with_its_id() {
    let full = encoded(&query(0xBEEF, "web.service.consul.", RecordType::A));
    for cut in [HEADER_BYTES, HEADER_BYTES + 3, full.len() - 1] {
        let response = ask(&full[..cut], Some(512)).expect("an answer");
        assert_eq!(response.metadata.id, 0xBEEF);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert!(response.metadata.recursion_desired);
    }
}

#[test]
fn only_query_opcode_is_implemented() {
    let mut message = query(7, "web.service.consul.", RecordType::A);
    message.metadata.op_code = OpCode::Status;
    let response = ask(&encoded(&message), Some(512)).expect("an answer");
    assert_eq!(response.metadata.id, 7);
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(response.metadata.op_code, OpCode::Status);
}

#[test]
fn a_response_sent_to_us_is_ignored() {
    let mut message = query(7, "web.service.consul.", RecordType::A);
    message.metadata.message_type = MessageType::Response;
    assert!(ask(&encoded(&message), Some(512)).is_none());
}

#[test]
fn exactly_one_question_or_formerr() {
    let mut none = query(9, "a.consul.", RecordType::A);
    none.queries.clear();
    let mut two = query(9, "a.consul.", RecordType::A);
    two.add_query(Query::query(
        wire::name("b.consul.").expect("name"),
        RecordType::A,
    ));
    for message in [none, two] {
        let response = ask(&encoded(&message), Some(512)).expect("an answer");
        assert_eq!(response.metadata.id, 9);
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
    }
}

#[test]
fn a_query_gets_its_id_flags_and_question_back() {
    let message = query(0x4242, "Web.Service.Consul.", RecordType::SRV);
    let response = ask(&encoded(&message), Some(512)).expect("an answer");
    let meta = response.metadata;
    assert_eq!(meta.id, 0x4242);
    assert_eq!(meta.message_type, MessageType::Response);
    assert_eq!(meta.op_code, OpCode::Query);
    assert!(meta.recursion_desired);
    assert!(!meta.recursion_available);
    assert!(!meta.truncation);
    assert_eq!(response.queries, message.queries);
    // The question's case is kept byte for byte.
    assert_eq!(response.queries[0].name().to_ascii(), "Web.Service.Consul.");
    assert!(response.edns.is_none());
}

#[test]
fn edns_is_echoed_with_our_payload_size() {
    let message = with_edns(query(1, "web.service.consul.", RecordType::A), 1232);
    let response = ask(&encoded(&message), Some(UDP_RESPONSE_BYTES_MAX)).expect("an answer");
    let edns = response.edns.expect("OPT echoed");
    assert_eq!(edns.max_payload(), EDNS_PAYLOAD_BYTES);
}

#[test]
fn size_limits_follow_transport_and_edns() {
    let plain = query(1, "a.consul.", RecordType::A);
    assert_eq!(size_limit(&plain, Some(65_000)), (512, true));
    assert_eq!(size_limit(&plain, None), (TCP_MESSAGE_BYTES_MAX, false));
    let small = with_edns(plain.clone(), 100);
    assert_eq!(size_limit(&small, Some(65_000)), (512, true));
    let big = with_edns(plain.clone(), 1232);
    assert_eq!(size_limit(&big, Some(65_000)), (1232, false));
    assert_eq!(size_limit(&big, Some(1000)), (1000, false));
    let huge = with_edns(plain, u16::MAX);
    assert_eq!(
        size_limit(&huge, Some(UDP_RESPONSE_BYTES_MAX)),
        (UDP_RESPONSE_BYTES_MAX, false)
    );
}

/// Encodes `answer` as the response to `request` within `limit` bytes.
fn encode_within(
    request: &Message,
    answer: &Answer,
    limit: usize,
    udp_plain: bool,
) -> Option<Vec<u8>> {
    let response = response(request, &request.queries[0], answer);
    let mut out = Vec::new();
    let cap = udp_plain.then_some(UDP_ANSWER_LIMIT);
    let encoded = wire::encode_within(&response, limit, cap, &mut out);
    (encoded != wire::Encoded::TooSmall).then_some(out)
}

#[test]
fn fifty_a_records_are_trimmed_to_512_bytes_without_tc() {
    let request = with_edns(query(3, "web.service.consul.", RecordType::A), 512);
    let answer = a_records(50);
    let whole = encode_within(&request, &answer, 65_535, false).expect("fits");
    assert!(whole.len() > 512, "the test needs an oversized answer");
    let bytes = encode_within(&request, &answer, 512, false).expect("fits");
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let decoded = Message::from_vec(&bytes).expect("decodes");
    assert!(!decoded.metadata.truncation);
    assert!(decoded.metadata.authoritative);
    assert_eq!(decoded.metadata.id, 3);
    let kept = decoded.answers.len();
    assert!(kept > UDP_ANSWER_LIMIT && kept < 50, "{kept} answers");
    // The first answers are kept, in order: the cut is at the end.
    let expected: Vec<_> = (0..kept as u8)
        .map(|i| Ipv4Addr::new(10, 0, 0, i))
        .collect();
    let got: Vec<_> = decoded
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            WireData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(got, expected);
    assert!(decoded.edns.is_some(), "OPT survives trimming");
}

#[test]
fn plain_udp_keeps_consuls_answer_limit_and_tcp_keeps_all() {
    let request = query(3, "web.service.consul.", RecordType::A);
    let answer = a_records(50);
    let bytes = encode_within(&request, &answer, 512, true).expect("fits");
    let decoded = Message::from_vec(&bytes).expect("decodes");
    assert_eq!(decoded.answers.len(), UDP_ANSWER_LIMIT);
    assert!(!decoded.metadata.truncation);
    let bytes = encode_within(&request, &answer, TCP_MESSAGE_BYTES_MAX, false).expect("fits");
    assert_eq!(
        Message::from_vec(&bytes).expect("decodes").answers.len(),
        50
    );
}

#[test]
fn trimming_srv_keeps_the_additionals_of_the_remaining_targets() {
    let mut answer = Answer::rcode(Rcode::NoError);
    for i in 0..30u8 {
        let target = format!("node-with-a-long-name-{i}.node.dc1.consul.");
        answer.answers.push(Record {
            name: "web.service.consul.".into(),
            ttl: 0,
            data: RData::Srv {
                priority: 1,
                weight: 1,
                port: 8080,
                target: target.clone(),
            },
        });
        answer.additional.push(Record {
            name: target.to_uppercase(),
            ttl: 0,
            data: RData::A(Ipv4Addr::new(10, 0, 1, i)),
        });
    }
    let request = with_edns(query(5, "web.service.consul.", RecordType::SRV), 1000);
    let bytes = encode_within(&request, &answer, 1000, false).expect("fits");
    assert!(bytes.len() <= 1000);
    let decoded = Message::from_vec(&bytes).expect("decodes");
    assert!(!decoded.answers.is_empty() && decoded.answers.len() < 30);
    let targets: Vec<_> = decoded
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            WireData::SRV(srv) => Some(srv.target.to_lowercase()),
            _ => None,
        })
        .collect();
    let extras: Vec<_> = decoded
        .additionals
        .iter()
        .map(|r| r.name.to_lowercase())
        .collect();
    assert_eq!(targets, extras);
}

#[test]
fn an_unencodable_name_is_servfail_not_a_panic() {
    let mut answer = a_records(1);
    answer.answers[0].name = format!("{}.consul.", "x".repeat(64));
    let request = query(11, "web.service.consul.", RecordType::A);
    let bytes = encode_within(&request, &answer, 512, true).expect("fits");
    let response = Message::from_vec(&bytes).expect("decodes");
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert!(response.answers.is_empty());
    assert!(!response.metadata.authoritative);
}

#[test]
fn long_txt_strings_are_split_into_character_strings() {
    let mut answer = Answer::rcode(Rcode::NoError);
    answer.answers.push(Record {
        name: "n1.node.consul.".into(),
        ttl: 0,
        data: RData::Txt(vec!["k=".to_string() + &"v".repeat(600), String::new()]),
    });
    let request = query(12, "n1.node.consul.", RecordType::TXT);
    let bytes = encode_within(&request, &answer, 65_535, false).expect("fits");
    let decoded = Message::from_vec(&bytes).expect("decodes");
    let WireData::TXT(txt) = &decoded.answers[0].data else {
        panic!("a TXT answer");
    };
    let lengths: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lengths, vec![255, 255, 92, 0]);
}

#[test]
fn qtypes_map_to_core() {
    use tribune_core::dns::QType;
    assert_eq!(wire::qtype(RecordType::AAAA), QType::Aaaa);
    assert_eq!(wire::qtype(RecordType::ANY), QType::Any);
    assert_eq!(wire::qtype(RecordType::MX), QType::Other(15));
}

/// Garbage and mutated queries: any answer at all, never a panic, never
/// more than the UDP limit.
#[test]
fn no_packet_panics() {
    let node = test_node();
    let config = DnsConfig::new("dc1");
    let base = encoded(&with_edns(
        query(1, "web.service.consul.", RecordType::A),
        4096,
    ));
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let packet: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 80) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut p = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate(HEADER_BYTES + (next() as usize) % p.len());
            p
        };
        if let Some(response) = handle_packet(&node, &config, &packet, Some(512)) {
            assert!(response.len() <= 512);
            assert!(Message::from_vec(&response).is_ok(), "{packet:?}");
        }
    }
}

#[tokio::test]
async fn udp_and_tcp_servers_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = test_node();
    let config = Arc::new(DnsConfig::new("dc1"));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (udp_addr, tcp_addr) = (
        udp.local_addr().expect("addr"),
        tcp.local_addr().expect("addr"),
    );
    spawn_udp_threads(udp, node.clone(), config.clone()).expect("udp threads");
    tokio::spawn(serve_tcp(tcp, node, config));

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let request = encoded(&query(0x0102, "web.service.consul.", RecordType::A));
    client.send_to(&request, udp_addr).await.expect("send");
    let mut buffer = [0u8; 512];
    let len = client.recv(&mut buffer).await.expect("recv");
    assert_eq!(
        Message::from_vec(&buffer[..len])
            .expect("decodes")
            .metadata
            .id,
        0x0102
    );

    // Two queries on one TCP connection, written in one go.
    let mut stream = tokio::net::TcpStream::connect(tcp_addr)
        .await
        .expect("connect");
    let mut framed = Vec::new();
    for id in [21u16, 22] {
        let message = encoded(&query(id, "web.service.consul.", RecordType::A));
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(&message);
    }
    stream.write_all(&framed).await.expect("write");
    for id in [21u16, 22] {
        let len = stream.read_u16().await.expect("length");
        let mut body = vec![0; usize::from(len)];
        stream.read_exact(&mut body).await.expect("body");
        assert_eq!(Message::from_vec(&body).expect("decodes").metadata.id, id);
    }
    // Bad framing (a length too short for a header) closes the connection.
    stream.write_all(&[0, 3, 1, 2, 3]).await.expect("write");
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest).await;
    assert!(matches!(read, Ok(0)) || read.is_err());
}

/// The same records through hickory's encoder, as the shell did before it
/// wrote bytes itself: the reference for contents and sizes.
fn hickory_encoded(request: &Message, answer: &Answer) -> Vec<u8> {
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
    use hickory_proto::rr::Record as HickoryRecord;
    let convert = |record: &Record| {
        let name = |text: &str| wire::name(text).expect("name");
        let data = match &record.data {
            RData::A(ip) => WireData::A(A(*ip)),
            RData::Aaaa(ip) => WireData::AAAA(AAAA(*ip)),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => WireData::SRV(SRV::new(*priority, *weight, *port, name(target))),
            RData::Txt(strings) => WireData::TXT(TXT::from_bytes(
                strings
                    .iter()
                    .flat_map(|s| {
                        if s.is_empty() {
                            vec![s.as_bytes()]
                        } else {
                            s.as_bytes().chunks(255).collect()
                        }
                    })
                    .collect(),
            )),
            RData::Ptr(target) => WireData::PTR(PTR(name(target))),
            RData::Cname(target) => WireData::CNAME(CNAME(name(target))),
            RData::Ns(target) => WireData::NS(NS(name(target))),
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => WireData::SOA(SOA::new(
                name(mname),
                name(rname),
                *serial,
                i32::try_from(*refresh).unwrap_or(i32::MAX),
                i32::try_from(*retry).unwrap_or(i32::MAX),
                i32::try_from(*expire).unwrap_or(i32::MAX),
                *minimum,
            )),
        };
        HickoryRecord::from_rdata(name(&record.name), record.ttl, data)
    };
    let mut response = response_to(request);
    response.add_query(request.queries[0].clone());
    response.metadata.authoritative = answer.authoritative;
    response.metadata.response_code = ResponseCode::from_low(wire::rcode(answer.rcode));
    response.answers = answer.answers.iter().map(convert).collect();
    response.authorities = answer.authority.iter().map(convert).collect();
    response.additionals = answer.additional.iter().map(convert).collect();
    encoded(&response)
}

fn record(name: &str, data: RData) -> Record {
    Record {
        name: name.into(),
        ttl: 5,
        data,
    }
}

/// Every record type, names in several cases, an SRV target that later
/// names point into, non-ASCII (punycode) and escaped names: the bytes
/// decode to what hickory's encoder wrote, in no more bytes.
#[test]
fn encoding_matches_hickory_in_content_and_size() {
    let srv = |target: &str| RData::Srv {
        priority: 1,
        weight: 10,
        port: 8080,
        target: target.into(),
    };
    let soa = RData::Soa {
        mname: "ns.consul.".into(),
        rname: "hostmaster.consul.".into(),
        serial: 1_700_000_000,
        refresh: 3600,
        retry: 600,
        expire: u32::MAX,
        minimum: 0,
    };
    let mut answer = Answer::rcode(Rcode::NoError);
    answer.authoritative = true;
    answer.answers = vec![
        record("Web.Service.Consul.", RData::A(Ipv4Addr::new(10, 0, 0, 1))),
        record(
            "web.service.consul.",
            RData::Aaaa("fd00::1".parse().expect("ip")),
        ),
        record("web.service.consul.", srv("node-1.node.dc1.consul.")),
        record("web.service.consul.", srv("0a000001.addr.dc1.consul.")),
        record(
            "web.service.consul.",
            RData::Cname("db.example.com.".into()),
        ),
        record(
            "n1.node.consul.",
            RData::Txt(vec!["a=b".into(), String::new(), "x".repeat(300)]),
        ),
        record(
            "1.0.0.127.in-addr.arpa.",
            RData::Ptr("n1.node.dc1.consul.".into()),
        ),
        record("consul.", RData::Ns("ns.consul.".into())),
        record("bücher.node.consul.", RData::A(Ipv4Addr::LOCALHOST)),
        record("under_score.node.consul.", RData::A(Ipv4Addr::LOCALHOST)),
        record(r"dot\.in.label.consul.", RData::A(Ipv4Addr::LOCALHOST)),
        record("*.wild.consul.", RData::A(Ipv4Addr::LOCALHOST)),
    ];
    answer.authority = vec![record("consul.", soa)];
    answer.additional = vec![
        record(
            "node-1.node.dc1.consul.",
            RData::A(Ipv4Addr::new(10, 0, 0, 2)),
        ),
        record(
            "0a000001.addr.dc1.consul.",
            RData::A(Ipv4Addr::new(10, 0, 0, 1)),
        ),
    ];
    for (name, edns) in [
        ("Web.Service.Consul.", false),
        ("web.service.consul.", true),
    ] {
        let mut request = query(77, name, RecordType::SRV);
        if edns {
            request = with_edns(request, 4096);
        }
        let ours = encode_within(&request, &answer, 65_535, false).expect("fits");
        let theirs = hickory_encoded(&request, &answer);
        let (ours_decoded, theirs_decoded) = (
            Message::from_vec(&ours).expect("ours decodes"),
            Message::from_vec(&theirs).expect("theirs decodes"),
        );
        assert_eq!(ours_decoded, theirs_decoded);
        assert!(
            ours.len() <= theirs.len(),
            "{} bytes against hickory's {}",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn names_hickory_refuses_are_refused_too() {
    for bad in [
        format!("{}.consul.", "x".repeat(64)),
        format!("{}consul.", "abcdefghi.".repeat(26)),
        "a..b.consul.".to_string(),
        "-leading.consul.".to_string(),
        "sp ace.consul.".to_string(),
    ] {
        assert_eq!(
            encode::WireName::new(&bad).is_ok(),
            wire::name(&bad).is_ok(),
            "{bad:?}"
        );
    }
}

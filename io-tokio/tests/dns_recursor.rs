//! Recursors (`-recursor`, `recursors`, `dns_config.recursor_timeout`)
//! through the real `dig` against a real `tribune agent -dev`, with a tiny
//! upstream DNS server written here (hickory-proto, UDP and TCP on one free
//! loopback port) so the tests need no network.
//!
//! Expected, as Consul's `handleRecurse`: names outside the domain are
//! relayed to the recursors in order and the first NOERROR/NXDOMAIN answer
//! comes back with the client's ID and RA set; a recursor that times out,
//! is unreachable or answers SERVFAIL/REFUSED is skipped; when all fail the
//! client gets SERVFAIL (RA set). With recursors configured, local answers
//! carry RA too; without, outside names are REFUSED and RA is clear.

mod support;

use support::dig::{dig_available, Dig};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Agent;

/// What the fake upstream answers.
#[derive(Clone, Copy)]
enum Upstream {
    /// `example.org` A 93.184.216.34; anything else NXDOMAIN.
    Answers,
    /// SERVFAIL to everything.
    Fails,
    /// Reads queries and never answers.
    Silent,
}

const EXAMPLE_ADDRESS: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

/// A DNS server on 127.0.0.1 (UDP and TCP, same port) for the life of the
/// test process; counts the queries it gets.
struct FakeUpstream {
    port: u16,
    queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    fn start(mode: Upstream) -> FakeUpstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().expect("addr").port();
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(response) = respond(mode, &buffer[..len]) {
                    let _ = udp.send_to(&response, peer);
                }
            }
        });
        let counter = queries.clone();
        std::thread::spawn(move || {
            for mut stream in tcp.incoming().flatten() {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut request).is_err() {
                    continue;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(response) = respond(mode, &request) {
                    let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&response);
                    let _ = stream.write_all(&framed);
                }
            }
        });
        FakeUpstream { port, queries }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn respond(mode: Upstream, request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let query = request.queries.first()?.clone();
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(query.clone());
    let name = query.name().to_ascii().to_ascii_lowercase();
    response.metadata.response_code = match mode {
        Upstream::Silent => return None,
        Upstream::Fails => ResponseCode::ServFail,
        Upstream::Answers if name == "example.org." => {
            let record =
                Record::from_rdata(query.name().clone(), 300, RData::A(A(EXAMPLE_ADDRESS)));
            response.answers.push(record);
            ResponseCode::NoError
        }
        Upstream::Answers => ResponseCode::NXDomain,
    };
    response.to_vec().ok()
}

/// A free port with nothing on it: queries there are refused by the OS.
fn dead_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// An agent started with `extra` flags whose DNS answers, or `None` (after
/// saying SKIPPED) without dig outside CI.
fn start(extra: &[String]) -> Option<Agent> {
    if !dig_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dig is not installed and CI is set: install dnsutils before the tests"
        );
        eprintln!("\n*** SKIPPED: dig not installed ***\n");
        return None;
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let agent = Agent::start_with(&extra);
    let probe = format!("{}.node.consul", agent.node);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dig(&agent, &[&probe]).status != "NOERROR" {
        assert!(Instant::now() < deadline, "no DNS answer for {probe}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(agent)
}

fn dig(agent: &Agent, args: &[&str]) -> Dig {
    support::dig::dig(agent.dns_port, args)
}

fn recursor_flag(address: &str) -> String {
    format!("-recursor={address}")
}

#[test]
fn outside_names_are_relayed_from_the_recursor_with_ra() {
    let upstream = FakeUpstream::start(Upstream::Answers);
    let Some(agent) = start(&[recursor_flag(&upstream.address())]) else {
        return;
    };
    for transport in ["+notcp", "+tcp"] {
        let out = dig(&agent, &[transport, "example.org", "A"]);
        assert_eq!(out.status, "NOERROR", "{}", out.raw);
        assert_eq!(
            out.answers,
            vec![format!("example.org. A {EXAMPLE_ADDRESS}")],
            "{}",
            out.raw
        );
        assert!(
            out.flag("ra") && out.flag("qr") && !out.flag("aa"),
            "{}",
            out.raw
        );
        // dig itself checks that the ID is its own.
        let missing = dig(&agent, &[transport, "nope.example.org", "A"]);
        assert_eq!(missing.status, "NXDOMAIN", "{}", missing.raw);
        assert!(missing.flag("ra"), "{}", missing.raw);
    }
    assert!(upstream.queries() >= 4);
    // Local names are still answered here, now with RA as well.
    let local = dig(&agent, &[&format!("{}.node.consul", agent.node), "A"]);
    assert_eq!(local.status, "NOERROR", "{}", local.raw);
    assert!(local.flag("aa") && local.flag("ra"), "{}", local.raw);
}

#[test]
fn recursors_are_tried_in_order_until_one_answers() {
    let failing = FakeUpstream::start(Upstream::Fails);
    let answering = FakeUpstream::start(Upstream::Answers);
    let dead = format!("127.0.0.1:{}", dead_port());
    let Some(agent) = start(&[
        recursor_flag(&dead),
        recursor_flag(&failing.address()),
        recursor_flag(&answering.address()),
    ]) else {
        return;
    };
    let out = dig(&agent, &["example.org", "A"]);
    assert_eq!(out.status, "NOERROR", "{}", out.raw);
    assert_eq!(
        out.answers,
        vec![format!("example.org. A {EXAMPLE_ADDRESS}")]
    );
    assert_eq!(
        failing.queries(),
        1,
        "the SERVFAIL recursor was asked first"
    );
    assert_eq!(answering.queries(), 1);
}

#[test]
fn servfail_when_every_recursor_fails() {
    let silent = FakeUpstream::start(Upstream::Silent);
    let failing = FakeUpstream::start(Upstream::Fails);
    let dir = std::env::temp_dir().join(format!("tribune-recursor-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("dns.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"recursors":["{}"],"dns_config":{{"recursor_timeout":"300ms"}}}}"#,
            silent.address()
        ),
    )
    .expect("write config");
    let dead = format!("127.0.0.1:{}", dead_port());
    let started = start(&[
        "-config-file".to_string(),
        config.to_string_lossy().into_owned(),
        recursor_flag(&failing.address()),
        recursor_flag(&dead),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    let Some(agent) = started else {
        return;
    };
    for transport in ["+notcp", "+tcp"] {
        let asked = Instant::now();
        let out = dig(&agent, &[transport, "example.org", "A"]);
        assert_eq!(out.status, "SERVFAIL", "{}", out.raw);
        assert!(out.flag("ra") && out.answers.is_empty(), "{}", out.raw);
        // The silent one costs its 300 ms timeout, not Consul's default 2 s.
        assert!(
            asked.elapsed() < Duration::from_millis(1900),
            "{:?}",
            asked.elapsed()
        );
    }
    assert_eq!(silent.queries(), 2);
    assert_eq!(failing.queries(), 2);
}

#[test]
fn without_recursors_outside_names_are_refused_without_ra() {
    let Some(agent) = start(&[]) else {
        return;
    };
    let out = dig(&agent, &["example.org", "A"]);
    assert_eq!(out.status, "REFUSED", "{}", out.raw);
    assert!(!out.flag("ra"), "{}", out.raw);
    let local = dig(&agent, &[&format!("{}.node.consul", agent.node), "A"]);
    assert!(local.flag("aa") && !local.flag("ra"), "{}", local.raw);
}

#[test]
fn upstream_responses_keep_the_clients_id() {
    let upstream = FakeUpstream::start(Upstream::Answers);
    let Some(agent) = start(&[recursor_flag(&upstream.address())]) else {
        return;
    };
    let mut query = Message::new(0xBEEF, MessageType::Query, hickory_proto::op::OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(hickory_proto::op::Query::query(
        "example.org.".parse().expect("name"),
        hickory_proto::rr::RecordType::A,
    ));
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client
        .send_to(
            &query.to_vec().expect("encode"),
            ("127.0.0.1", agent.dns_port),
        )
        .expect("send");
    let mut buffer = [0u8; 4096];
    let len = client.recv(&mut buffer).expect("an answer");
    let response = Message::from_vec(&buffer[..len]).expect("decodes");
    assert_eq!(response.metadata.id, 0xBEEF);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    assert!(response.metadata.recursion_available);
    assert_eq!(response.answers.len(), 1);
}

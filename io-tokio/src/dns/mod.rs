//! The DNS server: Consul's DNS interface on UDP and TCP (port 8600).
//!
//! Data flow: a packet arrives ([`serve_udp`], [`serve_tcp`]) →
//! [`handle_packet`] decodes it with hickory-proto, checks it the way
//! Consul's DNS library (miekg/dns) does, asks core's
//! [`tribune_core::dns::answer::answer`] under the state lock via
//! [`Node::dns_answer`], checks the records' names and encodes the response
//! straight into bytes ([`encode`]) within the transport's size limit
//! ([`wire::encode_within`]).
//! Which names answer what is core's business; this module only moves bytes.
//!
//! Request checks, as miekg/dns's default accept function: a packet shorter
//! than a header is dropped, and so is a response (QR=1, answering would
//! let two servers loop); an opcode other than QUERY gets NOTIMP; anything
//! but exactly one question gets FORMERR, as does a packet that does not
//! decode. Names core does not answer go to the recursors ([`recursor`]);
//! RA is set on every response when recursors are configured.

pub mod encode;
pub mod fuzzing;
pub mod recursor;
mod server;
pub mod wire;

pub use server::{
    serve_tcp, serve_udp, spawn_udp_threads, Forwarder, RECURSOR_QUERIES_MAX, TCP_CONNECTIONS_MAX,
    TCP_READ_TIMEOUT, UDP_REQUEST_BYTES_MAX, UDP_RESPONSE_BYTES_MAX, UDP_THREADS,
};

use crate::state::Node;
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::ProtoError;
use tribune_core::dns::cache::ServiceCache;
use tribune_core::dns::{Answer, DnsConfig, Question, Rcode};
use tribune_core::rng::Rng;

/// A DNS header is 12 bytes (RFC 1035 §4.1.1); anything shorter is noise.
pub const HEADER_BYTES: usize = 12;
/// The UDP payload tribune advertises in its OPT record (what it accepts).
pub const EDNS_PAYLOAD_BYTES: u16 = 4096;
/// A TCP message's length prefix is 16 bits (RFC 1035 §4.2.2).
pub const TCP_MESSAGE_BYTES_MAX: usize = u16::MAX as usize;

/// What to do with a request after [`answer_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send the bytes written to `out`.
    Send,
    /// Send nothing (noise, or a response sent to us).
    Drop,
    /// Core sends the question to the recursors: relay it with
    /// [`recursor::forward`], which answers SERVFAIL if they all fail.
    Forward,
}

/// Answers one DNS message. `max_udp_size` is `Some(cap)` for a UDP request
/// (the response then fits 512 bytes, or the client's EDNS size up to
/// `cap`) and `None` for TCP (64 KiB). `None` means: send nothing, which
/// includes a question for the recursors (this entry point has no network).
pub fn handle_packet(
    node: &Node,
    config: &DnsConfig,
    packet: &[u8],
    max_udp_size: Option<usize>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut worker = Worker::new(node);
    let reply = answer_packet(node, config, packet, max_udp_size, &mut worker, &mut out);
    (reply == Reply::Send).then_some(out)
}

/// What a thread (or TCP connection) answering DNS keeps between queries:
/// its own RNG for the shuffles, forked from the node's seeded one, and its
/// own cache of service instances, so neither needs a lock.
pub struct Worker {
    pub rng: Rng,
    pub cache: ServiceCache,
    /// The store generation the cache was filled from.
    pub generation: u64,
}

impl Worker {
    pub fn new(node: &Node) -> Worker {
        Worker {
            rng: node.fork_rng(),
            cache: ServiceCache::default(),
            generation: node.generation(),
        }
    }
}

/// [`handle_packet`] into a buffer the caller reuses, with the caller's
/// [`Worker`].
pub fn answer_packet(
    node: &Node,
    config: &DnsConfig,
    packet: &[u8],
    max_udp_size: Option<usize>,
    worker: &mut Worker,
    out: &mut Vec<u8>,
) -> Reply {
    let Some(header) = RawHeader::parse(packet) else {
        return Reply::Drop;
    };
    if header.is_response {
        return Reply::Drop;
    }
    if header.op_code != OpCode::Query {
        return header.error(ResponseCode::NotImp, out);
    }
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => return header.error(ResponseCode::FormErr, out),
    };
    let [query] = request.queries.as_slice() else {
        let mut response = response_to(&request);
        response.metadata.response_code = ResponseCode::FormErr;
        return put(response.to_vec().ok(), out);
    };
    let (limit_bytes, udp_plain) = size_limit(&request, max_udp_size);
    let cap = udp_plain.then_some(config.udp_answers());
    let question = Question {
        name: query.name().to_ascii(),
        qtype: wire::qtype(query.query_type()),
        answer_limit: cap,
    };
    // Core stops at `answer_limit`, so only what can be sent is converted.
    let answer = node.dns_answer(
        config,
        &question,
        unix_seconds(),
        &mut worker.rng,
        &mut worker.cache,
        &mut worker.generation,
    );
    if answer.forward {
        return Reply::Forward;
    }
    let response = response(&request, query, &answer);
    match wire::encode_within(&response, limit_bytes, cap, out) {
        wire::Encoded::TooSmall => Reply::Drop,
        encoded => {
            // Consul's enable_truncate: tell the client there was more, so
            // it can retry over TCP. Only UDP answers are ever cut.
            let cut = encoded == wire::Encoded::Trimmed || answer.truncated;
            if config.enable_truncate && max_udp_size.is_some() && cut {
                if let Some(flags) = out.get_mut(2) {
                    *flags |= TC_BIT;
                }
            }
            Reply::Send
        }
    }
}

/// The TC flag in the header's third byte (RFC 1035 §4.1.1).
const TC_BIT: u8 = 0x02;

/// SERVFAIL for a request whose recursors all failed, with RA set (and
/// the question and OPT echoed), as Consul's `handleRecurse`.
pub fn recursion_failed(packet: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let query = request.queries.first()?;
    let mut answer = Answer::rcode(Rcode::ServFail);
    answer.recursion_available = true;
    let response = response(&request, query, &answer);
    let mut out = Vec::new();
    let encoded = wire::encode_within(&response, TCP_MESSAGE_BYTES_MAX, None, &mut out);
    (encoded != wire::Encoded::TooSmall).then_some(out)
}

/// The response to `query` carrying `answer`: same ID, RD copied, QR set,
/// the question as received, and an OPT record when the request had one
/// (RFC 6891 §6.1.1 requires the echo).
fn response<'a>(request: &Message, query: &Query, answer: &'a Answer) -> wire::Response<'a> {
    let mut response = wire::Response {
        header: encode::Header {
            id: request.metadata.id,
            op_code: u8::from(OpCode::Query),
            authoritative: answer.authoritative,
            recursion_desired: request.metadata.recursion_desired,
            recursion_available: answer.recursion_available,
            rcode: wire::rcode(answer.rcode),
        },
        question: Some((
            encode::WireName::from_name(query.name()),
            u16::from(query.query_type()),
            u16::from(query.query_class()),
        )),
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        edns: request.edns.is_some(),
    };
    fill(&mut response, answer);
    response
}

fn put(encoded: Option<Vec<u8>>, out: &mut Vec<u8>) -> Reply {
    match encoded {
        Some(bytes) => {
            *out = bytes;
            Reply::Send
        }
        None => Reply::Drop,
    }
}

/// The response skeleton for a FORMERR, with the same echoes as
/// [`response`] but no question.
fn response_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD_BYTES);
        response.set_edns(edns);
    }
    response
}

/// Puts core's answer into the response; a record that can't be put on the
/// wire (a name with a label over 63 bytes, say) turns it into SERVFAIL
/// rather than a partial answer.
fn fill<'a>(response: &mut wire::Response<'a>, answer: &'a Answer) {
    let sections = (|| {
        Ok::<_, ProtoError>((
            wire::records(&answer.answers)?,
            wire::records(&answer.authority)?,
            wire::records(&answer.additional)?,
        ))
    })();
    match sections {
        Ok((answers, authority, additional)) => {
            response.answers = answers;
            response.authority = authority;
            response.additional = additional;
        }
        Err(e) => {
            crate::log::warn(&format!("dns: cannot encode an answer: {e}"));
            response.header.rcode = wire::rcode(Rcode::ServFail);
            response.header.authoritative = false;
        }
    }
}

/// The byte limit for the response, and whether this is a plain 512-byte
/// UDP exchange (where Consul also caps the answer count).
fn size_limit(request: &Message, max_udp_size: Option<usize>) -> (usize, bool) {
    let Some(cap) = max_udp_size else {
        return (TCP_MESSAGE_BYTES_MAX, false);
    };
    let default = wire::UDP_RESPONSE_BYTES_DEFAULT;
    let limit = match &request.edns {
        // RFC 6891 §6.2.5: sizes under 512 are treated as 512.
        Some(edns) => usize::from(edns.max_payload()).clamp(default, cap.max(default)),
        None => default,
    };
    (limit, limit == default)
}

/// The SOA serial: Consul uses the current unix time. It wraps in 2106,
/// which serial-number arithmetic (RFC 1982) tolerates.
pub fn unix_seconds() -> u32 {
    // Truncating is the wrap.
    crate::clock::unix_seconds() as u32
}

/// The header fields read straight from the bytes, so that the ID can be
/// echoed even when the rest does not decode.
struct RawHeader {
    id: u16,
    is_response: bool,
    op_code: OpCode,
    recursion_desired: bool,
}

impl RawHeader {
    fn parse(packet: &[u8]) -> Option<RawHeader> {
        let bytes = packet.get(..HEADER_BYTES)?;
        Some(RawHeader {
            id: u16::from_be_bytes([bytes[0], bytes[1]]),
            is_response: bytes[2] & 0x80 != 0,
            op_code: OpCode::from_u8((bytes[2] >> 3) & 0x0F),
            recursion_desired: bytes[2] & 0x01 != 0,
        })
    }

    /// A header-only error response (no question: it may not have decoded).
    fn error(&self, code: ResponseCode, out: &mut Vec<u8>) -> Reply {
        let mut response = Message::error_msg(self.id, self.op_code, code);
        response.metadata.recursion_desired = self.recursion_desired;
        put(response.to_vec().ok(), out)
    }
}

#[cfg(test)]
mod tests;

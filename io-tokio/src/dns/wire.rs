//! Translation between core's DNS model and the wire ([`super::encode`]),
//! and the size trimming that only the encoder can decide.
//!
//! Trimming follows Consul's `trimUDPResponse`/`trimTCPResponse`
//! (agent/dns/router_response.go): a plain 512-byte UDP answer keeps at most
//! [`UDP_ANSWER_LIMIT`] answers; then the authority section goes, then
//! answers are cut from the end (binary search on the count) while the
//! additional section keeps only what the remaining SRV targets need. The TC
//! bit is set on a cut UDP answer only with `dns_config.enable_truncate`
//! (Consul's default is off). Unlike Consul, a
//! single answer that does not fit is dropped too: nothing over the limit is
//! ever sent.

use super::encode::{Encoder, Header, WireData, WireName, WireRecord};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::ProtoError;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use tribune_core::dns::{QType, Rcode, Record};

/// Consul's default `udp_answer_limit`: answers kept in a 512-byte UDP
/// response.
pub const UDP_ANSWER_LIMIT: usize = tribune_core::dns::UDP_ANSWER_LIMIT_DEFAULT;
/// RFC 1035's UDP payload without EDNS.
pub const UDP_RESPONSE_BYTES_DEFAULT: usize = 512;

pub fn qtype(record_type: RecordType) -> QType {
    match record_type {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::TXT => QType::Txt,
        RecordType::PTR => QType::Ptr,
        RecordType::ANY => QType::Any,
        RecordType::SOA => QType::Soa,
        RecordType::NS => QType::Ns,
        other => QType::Other(u16::from(other)),
    }
}

/// The header's 4-bit RCODE (RFC 1035 §4.1.1).
pub fn rcode(rcode: Rcode) -> u8 {
    match rcode {
        Rcode::NoError => 0,
        Rcode::FormErr => 1,
        Rcode::ServFail => 2,
        Rcode::NxDomain => 3,
        Rcode::NotImp => 4,
        Rcode::Refused => 5,
    }
}

/// A name from core's FQDN text. Node and service names come from users, so
/// a label over 63 bytes or a name over 255 is an `Err`, not a panic.
pub fn name(text: &str) -> Result<Name, ProtoError> {
    if text.is_ascii() {
        Name::from_ascii(text)
    } else {
        // IDNA (punycode) for non-ASCII node names, as a resolver would.
        Name::from_utf8(text)
    }
}

/// A response ready to encode: header fields, the echoed question, and
/// core's records with their names checked.
pub struct Response<'a> {
    pub header: Header,
    /// Name, type and class of the question, as received.
    pub question: Option<(WireName<'a>, u16, u16)>,
    pub answers: Vec<WireRecord<'a>>,
    pub authority: Vec<WireRecord<'a>>,
    pub additional: Vec<WireRecord<'a>>,
    /// Whether to add an OPT record (the request had one).
    pub edns: bool,
}

/// Checks every name in `records`; one that can't go on the wire (a label
/// over 63 bytes, say) is an `Err` for the whole answer.
pub fn records(list: &[Record]) -> Result<Vec<WireRecord<'_>>, ProtoError> {
    list.iter().map(WireRecord::new).collect()
}

/// How an encoding went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// Everything fit.
    Whole,
    /// Answers were cut to fit (Consul's "trimmed").
    Trimmed,
    /// Not even the header and question fit (a limit under 512 bytes,
    /// which callers never pass).
    TooSmall,
}

/// Encodes `response` into `out` in at most `limit_bytes`, trimming as
/// Consul does. `udp_answer_limit` is set for a 512-byte UDP exchange,
/// where Consul also caps the answer count.
pub fn encode_within(
    response: &Response<'_>,
    limit_bytes: usize,
    udp_answer_limit: Option<usize>,
    out: &mut Vec<u8>,
) -> Encoded {
    let all = &response.additional;
    let mut answers = response.answers.as_slice();
    let mut additional: Vec<&WireRecord<'_>> = all.iter().collect();
    let additionals = Additionals::new(all);
    let mut trimmed = false;
    if let Some(cap) = udp_answer_limit.filter(|cap| answers.len() > *cap) {
        answers = &answers[..cap];
        additional = additionals.sync(answers);
        trimmed = true;
    }
    write(response, answers, &response.authority, &additional, out);
    if out.len() <= limit_bytes {
        return if trimmed {
            Encoded::Trimmed
        } else {
            Encoded::Whole
        };
    }
    // Invariant: `best` answers fit (or `best == 0`); more than `too_many` don't.
    let (mut best, mut too_many) = (0, answers.len() + 1);
    while too_many - best > 1 {
        let middle = best + (too_many - best) / 2;
        let kept = additionals.sync(&answers[..middle]);
        write(response, &answers[..middle], &[], &kept, out);
        if out.len() <= limit_bytes {
            best = middle;
        } else {
            too_many = middle;
        }
    }
    // No answer fits: the bare header and question (and OPT).
    let kept = if best == 0 {
        Vec::new()
    } else {
        additionals.sync(&answers[..best])
    };
    write(response, &answers[..best], &[], &kept, out);
    if out.len() <= limit_bytes {
        Encoded::Trimmed
    } else {
        Encoded::TooSmall
    }
}

fn write(
    response: &Response<'_>,
    answers: &[WireRecord<'_>],
    authority: &[WireRecord<'_>],
    additional: &[&WireRecord<'_>],
    out: &mut Vec<u8>,
) {
    let mut encoder = Encoder::new(out, response.header);
    if let Some((name, qtype, qclass)) = &response.question {
        encoder.question(name, *qtype, *qclass);
    }
    for record in answers {
        encoder.record(1, record);
    }
    for record in authority {
        encoder.record(2, record);
    }
    for record in additional {
        encoder.record(3, record);
    }
    if response.edns {
        encoder.opt(super::EDNS_PAYLOAD_BYTES);
    }
}

/// The additional records by lowercased name, built on the first trim
/// (most answers are never trimmed) and then reused, so that each trimming
/// step is linear in the answers.
struct Additionals<'r, 'a> {
    all: &'r [WireRecord<'a>],
    by_name: OnceCell<BTreeMap<String, Vec<usize>>>,
}

impl<'r, 'a> Additionals<'r, 'a> {
    fn new(all: &'r [WireRecord<'a>]) -> Additionals<'r, 'a> {
        Additionals {
            all,
            by_name: OnceCell::new(),
        }
    }

    /// The additional records that the SRV answers in `answers` point at,
    /// following CNAMEs, as Consul's `syncExtra`. With no SRV answer
    /// there are none.
    fn sync(&self, answers: &[WireRecord<'a>]) -> Vec<&'r WireRecord<'a>> {
        if self.all.is_empty() {
            return Vec::new();
        }
        let by_name = self.by_name.get_or_init(|| {
            let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, record) in self.all.iter().enumerate() {
                by_name.entry(key(&record.name)).or_default().push(i);
            }
            by_name
        });
        let mut wanted: Vec<String> = answers
            .iter()
            .filter_map(|r| match &r.data {
                WireData::Srv { target, .. } => Some(key(target)),
                _ => None,
            })
            .collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut kept: Vec<&'r WireRecord<'a>> = Vec::new();
        // `wanted` grows while it is walked (CNAME chains); `seen` keeps it
        // finite even for a CNAME loop.
        let mut next = 0;
        while let Some(target) = wanted.get(next).cloned() {
            next += 1;
            if !seen.insert(target.clone()) {
                continue;
            }
            for &i in by_name.get(&target).into_iter().flatten() {
                if let WireData::Cname(cname) = &self.all[i].data {
                    wanted.push(key(cname));
                }
                kept.push(&self.all[i]);
            }
        }
        kept
    }
}

/// A name as lowercase dotted text without the final dot.
fn key(name: &WireName<'_>) -> String {
    match name {
        WireName::Text(text) => text.to_ascii_lowercase(),
        WireName::Parsed(wire) => {
            let mut text = String::new();
            let mut at = 0;
            while let Some(&len) = wire.get(at) {
                let end = at + 1 + usize::from(len);
                if at > 0 {
                    text.push('.');
                }
                text.extend(
                    wire[at + 1..end]
                        .iter()
                        .map(|b| b.to_ascii_lowercase() as char),
                );
                at = end;
            }
            text
        }
    }
}

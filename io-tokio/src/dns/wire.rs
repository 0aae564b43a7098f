//! Translation between core's DNS model and hickory-proto's wire types, and
//! the size trimming that only the encoder can decide.
//!
//! Trimming follows Consul's `trimUDPResponse`/`trimTCPResponse`
//! (agent/dns/router_response.go): a plain 512-byte UDP answer keeps at most
//! [`UDP_ANSWER_LIMIT`] answers; then the authority section goes, then
//! answers are cut from the end (binary search on the count) while the
//! additional section keeps only what the remaining SRV targets need. The TC
//! bit is never set (Consul's `enable_truncate=false`). Unlike Consul, a
//! single answer that does not fit is dropped too: nothing over the limit is
//! ever sent.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData as WireData, Record as WireRecord, RecordType};
use hickory_proto::ProtoError;
use std::collections::{BTreeMap, BTreeSet};
use tribune_core::dns::{QType, RData, Rcode, Record};

/// Consul's default `udp_answer_limit`: answers kept in a 512-byte UDP
/// response (Consul caps it further at 8, `maxUDPAnswerLimit`).
pub const UDP_ANSWER_LIMIT: usize = 3;
/// RFC 1035's UDP payload without EDNS.
pub const UDP_RESPONSE_BYTES_DEFAULT: usize = 512;
/// A TXT character-string holds at most this many bytes (RFC 1035 §3.3).
const TXT_STRING_BYTES_MAX: usize = 255;

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

pub fn response_code(rcode: Rcode) -> ResponseCode {
    match rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::FormErr => ResponseCode::FormErr,
        Rcode::ServFail => ResponseCode::ServFail,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::NotImp => ResponseCode::NotImp,
        Rcode::Refused => ResponseCode::Refused,
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

pub fn record(record: &Record) -> Result<WireRecord, ProtoError> {
    Ok(WireRecord::from_rdata(
        name(&record.name)?,
        record.ttl,
        rdata(&record.data)?,
    ))
}

pub fn records(list: &[Record]) -> Result<Vec<WireRecord>, ProtoError> {
    list.iter().map(record).collect()
}

fn rdata(data: &RData) -> Result<WireData, ProtoError> {
    Ok(match data {
        RData::A(ip) => WireData::A(A(*ip)),
        RData::Aaaa(ip) => WireData::AAAA(AAAA(*ip)),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => WireData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        RData::Txt(strings) => WireData::TXT(txt(strings)),
        RData::Ptr(target) => WireData::PTR(PTR(name(target)?)),
        RData::Cname(target) => WireData::CNAME(CNAME(name(target)?)),
        RData::Ns(target) => WireData::NS(NS(name(target)?)),
        RData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => WireData::SOA(SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            seconds(*refresh),
            seconds(*retry),
            seconds(*expire),
            *minimum,
        )),
    })
}

/// SOA intervals are signed on hickory's side; anything past i32 means
/// "forever" for a resolver anyway.
fn seconds(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Long strings (node meta values can be) are split into 255-byte
/// character-strings, which clients concatenate, instead of failing encode.
fn txt(strings: &[String]) -> TXT {
    let chunks: Vec<&[u8]> = strings
        .iter()
        .flat_map(|s| {
            let bytes = s.as_bytes();
            // An empty string is still one (empty) character-string.
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(TXT_STRING_BYTES_MAX).collect()
            };
            chunks
        })
        .collect();
    TXT::from_bytes(chunks)
}

/// Encodes `response` in at most `limit_bytes`, trimming as Consul does.
/// `udp_plain` marks a 512-byte UDP exchange, where Consul also caps the
/// answer count. `None` when not even the header and question fit (a limit
/// under 512 bytes, which callers never pass).
pub fn encode_within(
    mut response: Message,
    limit_bytes: usize,
    udp_plain: bool,
) -> Option<Vec<u8>> {
    let additionals = Additionals::new(response.additionals.clone());
    if udp_plain && response.answers.len() > UDP_ANSWER_LIMIT {
        response.answers.truncate(UDP_ANSWER_LIMIT);
        additionals.sync(&mut response);
    }
    let encoded = response.to_vec().ok()?;
    if encoded.len() <= limit_bytes {
        return Some(encoded);
    }
    response.authorities.clear();
    let all_answers = std::mem::take(&mut response.answers);
    let fits = |count: usize, response: &mut Message| -> Option<Vec<u8>> {
        response.answers = all_answers[..count].to_vec();
        additionals.sync(response);
        response.to_vec().ok().filter(|e| e.len() <= limit_bytes)
    };
    // Invariant: `best` answers fit (or `best == 0`); more than `too_many` don't.
    let (mut best, mut too_many) = (0, all_answers.len() + 1);
    let mut best_encoded = None;
    while too_many - best > 1 {
        let middle = best + (too_many - best) / 2;
        match fits(middle, &mut response) {
            Some(encoded) => (best, best_encoded) = (middle, Some(encoded)),
            None => too_many = middle,
        }
    }
    if best_encoded.is_some() {
        return best_encoded;
    }
    // No answer fits: send the bare header and question (and OPT).
    response.answers.clear();
    response.additionals.clear();
    response.to_vec().ok().filter(|e| e.len() <= limit_bytes)
}

/// The additional records by lowercased name, built once per response so
/// that each trimming step is linear in the answers.
struct Additionals {
    all: Vec<WireRecord>,
    by_name: BTreeMap<String, Vec<usize>>,
}

impl Additionals {
    fn new(all: Vec<WireRecord>) -> Additionals {
        let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, record) in all.iter().enumerate() {
            by_name.entry(key(&record.name)).or_default().push(i);
        }
        Additionals { all, by_name }
    }

    /// Keeps the additional records that a remaining SRV answer points at,
    /// following CNAMEs, as Consul's `syncExtra`. With no SRV answers left
    /// the additional section is emptied.
    fn sync(&self, response: &mut Message) {
        if self.all.is_empty() {
            return;
        }
        let mut wanted: Vec<String> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                WireData::SRV(srv) => Some(key(&srv.target)),
                _ => None,
            })
            .collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut kept: Vec<usize> = Vec::new();
        // `wanted` grows while it is walked (CNAME chains); `seen` keeps it
        // finite even for a CNAME loop.
        let mut next = 0;
        while let Some(target) = wanted.get(next).cloned() {
            next += 1;
            if !seen.insert(target.clone()) {
                continue;
            }
            for &i in self.by_name.get(&target).into_iter().flatten() {
                if let WireData::CNAME(cname) = &self.all[i].data {
                    wanted.push(key(&cname.0));
                }
                kept.push(i);
            }
        }
        response.additionals = kept.into_iter().map(|i| self.all[i].clone()).collect();
    }
}

fn key(name: &Name) -> String {
    let mut text = name.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

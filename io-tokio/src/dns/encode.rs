//! Writes a DNS response (RFC 1035 §4) straight into a byte buffer, with
//! name compression, from core's records: no hickory `Message`, `Record` or
//! `Name` per record. perf showed building and encoding those (a parsed
//! `Name` per record, a `Vec` per label list, clones while trimming) to be
//! the largest cost of an answer once the lookup was indexed.
//!
//! Compression follows hickory-proto's encoder, which the previous code
//! used, so responses keep their sizes: owner names and the names inside
//! CNAME, NS, PTR and SOA are compressed against every name written before;
//! an SRV target is written in full (RFC 2782: "name compression is not to
//! be used for this field") but later names may point into it. Labels match
//! byte for byte (case-sensitively), so a pointer never changes a name's
//! spelling.
//!
//! Names are checked once, in [`WireName::new`]: text that is plain ASCII
//! with labels of 1..=63 bytes is split on dots; anything else (escapes,
//! non-ASCII, which becomes punycode) goes through hickory's parser, whose
//! errors (a label over 63 bytes, a name over 255) surface as `Err`.

use hickory_proto::rr::Name;
use hickory_proto::ProtoError;
use std::net::{Ipv4Addr, Ipv6Addr};
use tribune_core::dns::{RData, Record};

/// A wire name is at most 255 bytes (RFC 1035 §3.1).
const NAME_BYTES_MAX: usize = 255;
/// A label is at most 63 bytes (RFC 1035 §2.3.4).
const LABEL_BYTES_MAX: usize = 63;
/// Pointers are 14 bits (RFC 1035 §4.1.4): names past this can't be targets.
const POINTER_OFFSET_MAX: usize = 0x3FFF;
/// Compression targets remembered per message; past it names are still
/// written, in full. Bounds the search for huge TCP answers.
const COMPRESSION_TARGETS_MAX: usize = 256;
/// A TXT character-string holds at most this many bytes (RFC 1035 §3.3).
const TXT_STRING_BYTES_MAX: usize = 255;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;

/// A record's name, validated, ready to write.
#[derive(Clone, Debug)]
pub enum WireName<'a> {
    /// Plain ASCII text without the final dot, labels 1..=63 bytes, at most
    /// 255 bytes on the wire; empty for the root.
    Text(&'a str),
    /// Uncompressed wire labels (length-prefixed, without the final 0), from
    /// hickory's parser.
    Parsed(Vec<u8>),
}

impl<'a> WireName<'a> {
    /// A name from core's FQDN text.
    pub fn new(text: &'a str) -> Result<WireName<'a>, ProtoError> {
        let bare = text.strip_suffix('.').unwrap_or(text);
        // What hickory's `Name::from_ascii` takes without escapes: labels
        // of letters, digits, `_` and `-` (not first), 1..=63 bytes. Any
        // other text takes hickory's parser below, so both accept the same.
        let plain = bare.len() < NAME_BYTES_MAX - 1 && plain_labels(bare.as_bytes());
        if plain || text == "." {
            return Ok(WireName::Text(if text == "." { "" } else { bare }));
        }
        let name = super::wire::name(text)?;
        let mut wire = Vec::with_capacity(text.len() + 1);
        for label in name.iter() {
            if label.len() > LABEL_BYTES_MAX {
                return Err(ProtoError::from("label over 63 bytes"));
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        if wire.len() + 1 > NAME_BYTES_MAX {
            return Err(ProtoError::from("name over 255 bytes"));
        }
        Ok(WireName::Parsed(wire))
    }

    /// A name decoded from a request (already bounded by the decoder).
    pub fn from_name(name: &Name) -> WireName<'static> {
        let mut wire = Vec::with_capacity(NAME_BYTES_MAX);
        for label in name.iter() {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        WireName::Parsed(wire)
    }

    /// The label starting at byte `at` of this name and where the next one
    /// starts; `None` past the last label.
    fn label_at(&self, at: usize) -> Option<(&[u8], usize)> {
        match self {
            WireName::Text(text) => {
                let bytes = text.as_bytes();
                let rest = bytes.get(at..).filter(|rest| !rest.is_empty())?;
                let len = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
                Some((&rest[..len], at + len + 1))
            }
            WireName::Parsed(wire) => {
                let len = usize::from(*wire.get(at)?);
                Some((&wire[at + 1..at + 1 + len], at + 1 + len))
            }
        }
    }
}

/// Whether `bytes` are dot-separated labels of 1..=63 letters, digits, `_`
/// and `-` (not first): what hickory's `Name::from_ascii` takes as is.
fn plain_labels(bytes: &[u8]) -> bool {
    let mut label_len = 0;
    for &b in bytes {
        if b == b'.' {
            if label_len == 0 {
                return false;
            }
            label_len = 0;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && label_len > 0);
        if !allowed || label_len == LABEL_BYTES_MAX {
            return false;
        }
        label_len += 1;
    }
    label_len > 0
}

/// One record with its names validated.
#[derive(Clone, Debug)]
pub struct WireRecord<'a> {
    pub name: WireName<'a>,
    pub ttl: u32,
    pub data: WireData<'a>,
}

#[derive(Clone, Debug)]
pub enum WireData<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: WireName<'a>,
    },
    Txt(&'a [String]),
    Ptr(WireName<'a>),
    Cname(WireName<'a>),
    Ns(WireName<'a>),
    Soa {
        mname: WireName<'a>,
        rname: WireName<'a>,
        numbers: [u32; 5],
    },
}

impl<'a> WireRecord<'a> {
    pub fn new(record: &'a Record) -> Result<WireRecord<'a>, ProtoError> {
        let data = match &record.data {
            RData::A(ip) => WireData::A(*ip),
            RData::Aaaa(ip) => WireData::Aaaa(*ip),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => WireData::Srv {
                priority: *priority,
                weight: *weight,
                port: *port,
                target: WireName::new(target)?,
            },
            RData::Txt(strings) => WireData::Txt(strings),
            RData::Ptr(target) => WireData::Ptr(WireName::new(target)?),
            RData::Cname(target) => WireData::Cname(WireName::new(target)?),
            RData::Ns(target) => WireData::Ns(WireName::new(target)?),
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => WireData::Soa {
                mname: WireName::new(mname)?,
                rname: WireName::new(rname)?,
                // hickory keeps the intervals as i32; past it means forever.
                numbers: [
                    *serial,
                    (*refresh).min(i32::MAX as u32),
                    (*retry).min(i32::MAX as u32),
                    (*expire).min(i32::MAX as u32),
                    *minimum,
                ],
            },
        };
        Ok(WireRecord {
            name: WireName::new(&record.name)?,
            ttl: record.ttl,
            data,
        })
    }

    fn record_type(&self) -> u16 {
        match self.data {
            WireData::A(_) => 1,
            WireData::Ns(_) => 2,
            WireData::Cname(_) => 5,
            WireData::Soa { .. } => 6,
            WireData::Ptr(_) => 12,
            WireData::Txt(_) => 16,
            WireData::Aaaa(_) => 28,
            WireData::Srv { .. } => 33,
        }
    }
}

/// The header fields of a response.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub id: u16,
    pub op_code: u8,
    pub authoritative: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    pub rcode: u8,
}

/// Writes one message into a caller-owned buffer (cleared first).
pub struct Encoder<'b> {
    out: &'b mut Vec<u8>,
    /// Offsets of names (or name tails) written so far, to point at.
    targets: Vec<u16>,
}

impl<'b> Encoder<'b> {
    /// Starts a message: the header with zero counts.
    pub fn new(out: &'b mut Vec<u8>, header: Header) -> Encoder<'b> {
        out.clear();
        out.extend_from_slice(&header.id.to_be_bytes());
        out.push(
            0x80 | ((header.op_code & 0x0F) << 3)
                | (u8::from(header.authoritative) << 2)
                | u8::from(header.recursion_desired),
        );
        out.push((u8::from(header.recursion_available) << 7) | (header.rcode & 0x0F));
        out.extend_from_slice(&[0; 8]);
        Encoder {
            out,
            targets: Vec::new(),
        }
    }

    /// Adds to a section count (0 question, 1 answer, 2 authority, 3 additional).
    fn count(&mut self, section: usize) {
        let at = 4 + 2 * section;
        let value = u16::from_be_bytes([self.out[at], self.out[at + 1]]) + 1;
        self.out[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    pub fn question(&mut self, name: &WireName<'_>, qtype: u16, qclass: u16) {
        self.name(name, true);
        self.u16(qtype);
        self.u16(qclass);
        self.count(0);
    }

    /// Writes `record` in `section` (1 answer, 2 authority, 3 additional).
    pub fn record(&mut self, section: usize, record: &WireRecord<'_>) {
        self.name(&record.name, true);
        self.u16(record.record_type());
        self.u16(CLASS_IN);
        self.out.extend_from_slice(&record.ttl.to_be_bytes());
        let length_at = self.out.len();
        self.u16(0);
        match &record.data {
            WireData::A(ip) => self.out.extend_from_slice(&ip.octets()),
            WireData::Aaaa(ip) => self.out.extend_from_slice(&ip.octets()),
            WireData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                self.name(target, false);
            }
            WireData::Txt(strings) => self.txt(strings),
            WireData::Ptr(name) | WireData::Cname(name) | WireData::Ns(name) => {
                self.name(name, true)
            }
            WireData::Soa {
                mname,
                rname,
                numbers,
            } => {
                self.name(mname, true);
                self.name(rname, true);
                for number in numbers {
                    self.out.extend_from_slice(&number.to_be_bytes());
                }
            }
        }
        // RDATA is bounded: names 255 bytes, TXT by what fits in a message
        // (callers check the total against at most 64 KiB).
        let length = (self.out.len() - length_at - 2).min(usize::from(u16::MAX)) as u16;
        self.out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        self.count(section);
    }

    /// The OPT pseudo-record (RFC 6891 §6.1.2) advertising `payload` bytes,
    /// version 0, no flags, no options.
    pub fn opt(&mut self, payload: u16) {
        self.out.push(0);
        self.u16(TYPE_OPT);
        self.u16(payload);
        self.out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.count(3);
    }

    fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    /// Long strings (node meta values can be) are split into 255-byte
    /// character-strings, which clients concatenate; an empty string is
    /// still one (empty) character-string.
    fn txt(&mut self, strings: &[String]) {
        for string in strings {
            let bytes = string.as_bytes();
            if bytes.is_empty() {
                self.out.push(0);
            }
            for chunk in bytes.chunks(TXT_STRING_BYTES_MAX) {
                self.out.push(chunk.len() as u8);
                self.out.extend_from_slice(chunk);
            }
        }
    }

    /// Writes a name, ending in a pointer to the longest tail already in
    /// the message when `compress`; its own tails become targets either way.
    fn name(&mut self, name: &WireName<'_>, compress: bool) {
        // This name's tails become targets once it is whole: a search must
        // not walk into a name that has no end yet.
        let complete = self.targets.len();
        let mut at = 0;
        while let Some((label, next)) = name.label_at(at) {
            if compress {
                if let Some(target) = self.find(name, at, complete) {
                    self.u16(0xC000 | target);
                    return;
                }
            }
            let here = self.out.len();
            if here <= POINTER_OFFSET_MAX && self.targets.len() < COMPRESSION_TARGETS_MAX {
                self.targets.push(here as u16);
            }
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label);
            at = next;
        }
        self.out.push(0);
    }

    /// A target among the first `complete` spelling the tail of `name`
    /// from byte `from` exactly, to the root. The tail's first label is
    /// found once and compared first, which rules out most targets.
    fn find(&self, name: &WireName<'_>, from: usize, complete: usize) -> Option<u16> {
        let (first, rest) = name.label_at(from)?;
        self.targets[..complete].iter().copied().find(|&target| {
            let at = self.follow(usize::from(target));
            let len = usize::from(self.out[at]);
            len == first.len()
                && self.out[at + 1..at + 1 + len] == *first
                && self.spells(at + 1 + len, name, rest)
        })
    }

    /// Whether the name at `at` in the message is the tail of `name` from
    /// byte `from`. Pointers in our own output only point backwards, so
    /// the walk ends.
    fn spells(&self, mut at: usize, name: &WireName<'_>, mut from: usize) -> bool {
        while let Some((label, next)) = name.label_at(from) {
            at = self.follow(at);
            let len = usize::from(self.out[at]);
            if len != label.len() || self.out[at + 1..at + 1 + len] != *label {
                return false;
            }
            at += 1 + len;
            from = next;
        }
        self.out[self.follow(at)] == 0
    }

    fn follow(&self, mut at: usize) -> usize {
        while self.out[at] & 0xC0 == 0xC0 {
            at = usize::from(u16::from_be_bytes([self.out[at] & 0x3F, self.out[at + 1]]));
        }
        at
    }
}

//! memberlist's packet format: one message is `[type byte][msgpack body]`;
//! a packet is one message, or a compound of several, possibly LZW
//! compressed, CRC-protected, encrypted and labelled.
//!
//! Receiving (memberlist's `ingestPacket` → `handleCommand`), outermost
//! first:
//!
//! ```text
//! [244 len label]?        label header: must name our pool (else refused)
//! [vsn nonce ct+tag]      if a keyring is set: AES-GCM, label as AAD
//! [12 crc32be]?           hasCrc: CRC-32 IEEE of the rest (protocol ≥ 5)
//! [9 {Algo,Buf}]          compress: LZW of a whole message  ┐ nest, up to
//! [7 n len16be*n parts]   compound: n messages               ┘ GOSSIP_NESTING_MAX
//! [0..=8, 11 body]        ping, indirect ping, ack, suspect, alive, dead, user, nack
//! ```
//!
//! Sending is the reverse ([`seal_packet`]): compound (if several), LZW
//! (kept only if it is smaller, as memberlist does), CRC, encryption,
//! label. A [`Packer`] fills one packet with piggybacked broadcasts up to a
//! byte budget, as memberlist's `sendMsg` does with `UDPBufferSize`.
//!
//! Compatibility: bodies are byte-identical to what memberlist 0.2.2 with
//! go-msgpack 0.5.5 writes (the golden vectors in the tests), and the
//! reader accepts what go-msgpack v2 (memberlist ≥ 0.5.1) writes.

use super::crypto::{decrypt_payload, encrypt_payload, nonce_from, EncryptionVersion, Keyring};
use super::error::{inner, WireError};
use super::lzw;
use super::message::*;
use super::msgpack::{self, Fields, Reader, Value};
use crate::limits::{
    GOSSIP_COMPOUND_PARTS_MAX, GOSSIP_LABEL_BYTES_MAX, GOSSIP_NESTING_MAX, GOSSIP_PACKET_BYTES_MAX,
    GOSSIP_PACKET_DECOMPRESSED_BYTES_MAX, GOSSIP_PUSH_PULL_NODES_MAX, GOSSIP_USER_STATE_BYTES_MAX,
};
use crate::rng::Rng;

// ---------------------------------------------------------------- CRC-32

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            // Reflected IEEE 802.3 polynomial (Go's crc32.IEEE).
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 IEEE, Go's `crc32.ChecksumIEEE` (memberlist's `hasCrcMsg`). Not
/// tribune's CRC-32C: memberlist peers compute this one.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        CRC_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8)
    })
}

// ---------------------------------------------------------------- messages

/// Encodes one message in its packet form, `[type][body]`. `User` is its
/// raw payload after the type byte; `PushPull` (stream only) is the plain
/// push/pull stream.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = vec![msg.message_type() as u8];
    encode_body(msg, &mut out);
    out
}

fn encode_body(msg: &Message, out: &mut Vec<u8>) {
    use msgpack::{write_bool, write_bytes, write_key, write_map_len, write_str, write_uint};
    match msg {
        Message::Ping(p) => {
            let source = source_fields(&p.source_addr, p.source_port, &p.source_node);
            write_map_len(out, 2 + source);
            write_key(out, "Node");
            write_str(out, p.node.as_bytes());
            write_key(out, "SeqNo");
            write_uint(out, p.seq_no.into());
            write_source(out, &p.source_addr, p.source_port, &p.source_node);
        }
        Message::IndirectPing(p) => {
            let source = source_fields(&p.source_addr, p.source_port, &p.source_node);
            write_map_len(out, 5 + source);
            write_key(out, "Nack");
            write_bool(out, p.nack);
            write_key(out, "Node");
            write_str(out, p.node.as_bytes());
            write_key(out, "Port");
            write_uint(out, p.port.into());
            write_key(out, "SeqNo");
            write_uint(out, p.seq_no.into());
            write_source(out, &p.source_addr, p.source_port, &p.source_node);
            write_key(out, "Target");
            write_bytes(out, &p.target);
        }
        Message::Ack(a) => {
            write_map_len(out, 2);
            write_key(out, "Payload");
            write_bytes(out, &a.payload);
            write_key(out, "SeqNo");
            write_uint(out, a.seq_no.into());
        }
        Message::Nack(n) => {
            write_map_len(out, 1);
            write_key(out, "SeqNo");
            write_uint(out, n.seq_no.into());
        }
        Message::Err(e) => {
            write_map_len(out, 1);
            write_key(out, "Error");
            write_str(out, e.error.as_bytes());
        }
        Message::Suspect(s) => accusation(out, s.incarnation, &s.node, &s.from),
        Message::Dead(d) => accusation(out, d.incarnation, &d.node, &d.from),
        Message::Alive(a) => {
            write_map_len(out, 6);
            write_key(out, "Addr");
            write_bytes(out, &a.addr);
            write_key(out, "Incarnation");
            write_uint(out, a.incarnation.into());
            write_key(out, "Meta");
            write_bytes(out, &a.meta);
            write_key(out, "Node");
            write_str(out, a.node.as_bytes());
            write_key(out, "Port");
            write_uint(out, a.port.into());
            write_key(out, "Vsn");
            write_str(out, &a.vsn);
        }
        Message::PushPull(p) => encode_push_pull_body(p, out),
        Message::User(payload) => out.extend_from_slice(payload),
    }
}

/// How many of the `omitempty` source fields of a ping are present.
fn source_fields(addr: &[u8], port: u16, node: &str) -> usize {
    usize::from(!addr.is_empty()) + usize::from(port != 0) + usize::from(!node.is_empty())
}

fn write_source(out: &mut Vec<u8>, addr: &[u8], port: u16, node: &str) {
    use msgpack::{write_key, write_str, write_uint};
    if !addr.is_empty() {
        write_key(out, "SourceAddr");
        write_str(out, addr);
    }
    if !node.is_empty() {
        write_key(out, "SourceNode");
        write_str(out, node.as_bytes());
    }
    if port != 0 {
        write_key(out, "SourcePort");
        write_uint(out, port.into());
    }
}

/// `suspect` and `dead` share their shape.
fn accusation(out: &mut Vec<u8>, incarnation: u32, node: &str, from: &str) {
    use msgpack::{write_key, write_map_len, write_str, write_uint};
    write_map_len(out, 3);
    write_key(out, "From");
    write_str(out, from.as_bytes());
    write_key(out, "Incarnation");
    write_uint(out, incarnation.into());
    write_key(out, "Node");
    write_str(out, node.as_bytes());
}

pub(crate) fn encode_push_pull_body(p: &PushPull, out: &mut Vec<u8>) {
    use msgpack::{write_bool, write_bytes, write_int, write_key, write_map_len, write_str};
    write_map_len(out, 3);
    write_key(out, "Join");
    write_bool(out, p.join);
    write_key(out, "Nodes");
    write_int(out, p.nodes.len() as i64);
    write_key(out, "UserStateLen");
    write_int(out, p.user_state.len() as i64);
    for n in &p.nodes {
        write_map_len(out, 7);
        write_key(out, "Addr");
        write_bytes(out, &n.addr);
        write_key(out, "Incarnation");
        msgpack::write_uint(out, n.incarnation.into());
        write_key(out, "Meta");
        write_bytes(out, &n.meta);
        write_key(out, "Name");
        write_str(out, n.name.as_bytes());
        write_key(out, "Port");
        msgpack::write_uint(out, n.port.into());
        write_key(out, "State");
        write_int(out, n.state as i64);
        write_key(out, "Vsn");
        write_str(out, &n.vsn);
    }
    out.extend_from_slice(&p.user_state);
}

/// Decodes one message in its packet form (see [`encode_message`]). Bytes
/// after a msgpack body are ignored, as memberlist's decoder ignores them.
pub fn decode_message(buf: &[u8]) -> Result<Message, WireError> {
    let (&first, body) = buf.split_first().ok_or(WireError::Empty)?;
    let t = MessageType::from_u8(first).ok_or(WireError::UnknownMessageType(first))?;
    if t == MessageType::User {
        return Ok(Message::User(body.to_vec()));
    }
    if t == MessageType::PushPull {
        return decode_push_pull(body).map(|(p, _)| Message::PushPull(p));
    }
    let (value, _) = msgpack::read_value(body)?;
    decode_body(t, &value)
}

/// Decodes the msgpack body of a fixed-shape message.
pub(crate) fn decode_body(t: MessageType, value: &Value<'_>) -> Result<Message, WireError> {
    let what = "message body";
    let f = Fields::of(value, what)?;
    Ok(match t {
        MessageType::Ping => Message::Ping(Ping {
            seq_no: f.u32("SeqNo")?,
            node: f.string("Node")?,
            source_addr: f.bytes("SourceAddr")?,
            source_port: f.u16("SourcePort")?,
            source_node: f.string("SourceNode")?,
        }),
        MessageType::IndirectPing => Message::IndirectPing(IndirectPing {
            seq_no: f.u32("SeqNo")?,
            target: f.bytes("Target")?,
            port: f.u16("Port")?,
            node: f.string("Node")?,
            nack: f.bool("Nack")?,
            source_addr: f.bytes("SourceAddr")?,
            source_port: f.u16("SourcePort")?,
            source_node: f.string("SourceNode")?,
        }),
        MessageType::AckResp => Message::Ack(Ack {
            seq_no: f.u32("SeqNo")?,
            payload: f.bytes("Payload")?,
        }),
        MessageType::NackResp => Message::Nack(Nack {
            seq_no: f.u32("SeqNo")?,
        }),
        MessageType::Err => Message::Err(ErrResp {
            error: f.string("Error")?,
        }),
        MessageType::Suspect => Message::Suspect(Suspect {
            incarnation: f.u32("Incarnation")?,
            node: f.string("Node")?,
            from: f.string("From")?,
        }),
        MessageType::Dead => Message::Dead(Dead {
            incarnation: f.u32("Incarnation")?,
            node: f.string("Node")?,
            from: f.string("From")?,
        }),
        MessageType::Alive => Message::Alive(Alive {
            incarnation: f.u32("Incarnation")?,
            node: f.string("Node")?,
            addr: f.bytes("Addr")?,
            port: f.u16("Port")?,
            meta: f.bytes("Meta")?,
            vsn: vsn(&f)?,
        }),
        other => {
            return Err(WireError::UnexpectedMessageType {
                got: other as u8,
                context: "as a single message",
            })
        }
    })
}

/// `Vsn []uint8`: written as a 6-byte string; an array of small integers
/// (what other msgpack writers make of a byte list) is read too. Shorter
/// lists are zero-filled, extra entries dropped.
fn vsn(f: &Fields<'_, '_>) -> Result<Vsn, WireError> {
    let mut out = [0u8; 6];
    match f.get("Vsn") {
        None | Some(Value::Nil) => {}
        Some(Value::Bytes(b)) => {
            for (slot, &v) in out.iter_mut().zip(b.iter()) {
                *slot = v;
            }
        }
        Some(Value::Array(items)) => {
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = msgpack::uint(item, "Vsn", u8::MAX.into())? as u8;
            }
        }
        Some(_) => {
            return Err(WireError::Field {
                field: "Vsn",
                reason: "expected a byte string",
            })
        }
    }
    Ok(out)
}

/// The body of a plain push/pull (after its type byte): the header, then
/// `Nodes` node states, then `UserStateLen` raw bytes. Returns the bytes
/// consumed; a short input is `Truncated` with how much it needs.
pub(crate) fn decode_push_pull(body: &[u8]) -> Result<(PushPull, usize), WireError> {
    let mut r = Reader::new(body);
    let header = r.value()?;
    let h = Fields::of(&header, "pushPullHeader")?;
    let nodes = count(h.int("Nodes")?, "Nodes", GOSSIP_PUSH_PULL_NODES_MAX)?;
    let user_len = count(
        h.int("UserStateLen")?,
        "UserStateLen",
        GOSSIP_USER_STATE_BYTES_MAX,
    )?;
    let join = h.bool("Join")?;
    let mut states = Vec::with_capacity(nodes.min(r.rest().len() / 8));
    for _ in 0..nodes {
        let v = r.value()?;
        states.push(decode_node(&v)?);
    }
    let start = r.position();
    let end = start + user_len;
    if end > body.len() {
        return Err(WireError::Truncated {
            need: end,
            have: body.len(),
        });
    }
    let push_pull = PushPull {
        join,
        nodes: states,
        user_state: body[start..end].to_vec(),
    };
    Ok((push_pull, end))
}

/// A non-negative count no larger than `max`.
pub(crate) fn count(v: i64, field: &'static str, max: usize) -> Result<usize, WireError> {
    let n = usize::try_from(v).map_err(|_| WireError::Field {
        field,
        reason: "negative count",
    })?;
    if n > max {
        return Err(WireError::TooLarge {
            what: field,
            len: n,
            max,
        });
    }
    Ok(n)
}

fn decode_node(v: &Value<'_>) -> Result<PushNodeState, WireError> {
    let f = Fields::of(v, "pushNodeState")?;
    let state = f.int("State")?;
    Ok(PushNodeState {
        name: f.string("Name")?,
        addr: f.bytes("Addr")?,
        port: f.u16("Port")?,
        meta: f.bytes("Meta")?,
        incarnation: f.u32("Incarnation")?,
        state: NodeState::from_i64(state).ok_or(WireError::Field {
            field: "State",
            reason: "unknown node state",
        })?,
        vsn: vsn(&f)?,
    })
}

// ---------------------------------------------------------------- compound

/// The parts of a compound message; `truncated` counts the parts its header
/// announced that the buffer did not hold whole (memberlist logs them and
/// handles the whole ones).
#[derive(Debug, PartialEq, Eq)]
pub struct CompoundParts<'a> {
    pub parts: Vec<&'a [u8]>,
    pub truncated: usize,
}

/// Splits a compound body (after its type byte).
pub fn decode_compound(body: &[u8]) -> Result<CompoundParts<'_>, WireError> {
    let (&n, rest) = body
        .split_first()
        .ok_or(WireError::Compound("missing compound length byte"))?;
    let n = usize::from(n);
    if rest.len() < 2 * n {
        return Err(WireError::Compound("truncated len slice"));
    }
    let (lengths, mut data) = rest.split_at(2 * n);
    let mut parts = Vec::with_capacity(n);
    for (i, len) in lengths.chunks_exact(2).enumerate() {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if data.len() < len {
            return Ok(CompoundParts {
                parts,
                truncated: n - i,
            });
        }
        let (part, more) = data.split_at(len);
        parts.push(part);
        data = more;
    }
    Ok(CompoundParts {
        parts,
        truncated: 0,
    })
}

/// `makeCompoundMessage`: `[7][count][len16be...][parts...]`.
pub fn encode_compound<P: AsRef<[u8]>>(parts: &[P]) -> Result<Vec<u8>, WireError> {
    if parts.len() > GOSSIP_COMPOUND_PARTS_MAX {
        return Err(WireError::TooLarge {
            what: "compound part count",
            len: parts.len(),
            max: GOSSIP_COMPOUND_PARTS_MAX,
        });
    }
    let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    let mut out = Vec::with_capacity(2 + 2 * parts.len() + total);
    out.push(MessageType::Compound as u8);
    out.push(parts.len() as u8);
    for p in parts {
        let len = u16::try_from(p.as_ref().len()).map_err(|_| WireError::TooLarge {
            what: "compound part",
            len: p.as_ref().len(),
            max: usize::from(u16::MAX),
        })?;
        out.extend(len.to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p.as_ref());
    }
    Ok(out)
}

/// Fills one packet with encoded messages up to a byte budget: the first
/// message is always taken (memberlist sends it even alone and oversized),
/// later ones only while the compound stays within the budget and 255
/// parts.
#[derive(Debug)]
pub struct Packer {
    budget: usize,
    parts: Vec<Vec<u8>>,
    payload_bytes: usize,
}

impl Packer {
    pub fn new(budget: usize) -> Self {
        Packer {
            budget,
            parts: Vec::new(),
            payload_bytes: 0,
        }
    }

    /// The bytes a compound may take so that the sealed packet fits in
    /// `udp_buffer` bytes: what the label header, CRC and encryption add
    /// is set aside (memberlist's `sendMsg` arithmetic, plus the CRC).
    pub fn budget(udp_buffer: usize, out: &Outbound<'_>) -> usize {
        let encryption = out.keyring.map(|_| out.encryption_version);
        udp_buffer.saturating_sub(Self::framing_bytes(out.label, out.crc, encryption))
    }

    /// What sealing adds around a payload: the label header, the CRC and
    /// the encryption.
    pub fn framing_bytes(label: &str, crc: bool, encryption: Option<EncryptionVersion>) -> usize {
        let label = if label.is_empty() { 0 } else { 2 + label.len() };
        let crc = if crc { 5 } else { 0 };
        label + crc + encryption.map_or(0, EncryptionVersion::overhead)
    }

    /// The size the packet's payload would have with `parts` parts
    /// holding `bytes` bytes.
    fn size(parts: usize, bytes: usize) -> usize {
        if parts <= 1 {
            bytes
        } else {
            2 + 2 * parts + bytes
        }
    }

    /// Adds `msg` if it fits; gives it back otherwise.
    pub fn push(&mut self, msg: Vec<u8>) -> Result<(), Vec<u8>> {
        let fits = self.parts.is_empty()
            || (self.parts.len() < GOSSIP_COMPOUND_PARTS_MAX
                && msg.len() <= usize::from(u16::MAX)
                && self.parts[0].len() <= usize::from(u16::MAX)
                && Self::size(self.parts.len() + 1, self.payload_bytes + msg.len()) <= self.budget);
        if !fits {
            return Err(msg);
        }
        self.payload_bytes += msg.len();
        self.parts.push(msg);
        Ok(())
    }

    /// Room left for one more message's own bytes.
    pub fn remaining(&self) -> usize {
        let next = Self::size(self.parts.len() + 1, self.payload_bytes);
        self.budget.saturating_sub(next)
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The packet payload: the message itself if there is one, a compound
    /// if there are several, `None` if empty.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        match self.parts.len() {
            0 => None,
            1 => self.parts.pop(),
            _ => Some(encode_compound(&self.parts).expect("push keeps parts within limits")),
        }
    }
}

// ---------------------------------------------------------------- labels

/// `AddLabelHeaderToPacket` / the stream header: `[244][len][label]`, or
/// nothing for the empty label.
pub fn label_header(label: &str) -> Result<Vec<u8>, WireError> {
    if label.is_empty() {
        return Ok(Vec::new());
    }
    if label.len() > GOSSIP_LABEL_BYTES_MAX {
        return Err(WireError::BadLabel("label is longer than 255 bytes"));
    }
    let mut out = Vec::with_capacity(2 + label.len());
    out.push(MessageType::HasLabel as u8);
    out.push(label.len() as u8);
    out.extend_from_slice(label.as_bytes());
    Ok(out)
}

/// `RemoveLabelHeaderFromPacket`: the label (empty if none) and the rest.
pub fn split_label(buf: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    match buf {
        [244, rest @ ..] => {
            let (&size, rest) = rest.split_first().ok_or(WireError::Truncated {
                need: 2,
                have: buf.len(),
            })?;
            let size = usize::from(size);
            if size == 0 {
                return Err(WireError::BadLabel(
                    "label header cannot be empty when present",
                ));
            }
            if rest.len() < size {
                return Err(WireError::Truncated {
                    need: 2 + size,
                    have: buf.len(),
                });
            }
            Ok(rest.split_at(size))
        }
        _ => Ok((&[], buf)),
    }
}

/// The label a packet or stream must carry, after the `skip_label_check`
/// rule: with the check skipped, a label header is refused and ours is
/// assumed (memberlist's `SkipInboundLabelCheck`).
pub(crate) fn check_label<'a>(got: &[u8], inbound: &Inbound<'a>) -> Result<&'a str, WireError> {
    if inbound.skip_label_check {
        if !got.is_empty() {
            return Err(WireError::BadLabel("unexpected double label header"));
        }
        return Ok(inbound.label);
    }
    if got != inbound.label.as_bytes() {
        return Err(WireError::LabelMismatch {
            expected: inbound.label.to_owned(),
            got: String::from_utf8_lossy(got).into_owned(),
        });
    }
    Ok(inbound.label)
}

// ---------------------------------------------------------------- packets

/// How this node reads packets and streams.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    /// The gossip label (`-label`, or Consul's segment/partition); "" for
    /// none.
    pub label: &'a str,
    /// Set when gossip encryption is on.
    pub keyring: Option<&'a Keyring>,
    /// memberlist's `GossipVerifyIncoming` (on by default): refuse
    /// plaintext when a keyring is set. Off only while rolling encryption
    /// out.
    pub verify_incoming: bool,
    /// memberlist's `SkipInboundLabelCheck`.
    pub skip_label_check: bool,
}

impl<'a> Inbound<'a> {
    pub fn new(label: &'a str, keyring: Option<&'a Keyring>) -> Self {
        Inbound {
            label,
            keyring,
            verify_incoming: true,
            skip_label_check: false,
        }
    }
}

/// How this node writes packets and streams.
#[derive(Clone, Copy, Debug)]
pub struct Outbound<'a> {
    pub label: &'a str,
    /// Encrypt with its primary key (memberlist's `GossipVerifyOutgoing`
    /// with a keyring); `None` sends plaintext.
    pub keyring: Option<&'a Keyring>,
    pub encryption_version: EncryptionVersion,
    /// memberlist's `EnableCompression` (on in its LAN/WAN defaults).
    pub compress: bool,
    /// Add a CRC: memberlist does when the peer's protocol max is ≥ 5.
    pub crc: bool,
}

impl<'a> Outbound<'a> {
    /// memberlist's defaults for a protocol-5 peer: compression and CRC on,
    /// encryption version 1.
    pub fn new(label: &'a str, keyring: Option<&'a Keyring>) -> Self {
        Outbound {
            label,
            keyring,
            encryption_version: EncryptionVersion::Unpadded,
            compress: true,
            crc: true,
        }
    }
}

/// What one packet held. memberlist handles each part of a compound on its
/// own, so a bad part does not spoil the others: it lands in `part_errors`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedPacket {
    pub messages: Vec<Message>,
    /// Parts announced by a compound header but cut off by the packet end.
    pub truncated_parts: usize,
    pub part_errors: Vec<WireError>,
}

/// Decodes a packet with memberlist's defaults (`verify_incoming` on, label
/// checked). See [`decode_packet_with`].
pub fn decode_packet(
    buf: &[u8],
    keyring: Option<&Keyring>,
    label: &str,
) -> Result<DecodedPacket, WireError> {
    decode_packet_with(buf, &Inbound::new(label, keyring))
}

/// Decodes a received UDP payload: label, decryption, CRC, then the
/// (possibly compressed, possibly compound) messages. An `Err` means the
/// packet as a whole is refused.
pub fn decode_packet_with(buf: &[u8], inbound: &Inbound<'_>) -> Result<DecodedPacket, WireError> {
    if buf.len() > GOSSIP_PACKET_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "packet",
            len: buf.len(),
            max: GOSSIP_PACKET_BYTES_MAX,
        });
    }
    let (got, rest) = split_label(buf)?;
    let label = check_label(got, inbound)?;
    let plain;
    let mut buf = rest;
    if let Some(keyring) = inbound.keyring {
        match decrypt_payload(keyring, buf, label.as_bytes()) {
            Ok(p) => {
                plain = p;
                buf = &plain;
            }
            // While encryption rolls out, undecryptable packets are read
            // as plaintext.
            Err(_) if !inbound.verify_incoming => {}
            Err(e) => return Err(e),
        }
    }
    if buf.len() >= 5 && buf[0] == MessageType::HasCrc as u8 {
        let expected = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let computed = crc32_ieee(&buf[5..]);
        if expected != computed {
            return Err(WireError::BadChecksum { expected, computed });
        }
        buf = &buf[5..];
    }
    let mut out = DecodedPacket::default();
    handle_command(buf, 0, &mut out)?;
    Ok(out)
}

/// memberlist's `handleCommand`, collecting instead of dispatching.
fn handle_command(buf: &[u8], depth: usize, out: &mut DecodedPacket) -> Result<(), WireError> {
    if depth > GOSSIP_NESTING_MAX {
        return Err(WireError::TooDeep);
    }
    let (&first, body) = buf.split_first().ok_or(WireError::Empty)?;
    let t = MessageType::from_u8(first).ok_or(WireError::UnknownMessageType(first))?;
    match t {
        MessageType::Compound => {
            let compound = decode_compound(body)?;
            out.truncated_parts += compound.truncated;
            for part in compound.parts {
                if let Err(e) = handle_command(part, depth + 1, out) {
                    out.part_errors.push(e);
                }
            }
        }
        MessageType::Compress => {
            let (value, _) = msgpack::read_value(body).map_err(inner)?;
            let payload = decompress(&value, GOSSIP_PACKET_DECOMPRESSED_BYTES_MAX)?;
            handle_command(&payload, depth + 1, out)?;
        }
        MessageType::User => out.messages.push(Message::User(body.to_vec())),
        MessageType::Ping
        | MessageType::IndirectPing
        | MessageType::AckResp
        | MessageType::NackResp
        | MessageType::Suspect
        | MessageType::Alive
        | MessageType::Dead => {
            let (value, _) = msgpack::read_value(body).map_err(inner)?;
            out.messages.push(decode_body(t, &value)?);
        }
        other => {
            return Err(WireError::UnexpectedMessageType {
                got: other as u8,
                context: "in a packet",
            })
        }
    }
    Ok(())
}

/// `decompressBuffer` of a decoded `compress{Algo, Buf}`.
pub(crate) fn decompress(value: &Value<'_>, max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let f = Fields::of(value, "compress")?;
    let algo = f.u64("Algo")?;
    if algo != 0 {
        return Err(WireError::UnknownCompression(algo));
    }
    let buf = f
        .get("Buf")
        .map_or(Ok(&[][..]), |v| msgpack::bytes(v, "Buf"))?;
    lzw::decompress(buf, max_bytes)
}

/// `compressPayload`: `[9]{Algo: 0, Buf: lzw(payload)}`.
pub fn compress_payload(payload: &[u8]) -> Vec<u8> {
    use msgpack::{write_key, write_map_len, write_str, write_uint};
    let packed = lzw::compress(payload);
    let mut out = Vec::with_capacity(packed.len() + 16);
    out.push(MessageType::Compress as u8);
    write_map_len(&mut out, 2);
    write_key(&mut out, "Algo");
    write_uint(&mut out, 0);
    write_key(&mut out, "Buf");
    write_str(&mut out, &packed);
    out
}

/// The payload [`seal_packet`] would start from for `parts` (encoded
/// messages): the message itself, or their compound, LZW-compressed when
/// `compress` is on and that is smaller. `None` when they cannot form a
/// compound (too many parts, a part over 64 KiB). Label, CRC and
/// encryption come on top.
pub fn packet_payload_len<P: AsRef<[u8]>>(parts: &[P], compress: bool) -> Option<usize> {
    let compound;
    let payload = match parts {
        [] => return Some(0),
        [one] => one.as_ref(),
        _ => {
            compound = encode_compound(parts).ok()?;
            &compound
        }
    };
    if !compress {
        return Some(payload.len());
    }
    Some(payload.len().min(compress_payload(payload).len()))
}

/// Turns a packet payload (one encoded message, or a compound from a
/// [`Packer`]) into the bytes to send: LZW if it helps, CRC, encryption
/// with the primary key, label header.
pub fn seal_packet(
    payload: &[u8],
    out: &Outbound<'_>,
    rng: &mut Rng,
) -> Result<Vec<u8>, WireError> {
    let mut msg = payload.to_vec();
    if out.compress {
        let compressed = compress_payload(&msg);
        if compressed.len() < msg.len() {
            msg = compressed;
        }
    }
    if out.crc {
        let mut with_crc = Vec::with_capacity(5 + msg.len());
        with_crc.push(MessageType::HasCrc as u8);
        with_crc.extend(crc32_ieee(&msg).to_be_bytes());
        with_crc.extend_from_slice(&msg);
        msg = with_crc;
    }
    if let Some(keyring) = out.keyring {
        let nonce = nonce_from(rng);
        msg = encrypt_payload(
            out.encryption_version,
            keyring.primary(),
            &nonce,
            &msg,
            out.label.as_bytes(),
        );
    }
    let mut packet = label_header(out.label)?;
    if packet.is_empty() {
        return Ok(msg);
    }
    packet.extend_from_slice(&msg);
    Ok(packet)
}

/// Encodes and seals `messages` as one packet (a compound if several).
/// Messages that only travel on streams (`PushPull`, `Err`) are refused.
pub fn encode_packet(
    messages: &[Message],
    out: &Outbound<'_>,
    rng: &mut Rng,
) -> Result<Vec<u8>, WireError> {
    let mut parts = Vec::with_capacity(messages.len());
    for m in messages {
        if matches!(m, Message::PushPull(_) | Message::Err(_)) {
            return Err(WireError::UnexpectedMessageType {
                got: m.message_type() as u8,
                context: "in a packet",
            });
        }
        parts.push(encode_message(m));
    }
    let payload = match parts.len() {
        0 => return Err(WireError::Empty),
        1 => parts.pop().expect("one part"),
        _ => encode_compound(&parts)?,
    };
    seal_packet(&payload, out, rng)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
pub(crate) mod tests;

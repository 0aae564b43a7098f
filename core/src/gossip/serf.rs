//! serf's messages (`serf/messages.go`) and its tags in memberlist's node
//! meta (`encodeTags`/`decodeTags`).
//!
//! serf rides on memberlist: its broadcasts travel as memberlist `User`
//! messages (`[serf type][msgpack]` after memberlist's `8`), and its
//! push/pull state is memberlist's push/pull user state. The msgpack rules
//! are memberlist's (see [`msgpack`](super::msgpack)): sorted field names,
//! raw strings, nil for empty `[]byte`; slices serf always allocates
//! (`LeftMembers`, `Events`) are written as arrays even when empty.
//!
//! Type bytes follow serf's `messageType` iota: leave 0, join 1, pushPull 2,
//! userEvent 3, query 4, queryResponse 5, conflictResponse 6, keyRequest 7,
//! keyResponse 8, relay 9. Conflict and key messages travel inside query
//! payloads and responses; a relay wraps another serf message with the
//! address to forward it to.

use super::error::WireError;
use super::msgpack::{self, Fields, Value};
use crate::limits::GOSSIP_META_BYTES_MAX;
use std::collections::BTreeMap;

/// serf's `messageType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SerfMessageType {
    Leave = 0,
    Join = 1,
    PushPull = 2,
    UserEvent = 3,
    Query = 4,
    QueryResponse = 5,
    ConflictResponse = 6,
    KeyRequest = 7,
    KeyResponse = 8,
    Relay = 9,
}

impl SerfMessageType {
    pub fn from_u8(b: u8) -> Option<Self> {
        use SerfMessageType::*;
        Some(match b {
            0 => Leave,
            1 => Join,
            2 => PushPull,
            3 => UserEvent,
            4 => Query,
            5 => QueryResponse,
            6 => ConflictResponse,
            7 => KeyRequest,
            8 => KeyResponse,
            9 => Relay,
            _ => return None,
        })
    }
}

/// `queryFlagAck`: the sender wants an ack from each node that got it.
pub const QUERY_FLAG_ACK: u32 = 1;
/// `queryFlagNoBroadcast`: deliver to this node only, don't re-gossip.
pub const QUERY_FLAG_NO_BROADCAST: u32 = 2;
/// serf's tag-encoding marker, the first byte of a node's meta.
pub const TAG_MAGIC_BYTE: u8 = 255;

/// `messageJoin`: `node` joined at Lamport time `ltime`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Join {
    pub ltime: u64,
    pub node: String,
}

/// `messageLeave`; `prune` also erases the node (`serf force-leave -prune`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Leave {
    pub ltime: u64,
    pub node: String,
    pub prune: bool,
}

/// One event of a push/pull's event buffer (`userEvent`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BufferedEvent {
    pub name: String,
    pub payload: Vec<u8>,
}

/// The events seen at one Lamport time (`userEvents`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BufferedEvents {
    pub ltime: u64,
    pub events: Vec<BufferedEvent>,
}

/// `messagePushPull`: serf's state in memberlist's push/pull.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PushPull {
    pub ltime: u64,
    pub status_ltimes: BTreeMap<String, u64>,
    pub left_members: Vec<String>,
    pub event_ltime: u64,
    /// serf's ring buffer of recent events; empty slots are `None` (nil).
    pub events: Vec<Option<BufferedEvents>>,
    pub query_ltime: u64,
}

/// `messageUserEvent`; `cc` is "can coalesce".
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserEvent {
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
    pub cc: bool,
}

/// `messageQuery`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Query {
    pub ltime: u64,
    pub id: u32,
    /// Where to send responses (the querying node).
    pub addr: Vec<u8>,
    pub port: u16,
    pub source_node: String,
    /// Encoded filters, see [`Filter`].
    pub filters: Vec<Vec<u8>>,
    pub flags: u32,
    pub relay_factor: u8,
    /// Go `time.Duration`: nanoseconds.
    pub timeout_ns: i64,
    pub name: String,
    pub payload: Vec<u8>,
}

/// `messageQueryResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueryResponse {
    pub ltime: u64,
    pub id: u32,
    pub from: String,
    pub flags: u32,
    pub payload: Vec<u8>,
}

/// serf's `Member`, the answer to a `_serf_conflict` query.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Member {
    pub name: String,
    pub addr: Vec<u8>,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    /// `MemberStatus`: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: i64,
    /// protocol min, max, cur; delegate min, max, cur.
    pub vsn: [u8; 6],
}

/// `keyRequest`: the key of an install/use/remove-key query.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyRequest {
    pub key: Vec<u8>,
}

/// `nodeKeyResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyResponse {
    pub result: bool,
    pub message: String,
    /// Base64 keys (list-keys).
    pub keys: Vec<String>,
    pub primary_key: String,
}

/// `relayHeader` plus the serf message to forward, kept as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Relay {
    /// `net.UDPAddr`: IP bytes, port, IPv6 zone.
    pub dest_ip: Vec<u8>,
    pub dest_port: i64,
    pub dest_zone: String,
    pub dest_name: String,
    /// `[serf type][msgpack]` to send to the destination.
    pub message: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerfMessage {
    Leave(Leave),
    Join(Join),
    PushPull(PushPull),
    UserEvent(UserEvent),
    Query(Query),
    QueryResponse(QueryResponse),
    /// `None` when the answering node does not know the member (Go nil).
    ConflictResponse(Option<Member>),
    KeyRequest(KeyRequest),
    KeyResponse(KeyResponse),
    Relay(Relay),
}

impl SerfMessage {
    pub fn message_type(&self) -> SerfMessageType {
        match self {
            SerfMessage::Leave(_) => SerfMessageType::Leave,
            SerfMessage::Join(_) => SerfMessageType::Join,
            SerfMessage::PushPull(_) => SerfMessageType::PushPull,
            SerfMessage::UserEvent(_) => SerfMessageType::UserEvent,
            SerfMessage::Query(_) => SerfMessageType::Query,
            SerfMessage::QueryResponse(_) => SerfMessageType::QueryResponse,
            SerfMessage::ConflictResponse(_) => SerfMessageType::ConflictResponse,
            SerfMessage::KeyRequest(_) => SerfMessageType::KeyRequest,
            SerfMessage::KeyResponse(_) => SerfMessageType::KeyResponse,
            SerfMessage::Relay(_) => SerfMessageType::Relay,
        }
    }
}

// ---------------------------------------------------------------- encoding

use msgpack::{
    write_array_len, write_bool, write_bytes, write_int, write_key, write_map_len, write_nil,
    write_str, write_uint,
};

/// `encodeMessage(t, msg)`: `[type][msgpack]` (for a relay, serf's
/// `encodeRelayMessage`: `[9][header][inner message]`).
pub fn encode_serf(msg: &SerfMessage) -> Vec<u8> {
    let mut out = vec![msg.message_type() as u8];
    let o = &mut out;
    match msg {
        SerfMessage::Join(j) => {
            write_map_len(o, 2);
            write_key(o, "LTime");
            write_uint(o, j.ltime);
            write_key(o, "Node");
            write_str(o, j.node.as_bytes());
        }
        SerfMessage::Leave(l) => {
            write_map_len(o, 3);
            write_key(o, "LTime");
            write_uint(o, l.ltime);
            write_key(o, "Node");
            write_str(o, l.node.as_bytes());
            write_key(o, "Prune");
            write_bool(o, l.prune);
        }
        SerfMessage::UserEvent(e) => {
            write_map_len(o, 4);
            write_key(o, "CC");
            write_bool(o, e.cc);
            write_key(o, "LTime");
            write_uint(o, e.ltime);
            write_key(o, "Name");
            write_str(o, e.name.as_bytes());
            write_key(o, "Payload");
            write_bytes(o, &e.payload);
        }
        SerfMessage::Query(q) => encode_query(q, o),
        SerfMessage::QueryResponse(r) => {
            write_map_len(o, 5);
            write_key(o, "Flags");
            write_uint(o, r.flags.into());
            write_key(o, "From");
            write_str(o, r.from.as_bytes());
            write_key(o, "ID");
            write_uint(o, r.id.into());
            write_key(o, "LTime");
            write_uint(o, r.ltime);
            write_key(o, "Payload");
            write_bytes(o, &r.payload);
        }
        SerfMessage::PushPull(p) => encode_push_pull(p, o),
        SerfMessage::ConflictResponse(None) => write_nil(o),
        SerfMessage::ConflictResponse(Some(m)) => encode_member(m, o),
        SerfMessage::KeyRequest(k) => {
            write_map_len(o, 1);
            write_key(o, "Key");
            write_bytes(o, &k.key);
        }
        SerfMessage::KeyResponse(k) => {
            write_map_len(o, 4);
            write_key(o, "Keys");
            if k.keys.is_empty() {
                write_nil(o);
            } else {
                write_strings(o, &k.keys);
            }
            write_key(o, "Message");
            write_str(o, k.message.as_bytes());
            write_key(o, "PrimaryKey");
            write_str(o, k.primary_key.as_bytes());
            write_key(o, "Result");
            write_bool(o, k.result);
        }
        SerfMessage::Relay(r) => {
            write_map_len(o, 2);
            write_key(o, "DestAddr");
            write_map_len(o, 3);
            write_key(o, "IP");
            write_bytes(o, &r.dest_ip);
            write_key(o, "Port");
            write_int(o, r.dest_port);
            write_key(o, "Zone");
            write_str(o, r.dest_zone.as_bytes());
            write_key(o, "DestName");
            write_str(o, r.dest_name.as_bytes());
            o.extend_from_slice(&r.message);
        }
    }
    out
}

fn write_strings(o: &mut Vec<u8>, items: &[String]) {
    write_array_len(o, items.len());
    for s in items {
        write_str(o, s.as_bytes());
    }
}

fn encode_query(q: &Query, o: &mut Vec<u8>) {
    write_map_len(o, 11);
    write_key(o, "Addr");
    write_bytes(o, &q.addr);
    write_key(o, "Filters");
    if q.filters.is_empty() {
        write_nil(o);
    } else {
        write_array_len(o, q.filters.len());
        for f in &q.filters {
            write_bytes(o, f);
        }
    }
    write_key(o, "Flags");
    write_uint(o, q.flags.into());
    write_key(o, "ID");
    write_uint(o, q.id.into());
    write_key(o, "LTime");
    write_uint(o, q.ltime);
    write_key(o, "Name");
    write_str(o, q.name.as_bytes());
    write_key(o, "Payload");
    write_bytes(o, &q.payload);
    write_key(o, "Port");
    write_uint(o, q.port.into());
    write_key(o, "RelayFactor");
    write_uint(o, q.relay_factor.into());
    write_key(o, "SourceNode");
    write_str(o, q.source_node.as_bytes());
    write_key(o, "Timeout");
    write_int(o, q.timeout_ns);
}

fn encode_push_pull(p: &PushPull, o: &mut Vec<u8>) {
    write_map_len(o, 6);
    write_key(o, "EventLTime");
    write_uint(o, p.event_ltime);
    write_key(o, "Events");
    write_array_len(o, p.events.len());
    for slot in &p.events {
        let Some(events) = slot else {
            write_nil(o);
            continue;
        };
        write_map_len(o, 2);
        write_key(o, "Events");
        write_array_len(o, events.events.len());
        for e in &events.events {
            write_map_len(o, 2);
            write_key(o, "Name");
            write_str(o, e.name.as_bytes());
            write_key(o, "Payload");
            write_bytes(o, &e.payload);
        }
        write_key(o, "LTime");
        write_uint(o, events.ltime);
    }
    write_key(o, "LTime");
    write_uint(o, p.ltime);
    write_key(o, "LeftMembers");
    write_strings(o, &p.left_members);
    write_key(o, "QueryLTime");
    write_uint(o, p.query_ltime);
    write_key(o, "StatusLTimes");
    write_map_len(o, p.status_ltimes.len());
    for (name, ltime) in &p.status_ltimes {
        write_str(o, name.as_bytes());
        write_uint(o, *ltime);
    }
}

fn encode_member(m: &Member, o: &mut Vec<u8>) {
    write_map_len(o, 11);
    write_key(o, "Addr");
    write_bytes(o, &m.addr);
    // Sorted: Delegate{Cur,Max,Min}, Name, Port, Protocol{Cur,Max,Min}.
    for (name, v) in [
        ("DelegateCur", m.vsn[5]),
        ("DelegateMax", m.vsn[4]),
        ("DelegateMin", m.vsn[3]),
    ] {
        write_key(o, name);
        write_uint(o, v.into());
    }
    write_key(o, "Name");
    write_str(o, m.name.as_bytes());
    write_key(o, "Port");
    write_uint(o, m.port.into());
    for (name, v) in [
        ("ProtocolCur", m.vsn[2]),
        ("ProtocolMax", m.vsn[1]),
        ("ProtocolMin", m.vsn[0]),
    ] {
        write_key(o, name);
        write_uint(o, v.into());
    }
    write_key(o, "Status");
    write_int(o, m.status);
    write_key(o, "Tags");
    write_string_map(o, &m.tags);
}

fn write_string_map(o: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    write_map_len(o, map.len());
    for (k, v) in map {
        write_str(o, k.as_bytes());
        write_str(o, v.as_bytes());
    }
}

// ---------------------------------------------------------------- decoding

/// Decodes a serf message (the payload of a memberlist `User` message, a
/// push/pull user state, or a query payload/response).
pub fn decode_serf(buf: &[u8]) -> Result<SerfMessage, WireError> {
    let (&first, body) = buf.split_first().ok_or(WireError::Empty)?;
    let t = SerfMessageType::from_u8(first).ok_or(WireError::UnknownMessageType(first))?;
    let (value, used) = msgpack::read_value(body)?;
    if t == SerfMessageType::ConflictResponse && value == Value::Nil {
        return Ok(SerfMessage::ConflictResponse(None));
    }
    let f = Fields::of(&value, "serf message")?;
    Ok(match t {
        SerfMessageType::Join => SerfMessage::Join(Join {
            ltime: f.u64("LTime")?,
            node: f.string("Node")?,
        }),
        SerfMessageType::Leave => SerfMessage::Leave(Leave {
            ltime: f.u64("LTime")?,
            node: f.string("Node")?,
            prune: f.bool("Prune")?,
        }),
        SerfMessageType::UserEvent => SerfMessage::UserEvent(UserEvent {
            ltime: f.u64("LTime")?,
            name: f.string("Name")?,
            payload: f.bytes("Payload")?,
            cc: f.bool("CC")?,
        }),
        SerfMessageType::Query => SerfMessage::Query(Query {
            ltime: f.u64("LTime")?,
            id: f.u32("ID")?,
            addr: f.bytes("Addr")?,
            port: f.u16("Port")?,
            source_node: f.string("SourceNode")?,
            filters: msgpack::array(f.get("Filters"), "Filters")?
                .iter()
                .map(|v| msgpack::bytes(v, "Filters").map(<[u8]>::to_vec))
                .collect::<Result<_, _>>()?,
            flags: f.u32("Flags")?,
            relay_factor: f.u8("RelayFactor")?,
            timeout_ns: f.int("Timeout")?,
            name: f.string("Name")?,
            payload: f.bytes("Payload")?,
        }),
        SerfMessageType::QueryResponse => SerfMessage::QueryResponse(QueryResponse {
            ltime: f.u64("LTime")?,
            id: f.u32("ID")?,
            from: f.string("From")?,
            flags: f.u32("Flags")?,
            payload: f.bytes("Payload")?,
        }),
        SerfMessageType::PushPull => SerfMessage::PushPull(decode_push_pull(&f)?),
        SerfMessageType::ConflictResponse => SerfMessage::ConflictResponse(Some(Member {
            name: f.string("Name")?,
            addr: f.bytes("Addr")?,
            port: f.u16("Port")?,
            tags: string_map(f.get("Tags"), "Tags")?,
            status: f.int("Status")?,
            vsn: [
                f.u8("ProtocolMin")?,
                f.u8("ProtocolMax")?,
                f.u8("ProtocolCur")?,
                f.u8("DelegateMin")?,
                f.u8("DelegateMax")?,
                f.u8("DelegateCur")?,
            ],
        })),
        SerfMessageType::KeyRequest => SerfMessage::KeyRequest(KeyRequest {
            key: f.bytes("Key")?,
        }),
        SerfMessageType::KeyResponse => SerfMessage::KeyResponse(KeyResponse {
            result: f.bool("Result")?,
            message: f.string("Message")?,
            keys: strings(f.get("Keys"), "Keys")?,
            primary_key: f.string("PrimaryKey")?,
        }),
        SerfMessageType::Relay => {
            let dest = f.get("DestAddr").unwrap_or(&Value::Nil);
            let d = Fields::of(dest, "DestAddr")?;
            SerfMessage::Relay(Relay {
                dest_ip: d.bytes("IP")?,
                dest_port: d.int("Port")?,
                dest_zone: d.string("Zone")?,
                dest_name: f.string("DestName")?,
                message: body[used..].to_vec(),
            })
        }
    })
}

fn decode_push_pull(f: &Fields<'_, '_>) -> Result<PushPull, WireError> {
    let mut status_ltimes = BTreeMap::new();
    for (k, v) in msgpack::map(f.get("StatusLTimes"), "StatusLTimes")? {
        status_ltimes.insert(
            msgpack::string(k, "StatusLTimes")?,
            msgpack::uint(v, "StatusLTimes", u64::MAX)?,
        );
    }
    let mut events = Vec::new();
    for slot in msgpack::array(f.get("Events"), "Events")? {
        if *slot == Value::Nil {
            events.push(None);
            continue;
        }
        let e = Fields::of(slot, "userEvents")?;
        let mut list = Vec::new();
        for item in msgpack::array(e.get("Events"), "Events")? {
            let i = Fields::of(item, "userEvent")?;
            list.push(BufferedEvent {
                name: i.string("Name")?,
                payload: i.bytes("Payload")?,
            });
        }
        events.push(Some(BufferedEvents {
            ltime: e.u64("LTime")?,
            events: list,
        }));
    }
    Ok(PushPull {
        ltime: f.u64("LTime")?,
        status_ltimes,
        left_members: strings(f.get("LeftMembers"), "LeftMembers")?,
        event_ltime: f.u64("EventLTime")?,
        events,
        query_ltime: f.u64("QueryLTime")?,
    })
}

fn strings(value: Option<&Value<'_>>, field: &'static str) -> Result<Vec<String>, WireError> {
    msgpack::array(value, field)?
        .iter()
        .map(|v| msgpack::string(v, field))
        .collect()
}

fn string_map(
    value: Option<&Value<'_>>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, WireError> {
    msgpack::map(value, field)?
        .iter()
        .map(|(k, v)| Ok((msgpack::string(k, field)?, msgpack::string(v, field)?)))
        .collect()
}

// ---------------------------------------------------------------- filters

/// A query filter (`filterNodeType` / `filterTagType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Only these nodes.
    Node(Vec<String>),
    /// Only nodes whose tag `tag` matches the regular expression `expr`.
    Tag { tag: String, expr: String },
}

/// `encodeFilter`: `[0][array of names]` or `[1]{Expr, Tag}`.
pub fn encode_filter(filter: &Filter) -> Vec<u8> {
    match filter {
        Filter::Node(names) => {
            let mut out = vec![0];
            write_strings(&mut out, names);
            out
        }
        Filter::Tag { tag, expr } => {
            let mut out = vec![1];
            write_map_len(&mut out, 2);
            write_key(&mut out, "Expr");
            write_str(&mut out, expr.as_bytes());
            write_key(&mut out, "Tag");
            write_str(&mut out, tag.as_bytes());
            out
        }
    }
}

pub fn decode_filter(buf: &[u8]) -> Result<Filter, WireError> {
    let (&first, body) = buf.split_first().ok_or(WireError::Empty)?;
    let (value, _) = msgpack::read_value(body)?;
    match first {
        0 => Ok(Filter::Node(strings(Some(&value), "filterNode")?)),
        1 => {
            let f = Fields::of(&value, "filterTag")?;
            Ok(Filter::Tag {
                tag: f.string("Tag")?,
                expr: f.string("Expr")?,
            })
        }
        other => Err(WireError::UnknownMessageType(other)),
    }
}

// ---------------------------------------------------------------- tags

/// `encodeTags` (serf protocol ≥ 3): the magic byte, then the tags as a
/// msgpack map; refused over memberlist's 512-byte meta limit (serf
/// panics there; a config error must surface before gossip starts).
pub fn encode_tags(tags: &BTreeMap<String, String>) -> Result<Vec<u8>, WireError> {
    let mut out = vec![TAG_MAGIC_BYTE];
    write_string_map(&mut out, tags);
    if out.len() > GOSSIP_META_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "node meta (tags)",
            len: out.len(),
            max: GOSSIP_META_BYTES_MAX,
        });
    }
    Ok(out)
}

/// `decodeTags`: meta without the magic byte is a pre-0.3 serf's bare
/// role, `{"role": meta}`.
pub fn decode_tags(meta: &[u8]) -> Result<BTreeMap<String, String>, WireError> {
    match meta.split_first() {
        Some((&TAG_MAGIC_BYTE, body)) => {
            let (value, _) = msgpack::read_value(body)?;
            string_map(Some(&value), "tags")
        }
        _ => {
            let role = String::from_utf8(meta.to_vec()).map_err(|_| WireError::Field {
                field: "role",
                reason: "string is not UTF-8",
            })?;
            Ok(BTreeMap::from([("role".to_owned(), role)]))
        }
    }
}

#[cfg(test)]
#[path = "serf_tests.rs"]
mod tests;

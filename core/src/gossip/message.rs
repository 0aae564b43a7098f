//! memberlist's messages as typed values.
//!
//! Field names and meanings follow memberlist's `net.go` (protocol 2–5);
//! the msgpack encoding that puts them on the wire lives in the codec. The
//! membership state machine consumes and produces these values only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// memberlist's `messageType`, the first byte of every packet and stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageType {
    Ping = 0,
    IndirectPing = 1,
    AckResp = 2,
    Suspect = 3,
    Alive = 4,
    Dead = 5,
    PushPull = 6,
    Compound = 7,
    User = 8,
    Compress = 9,
    Encrypt = 10,
    NackResp = 11,
    HasCrc = 12,
    Err = 13,
    /// Precedes a label (`-label` / gossip segment name) on packets and streams.
    HasLabel = 244,
}

impl MessageType {
    pub fn from_u8(b: u8) -> Option<MessageType> {
        Some(match b {
            0 => MessageType::Ping,
            1 => MessageType::IndirectPing,
            2 => MessageType::AckResp,
            3 => MessageType::Suspect,
            4 => MessageType::Alive,
            5 => MessageType::Dead,
            6 => MessageType::PushPull,
            7 => MessageType::Compound,
            8 => MessageType::User,
            9 => MessageType::Compress,
            10 => MessageType::Encrypt,
            11 => MessageType::NackResp,
            12 => MessageType::HasCrc,
            13 => MessageType::Err,
            244 => MessageType::HasLabel,
            _ => return None,
        })
    }
}

/// memberlist's `NodeStateType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    Alive = 0,
    Suspect = 1,
    Dead = 2,
    Left = 3,
}

impl NodeState {
    pub fn from_i64(v: i64) -> Option<NodeState> {
        Some(match v {
            0 => NodeState::Alive,
            1 => NodeState::Suspect,
            2 => NodeState::Dead,
            3 => NodeState::Left,
            _ => return None,
        })
    }
}

/// Protocol and delegate versions a node speaks, memberlist's `Vsn`:
/// `[pmin, pmax, pcur, dmin, dmax, dcur]`.
pub type Vsn = [u8; 6];

/// `ping`: a direct probe. `source_*` tell the target where to send the
/// ack (protocol ≥ 4), empty when unknown.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ping {
    pub seq_no: u32,
    /// The name of the node the sender believes it is probing; a receiver
    /// with another name ignores the ping.
    pub node: String,
    pub source_addr: Vec<u8>,
    pub source_port: u16,
    pub source_node: String,
}

/// `indirectPingReq`: asks a peer to probe `target` on the sender's behalf.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IndirectPing {
    pub seq_no: u32,
    pub target: Vec<u8>,
    pub port: u16,
    pub node: String,
    /// The sender wants a nack if the peer's own probe gets no ack.
    pub nack: bool,
    pub source_addr: Vec<u8>,
    pub source_port: u16,
    pub source_node: String,
}

/// `ackResp`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    pub seq_no: u32,
    pub payload: Vec<u8>,
}

/// `nackResp`: the indirect prober got no ack from the target in time.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Nack {
    pub seq_no: u32,
}

/// `errResp` (stream only).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ErrResp {
    pub error: String,
}

/// `suspect`: `from` suspects `node` at `incarnation`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Suspect {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

/// `alive`: `node` is alive at `incarnation`, reachable at `addr:port`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Alive {
    pub incarnation: u32,
    pub node: String,
    /// 4 or 16 bytes (memberlist sends `net.IP`).
    pub addr: Vec<u8>,
    pub port: u16,
    pub meta: Vec<u8>,
    pub vsn: Vsn,
}

/// `dead`: `from` declares `node` dead at `incarnation`; `from == node`
/// is a graceful leave.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dead {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

/// One member in a push/pull exchange (`pushNodeState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushNodeState {
    pub name: String,
    pub addr: Vec<u8>,
    pub port: u16,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: NodeState,
    pub vsn: Vsn,
}

/// A full state exchange over a stream (`pushPullHeader`, the nodes, then
/// the delegate's user state).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PushPull {
    /// Sent as part of a join (the delegate merges with `isJoin`).
    pub join: bool,
    pub nodes: Vec<PushNodeState>,
    /// The delegate's opaque state (serf's push/pull message).
    pub user_state: Vec<u8>,
}

/// One memberlist message, as carried in a packet (possibly inside a
/// compound) or on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack(Ack),
    Nack(Nack),
    Suspect(Suspect),
    Alive(Alive),
    Dead(Dead),
    PushPull(PushPull),
    /// A delegate message (serf's messages ride here), opaque to memberlist.
    User(Vec<u8>),
    Err(ErrResp),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Ping(_) => MessageType::Ping,
            Message::IndirectPing(_) => MessageType::IndirectPing,
            Message::Ack(_) => MessageType::AckResp,
            Message::Nack(_) => MessageType::NackResp,
            Message::Suspect(_) => MessageType::Suspect,
            Message::Alive(_) => MessageType::Alive,
            Message::Dead(_) => MessageType::Dead,
            Message::PushPull(_) => MessageType::PushPull,
            Message::User(_) => MessageType::User,
            Message::Err(_) => MessageType::Err,
        }
    }
}

/// memberlist's address bytes and port as a socket address; `None` unless
/// the bytes are an IPv4 or IPv6 address.
pub fn socket_addr(addr: &[u8], port: u16) -> Option<SocketAddr> {
    let ip = match addr.len() {
        4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            let v6 = Ipv6Addr::from(octets);
            // Go's net.IP keeps IPv4 in 16 bytes (::ffff:a.b.c.d).
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The address bytes memberlist sends for `ip` (4 bytes for IPv4).
pub fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_mapped_v4_is_v4() {
        let a: SocketAddr = "10.1.2.3:8301".parse().unwrap();
        assert_eq!(socket_addr(&addr_bytes(a.ip()), 8301), Some(a));
        let mut mapped = vec![0u8; 10];
        mapped.extend([0xff, 0xff, 10, 1, 2, 3]);
        assert_eq!(socket_addr(&mapped, 8301), Some(a));
        assert_eq!(socket_addr(&[1, 2, 3], 1), None);
        for b in 0..=255u8 {
            if let Some(t) = MessageType::from_u8(b) {
                assert_eq!(t as u8, b);
            }
        }
    }
}

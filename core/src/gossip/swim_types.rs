//! The membership state machine's public vocabulary: who we are, what we
//! know about a member, what we ask the shell to do, and what we count.

use super::config::META_BYTES_MAX;
use super::message::{addr_bytes, Message, NodeState, Ping, PushNodeState, PushPull, Vsn};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// Who we are: memberlist's local node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The advertised address other members reach us at.
    pub addr: SocketAddr,
    pub meta: Vec<u8>,
    pub vsn: Vsn,
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub meta: Vec<u8>,
    pub vsn: Vsn,
    pub incarnation: u32,
    pub state: NodeState,
    /// When `state` last changed.
    pub state_change: Instant,
}

impl Member {
    pub fn is_dead_or_left(&self) -> bool {
        matches!(self.state, NodeState::Dead | NodeState::Left)
    }

    /// memberlist's protocol max (`PMax`), which gates nacks and stream pings.
    pub fn protocol_max(&self) -> u8 {
        self.vsn[1]
    }

    pub(super) fn push_state(&self) -> PushNodeState {
        PushNodeState {
            name: self.name.clone(),
            addr: addr_bytes(self.addr.ip()),
            port: self.addr.port(),
            meta: self.meta.clone(),
            incarnation: self.incarnation,
            state: self.state,
            vsn: self.vsn,
        }
    }
}

/// memberlist's delegate events (`NotifyJoin`, `NotifyUpdate`, `NotifyLeave`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// New, or back from dead/left.
    Join(Member),
    /// Metadata changed.
    Update(Member),
    /// Declared dead (`state == Dead`) or left gracefully (`state == Left`).
    Leave(Member),
}

/// Correlates a stream the shell opened for us with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// What the state machine asks the shell to do, in the order decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send one packet to `to`: `msgs[0]` is the primary message, the rest
    /// piggybacked broadcasts. More than one message goes out as a
    /// compound. The estimated size fits `Config::packet_budget_bytes`.
    Packet { to: SocketAddr, msgs: Vec<Message> },
    /// Open a stream to `to`, send `state` (a push/pull, `state.join` set
    /// for joins; a composing layer may fill `user_state`), read the
    /// peer's push/pull and hand it to `handle_push_pull_reply`; on any
    /// error or by `deadline` (`Config::tcp_timeout` from now), call
    /// `handle_stream_failed`.
    OpenPushPull {
        id: StreamId,
        to: SocketAddr,
        state: PushPull,
        deadline: Instant,
    },
    /// memberlist's TCP fallback probe: open a stream to `to`, send `ping`,
    /// expect an ack by `deadline`; report with `handle_ping_stream_ack` or
    /// `handle_stream_failed`.
    OpenPingStream {
        id: StreamId,
        to: SocketAddr,
        ping: Ping,
        deadline: Instant,
    },
    /// A membership change for the delegate (serf, the agent).
    Event(MemberEvent),
    /// A `Message::User` arrived (serf's messages ride here).
    UserMessage(Vec<u8>),
    /// The delegate state a peer sent in a push/pull (serf's merge), with
    /// the state and incarnation of every member in the peer's table.
    RemoteUserState {
        join: bool,
        state: Vec<u8>,
        nodes: BTreeMap<String, (NodeState, u32)>,
    },
    /// A probe of `node` was acked after `rtt`, with the peer's ack
    /// payload (serf's coordinates).
    PingComplete {
        node: String,
        rtt: Duration,
        payload: Vec<u8>,
    },
    /// The push/pull of a `join` to `to` finished.
    JoinResult { to: SocketAddr, ok: bool },
    /// After `leave`: the leave message was transmitted to the cluster
    /// (`broadcast_sent`), or the leave timeout passed first.
    LeaveFinished { broadcast_sent: bool },
}

/// A stream the shell opens for memberlist: to `to`, sending `msg`, whose
/// answer must come by `deadline` (see [`Output::into_stream`]).
#[derive(Clone, Debug)]
pub struct OpenStream {
    pub id: StreamId,
    pub to: SocketAddr,
    pub msg: Message,
    pub deadline: Instant,
}

impl Output {
    /// The stream to open for [`Output::OpenPushPull`] (sending our
    /// push/pull) and [`Output::OpenPingStream`] (sending the ping), so
    /// that shells open both the same way; `None` for any other output.
    pub fn into_stream(self) -> Option<OpenStream> {
        match self {
            Output::OpenPushPull {
                id,
                to,
                state,
                deadline,
            } => Some(OpenStream {
                id,
                to,
                msg: Message::PushPull(state),
                deadline,
            }),
            Output::OpenPingStream {
                id,
                to,
                ping,
                deadline,
            } => Some(OpenStream {
                id,
                to,
                msg: Message::Ping(ping),
                deadline,
            }),
            _ => None,
        }
    }
}

/// Counters of what happened, bad input included. Bad input is ignored,
/// never fatal: these say how much of it arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_received: u64,
    pub probes_sent: u64,
    pub probes_failed: u64,
    pub indirect_probes_requested: u64,
    pub indirect_probes_forwarded: u64,
    pub indirect_probes_refused: u64,
    /// Probes saved by the stream ping after UDP failed.
    pub tcp_fallback_successes: u64,
    pub suspicions_started: u64,
    /// Members our own suspicion timers declared dead.
    pub suspicion_timeouts: u64,
    pub refutations: u64,
    /// Suspicions or deaths of ours at an older incarnation, answered by
    /// gossiping our current alive again (the accuser missed it).
    pub stale_accusations_answered: u64,
    /// Suspect/dead about members we don't know.
    pub unknown_member_messages: u64,
    /// Alive/suspect/dead at an incarnation older than (or, for alive,
    /// equal to) what we know.
    pub stale_incarnation_messages: u64,
    pub unknown_ack_seq: u64,
    pub unknown_nack_seq: u64,
    pub pings_for_other_node: u64,
    pub bad_addresses: u64,
    pub bad_protocol_versions: u64,
    /// Alive for a known name at another address (our own name included).
    pub address_conflicts: u64,
    pub push_pull_failures: u64,
    pub incompatible_push_pulls: u64,
    /// Messages that have no meaning in a packet (push/pull, err).
    pub unexpected_messages: u64,
    /// Stream answers for streams we don't have open.
    pub unknown_streams: u64,
}

/// Refusals of local requests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberlistError {
    /// Metadata over memberlist's `MetaMaxSize`.
    MetaTooLarge { len: usize },
    /// A user broadcast that can never fit a packet.
    BroadcastTooLarge { len: usize, budget: usize },
    /// The node has left; it no longer announces anything.
    Left,
}

impl fmt::Display for MemberlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberlistError::MetaTooLarge { len } => {
                write!(f, "node meta of {len} bytes exceeds {META_BYTES_MAX}")
            }
            MemberlistError::BroadcastTooLarge { len, budget } => {
                write!(
                    f,
                    "broadcast of {len} bytes exceeds the packet budget of {budget}"
                )
            }
            MemberlistError::Left => f.write_str("node has left the cluster"),
        }
    }
}

//! The serf layer's public vocabulary: its configuration, what it knows
//! about a member, what it tells the owner, and what it counts.

use super::config::Config;
use super::crypto::Keyring;
use super::error::WireError;
use super::message::Vsn;
use super::swim::{MemberlistError, Output};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// serf's hard ceiling on a user event's name plus payload
/// (`UserEventSizeLimit` in `serf.go`), before and after encoding.
pub const USER_EVENT_BYTES_MAX: usize = 9 * 1024;

/// The versions a serf 0.10 agent at its default protocol 4 announces:
/// memberlist protocol min 1, max 5, current 2 (serf's
/// `ProtocolVersionMap[4]`), then serf's own min 2, max 5, current 4.
pub const SERF_VSN: Vsn = [1, 5, 2, 2, 5, 4];

/// Names of serf's internal queries (`internal_query.go`).
pub const INTERNAL_QUERY_PREFIX: &str = "_serf_";
pub const PING_QUERY: &str = "_serf_ping";
pub const CONFLICT_QUERY: &str = "_serf_conflict";
pub const INSTALL_KEY_QUERY: &str = "_serf_install-key";
pub const USE_KEY_QUERY: &str = "_serf_use-key";
pub const REMOVE_KEY_QUERY: &str = "_serf_remove-key";
pub const LIST_KEYS_QUERY: &str = "_serf_list-keys";

/// serf's `Config`, the parts that decide behaviour. Defaults are serf's
/// `DefaultConfig` except `reconnect_timeout`, which is Consul's 72 hours.
#[derive(Clone, Debug)]
pub struct SerfConfig {
    pub memberlist: Config,
    pub tags: BTreeMap<String, String>,
    /// How long a graceful leave waits for its leave intent to be
    /// gossiped, and memberlist's leave for its dead message.
    pub broadcast_timeout: Duration,
    /// After memberlist's leave, time for the news to spread before the
    /// leave counts as done.
    pub leave_propagate_delay: Duration,
    /// How often failed and left members are checked for reaping.
    pub reap_interval: Duration,
    /// How often a failed member may be retried (`reconnect`).
    pub reconnect_interval: Duration,
    /// A failed member is forgotten after this long.
    pub reconnect_timeout: Duration,
    /// A left member is forgotten after this long.
    pub tombstone_timeout: Duration,
    /// How long an intent about a member we don't know is remembered.
    pub recent_intent_timeout: Duration,
    /// Slots of the user-event de-duplication ring (`EventBuffer`).
    pub event_buffer: usize,
    /// Slots of the query de-duplication ring (`QueryBuffer`).
    pub query_buffer: usize,
    /// Largest user event name + payload, and encoded event, we send.
    pub user_event_size_limit: usize,
    /// Largest encoded query response we send.
    pub query_response_size_limit: usize,
    /// Largest encoded query we send (`QuerySizeLimit`).
    pub query_size_limit: usize,
    /// A query's default timeout is `gossip_interval × this × ⌈log10(n +
    /// 1)⌉` for `n` live members (`QueryTimeoutMult`).
    pub query_timeout_mult: u32,
    /// The gossip keyring when encryption is on. serf's key queries
    /// (`_serf_install-key`, ...) change it; the shell encrypts with
    /// [`Serf::keyring`](super::serf_state::Serf::keyring) and learns of
    /// changes from [`SerfEvent::KeyringChanged`].
    pub keyring: Option<Keyring>,
}

impl SerfConfig {
    pub fn lan() -> SerfConfig {
        SerfConfig::with_memberlist(Config::lan())
    }

    /// The WAN pool's: memberlist's WAN timing (Consul's servers of every
    /// datacenter gossip on it).
    pub fn wan() -> SerfConfig {
        SerfConfig::with_memberlist(Config::wan())
    }

    pub fn with_memberlist(memberlist: Config) -> SerfConfig {
        SerfConfig {
            memberlist,
            tags: BTreeMap::new(),
            broadcast_timeout: Duration::from_secs(5),
            leave_propagate_delay: Duration::from_secs(1),
            reap_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            recent_intent_timeout: Duration::from_secs(5 * 60),
            event_buffer: 512,
            query_buffer: 512,
            user_event_size_limit: 512,
            query_response_size_limit: 1024,
            query_size_limit: 1024,
            query_timeout_mult: 16,
            keyring: None,
        }
    }
}

/// serf's `MemberStatus`, numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberStatus {
    None = 0,
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberStatus::None => "none",
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        })
    }
}

/// One member as serf sees it (serf's `Member`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerfMember {
    pub name: String,
    pub addr: SocketAddr,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
    /// Protocol min, max, current; delegate (serf) min, max, current.
    pub vsn: Vsn,
}

/// The state of the local serf instance (`SerfState`; shutdown is the
/// shell's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerfState {
    Alive,
    Leaving,
    Left,
}

/// A user event delivered to the owner (serf's `UserEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEventRecord {
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
    /// The sender allows coalescing it with later events of the same name.
    pub coalesce: bool,
}

/// A query for the owner to answer with [`Serf::respond_query`]
/// (serf's `Query` event). serf's internal `_serf_` queries (ping,
/// conflict, the key queries) are answered by serf itself and never
/// surface.
///
/// [`Serf::respond_query`]: super::serf_state::Serf::respond_query
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryEvent {
    pub ltime: u64,
    pub id: u32,
    pub name: String,
    pub payload: Vec<u8>,
    pub source_node: String,
    /// Answers after this are refused.
    pub deadline: Instant,
}

/// What serf tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerfEvent {
    MemberJoin(SerfMember),
    /// Left gracefully (or was force-left after failing).
    MemberLeave(SerfMember),
    MemberFailed(SerfMember),
    /// Tags (or address, versions) changed.
    MemberUpdate(SerfMember),
    /// Forgotten: failed past `reconnect_timeout`, left past
    /// `tombstone_timeout`, or pruned by a force-leave.
    MemberReap(SerfMember),
    User(UserEventRecord),
    Query(QueryEvent),
    /// A [`Serf::join`] finished: `joined` of `attempted` addresses
    /// answered a push/pull. When any did, a join intent went out.
    ///
    /// [`Serf::join`]: super::serf_state::Serf::join
    JoinFinished {
        attempted: usize,
        joined: usize,
    },
    /// A graceful leave is complete; the shell may shut down.
    LeaveFinished,
    /// `from` acknowledged a query we started with `request_ack`.
    QueryAck {
        query: QueryId,
        from: String,
    },
    /// `from` answered a query we started ([`Serf::query`]); each node's
    /// first answer only.
    ///
    /// [`Serf::query`]: super::serf_state::Serf::query
    QueryResponse {
        query: QueryId,
        from: String,
        payload: Vec<u8>,
    },
    /// A query we started reached its deadline: no more acks or answers.
    QueryFinished(QueryId),
    /// A key query changed our keyring (now `0`): the shell encrypts with
    /// it from now on and persists it.
    KeyringChanged(Keyring),
    /// A key operation we started ([`Serf::key_operation`]) has every
    /// member's answer, or reached its deadline.
    ///
    /// [`Serf::key_operation`]: super::serf_state::Serf::key_operation
    KeyOperationFinished {
        query: QueryId,
        summary: super::serf_keys::KeySummary,
    },
}

/// A query this node started: its Lamport time and random id, which
/// answers carry back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId {
    pub ltime: u64,
    pub id: u32,
}

/// serf's `QueryParam`: who should answer, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams {
    /// Only these nodes answer (empty: every node).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the expression answer.
    pub filter_tags: BTreeMap<String, String>,
    /// Ask every node that passes the filters for an ack.
    pub request_ack: bool,
    /// Each answer is also relayed through this many other members.
    pub relay_factor: u8,
    /// `None`: serf's default (see `SerfConfig::query_timeout_mult`).
    pub timeout: Option<Duration>,
}

/// What the serf state machine asks of its shell, in the order decided.
///
/// `Memberlist` carries memberlist's transport work unchanged, to be
/// driven exactly as [`Memberlist`](super::swim::Memberlist)'s docs say but
/// answered through `Serf`'s `handle_*` methods: `Packet`, `OpenPushPull`
/// (its `state.user_state` already holds serf's push/pull), `OpenPingStream`,
/// and `PingComplete` (serf's coordinates would use it; tribune's serf
/// passes it on). memberlist's `Event`, `UserMessage`, `RemoteUserState`,
/// `JoinResult` and `LeaveFinished` are consumed by serf and never appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerfOutput {
    Memberlist(Output),
    Event(SerfEvent),
}

/// Counters; bad input is counted and dropped, never fatal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerfStats {
    /// serf messages (memberlist user messages) received.
    pub messages_received: u64,
    /// Empty, undecodable, or malformed serf messages.
    pub malformed_messages: u64,
    /// A type byte serf does not define.
    pub unknown_message_types: u64,
    /// Types that have no meaning as a broadcast (push/pull, key and
    /// conflict bodies).
    pub unexpected_messages: u64,
    /// Join/leave intents at or below the member's status time.
    pub stale_intents: u64,
    /// Leave intents about ourselves that we refuted with a join intent.
    pub refuted_leave_intents: u64,
    /// Status times of ours newer than our own, heard from peers, answered
    /// with a fresh join intent.
    pub refuted_status_times: u64,
    /// Leaves learnt from a peer's push/pull about a member that has come
    /// back since (memberlist has it alive at a later incarnation than the
    /// peer's dead or left record), not applied.
    pub leaves_of_an_earlier_life: u64,
    /// memberlist leave notices for a member in a state that can't leave.
    pub unexpected_leaves: u64,
    pub user_events_delivered: u64,
    pub duplicate_user_events: u64,
    /// User events older than the ring or the join's ignore point.
    pub old_user_events: u64,
    pub queries_received: u64,
    pub duplicate_queries: u64,
    pub old_queries: u64,
    /// Queries whose filters exclude us (or that we could not evaluate).
    pub queries_filtered: u64,
    /// Tag filters using regular-expression syntax beyond literals and
    /// `^`/`$` anchors: counted and treated as not matching.
    pub unsupported_filters: u64,
    /// Responses to queries we did not send, or that have finished.
    pub unknown_query_responses: u64,
    /// A second ack or answer from the same node to one of our queries.
    pub duplicate_query_responses: u64,
    /// `_serf_` queries serf does not know (dropped, as serf does).
    pub unknown_internal_queries: u64,
    /// Key-query answers that would not fit the response limit even
    /// without keys (never sent).
    pub oversized_key_responses: u64,
    pub relays_forwarded: u64,
    /// Addresses in queries or relays that are not IP addresses.
    pub bad_addresses: u64,
    /// Node meta that does not decode as tags (the member gets no tags).
    pub bad_tags: u64,
    /// Push/pull user state that is not a serf push/pull.
    pub bad_remote_states: u64,
    /// Re-broadcasts memberlist refused.
    pub rebroadcasts_refused: u64,
    pub reconnect_attempts: u64,
}

/// Refusals of local requests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerfError {
    /// A user event over the configured or the absolute limit.
    UserEventTooLarge {
        len: usize,
        limit: usize,
    },
    /// Tags whose encoding exceeds memberlist's meta limit.
    Tags(WireError),
    Memberlist(MemberlistError),
    /// Join, user events and tag changes need an alive node.
    NotAlive,
    LeaveInProgress,
    /// No query with that time and id is waiting for an answer (unknown,
    /// already answered, or past its deadline).
    UnknownQuery {
        ltime: u64,
        id: u32,
    },
    QueryResponseTooLarge {
        len: usize,
        limit: usize,
    },
    /// A query over `SerfConfig::query_size_limit` once encoded.
    QueryTooLarge {
        len: usize,
        limit: usize,
    },
    /// A configuration value serf refuses.
    Config(&'static str),
}

impl fmt::Display for SerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerfError::UserEventTooLarge { len, limit } => {
                write!(f, "user event of {len} bytes exceeds the limit of {limit}")
            }
            SerfError::Tags(e) => write!(f, "tags: {e}"),
            SerfError::Memberlist(e) => write!(f, "memberlist: {e}"),
            SerfError::NotAlive => f.write_str("serf has left or is leaving"),
            SerfError::LeaveInProgress => f.write_str("leave already in progress"),
            SerfError::UnknownQuery { ltime, id } => {
                write!(f, "no open query at time {ltime} with id {id}")
            }
            SerfError::QueryResponseTooLarge { len, limit } => {
                write!(
                    f,
                    "query response of {len} bytes exceeds the limit of {limit}"
                )
            }
            SerfError::QueryTooLarge { len, limit } => {
                write!(f, "query of {len} bytes exceeds limit of {limit} bytes")
            }
            SerfError::Config(what) => write!(f, "serf config: {what}"),
        }
    }
}

impl From<MemberlistError> for SerfError {
    fn from(e: MemberlistError) -> Self {
        SerfError::Memberlist(e)
    }
}

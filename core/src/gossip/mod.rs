//! Gossip membership (SWIM + Lifeguard), wire-compatible with HashiCorp
//! memberlist and serf. Sans-I/O like the rest of core: the shell feeds
//! packets, streams and `now`; the state machines decide.
//!
//! - [`message`]: memberlist's messages as typed values, field for field.
//!   The state machine speaks these; the codec maps them to bytes.
//! - [`swim`]: the membership state machine ([`swim::Memberlist`]): probes,
//!   suspicion, incarnations, gossip, push/pull, join and leave.
//! - [`config`]: memberlist's LAN/WAN/local presets and scaling formulas.
//! - [`broadcast`]: the transmit-limited queue piggybacked on packets.
//! - [`awareness`], [`suspicion`]: Lifeguard's health score and
//!   confirmation-shortened suspicion timers.
//! - [`sim`]: a virtual network of [`Memberlist`]s in virtual time (tests,
//!   the gossip benchmark, and later the simulator).
//! - [`codec`]: packets (label → decryption → CRC → compression →
//!   compound → message) in both directions, and the [`codec::Packer`]
//!   that fills a packet with piggybacked broadcasts.
//! - [`stream`]: push/pull, reliable user messages, TCP ping and error
//!   replies, with [`stream::stream_need`] for incremental reading.
//! - [`serf`]: serf's messages (inside memberlist user messages and
//!   push/pull state) and its tags (inside node meta).
//! - [`serf_state`]: the serf layer ([`serf_state::Serf`]) over the
//!   membership machine: member statuses, join/leave intents, Lamport
//!   clocks ([`lamport`]), user events, queries, reaping; queries this
//!   node starts (`serf_query`) and serf's keyring management over them
//!   (`serf_keys`: install, use, remove and list keys across the pool).
//! - [`crypto`], [`lzw`], [`msgpack`]: the building blocks, each matching
//!   its Go counterpart byte for byte.
//! - [`error`]: the one error type, [`WireError`].

pub mod awareness;
pub mod broadcast;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod error;
pub mod lamport;
pub mod lzw;
pub mod message;
pub mod msgpack;
pub mod serf;
mod serf_events;
mod serf_keys;
mod serf_members;
mod serf_query;
pub mod serf_state;
mod serf_types;
pub mod sim;
pub mod stream;
pub mod suspicion;
pub mod swim;
mod swim_probe;
mod swim_state;
mod swim_types;

pub use config::Config;
pub use error::WireError;
pub use serf_state::{
    KeyOperation, KeySummary, MemberStatus, QueryEvent, QueryId, QueryParams, Serf, SerfConfig,
    SerfError, SerfEvent, SerfMember, SerfOutput, SerfState, SerfStats, UserEventRecord,
};
pub use swim::{
    LocalNode, Member, MemberEvent, Memberlist, MemberlistError, OpenStream, Output, Stats,
    StreamId,
};

#[cfg(test)]
mod round_model;
#[cfg(test)]
mod serf_query_tests;
#[cfg(test)]
mod serf_sim;
#[cfg(test)]
mod serf_sim_tests;
#[cfg(test)]
mod serf_state_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod swim_tests;

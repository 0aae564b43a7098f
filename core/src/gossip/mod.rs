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
//! - [`size`]: conservative encoded sizes for packing packets.

pub mod awareness;
pub mod broadcast;
pub mod config;
pub mod message;
pub mod size;
pub mod suspicion;
pub mod swim;
mod swim_probe;
mod swim_state;
mod swim_types;

pub use config::Config;
pub use swim::{
    LocalNode, Member, MemberEvent, Memberlist, MemberlistError, Output, Stats, StreamId,
};

#[cfg(test)]
mod round_model;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod swim_tests;

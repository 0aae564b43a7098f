//! Gossip membership (SWIM + Lifeguard), wire-compatible with HashiCorp
//! memberlist and serf. Sans-I/O like the rest of core: the shell feeds
//! packets, streams and `now`; the state machines decide.
//!
//! - [`message`]: memberlist's messages as typed values, field for field.
//!   The state machine speaks these; the codec maps them to bytes.
//! - [`codec`]: packets (label → decryption → CRC → compression →
//!   compound → message) in both directions, and the [`codec::Packer`]
//!   that fills a packet with piggybacked broadcasts.
//! - [`stream`]: push/pull, reliable user messages, TCP ping and error
//!   replies, with [`stream::stream_need`] for incremental reading.
//! - [`serf`]: serf's messages (inside memberlist user messages and
//!   push/pull state) and its tags (inside node meta).
//! - [`crypto`], [`lzw`], [`msgpack`]: the building blocks, each matching
//!   its Go counterpart byte for byte.
//! - [`error`]: the one error type, [`WireError`].

pub mod codec;
pub mod crypto;
pub mod error;
pub mod lzw;
pub mod message;
pub mod msgpack;
pub mod serf;
pub mod stream;

pub use error::WireError;

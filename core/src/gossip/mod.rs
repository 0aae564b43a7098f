//! Gossip membership (SWIM + Lifeguard), wire-compatible with HashiCorp
//! memberlist and serf. Sans-I/O like the rest of core: the shell feeds
//! packets, streams and `now`; the state machines decide.
//!
//! - [`message`]: memberlist's messages as typed values, field for field.
//!   The state machine speaks these; the codec maps them to bytes.

pub mod codec;
pub mod crypto;
pub mod error;
pub mod lzw;
pub mod message;
pub mod msgpack;
pub mod serf;
pub mod stream;

pub use error::WireError;

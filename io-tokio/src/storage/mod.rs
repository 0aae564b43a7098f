//! Durable storage under `-data-dir`.
//!
//! So far only the Raft write-ahead log ([`wal`]); the agent does not use it
//! yet (the openraft log-storage adapter of issue 3 will). What the bytes
//! mean, and what recovery does with them, is decided in
//! `tribune_core::wal`; this module only reads, writes and syncs files.

pub mod wal;
mod wal_writer;

pub use wal::{CutTail, Entry, Pending, Wal, WalConfig, WalError, WalStats, WalStatsHandle};

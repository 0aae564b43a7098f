//! tribune's deterministic, sans-I/O core.
//!
//! Everything that decides lives here; the shells (io-tokio, io-sim) only
//! move bytes and time. Nothing in this crate reads a clock, draws OS
//! randomness, spawns a thread or does I/O (`core/clippy.toml` enforces it).
//!
//! Data flow of a write:
//!
//! ```text
//! HTTP body --api::body--> Command --Leader::prepare--> (replicate) --Fsm::apply--> CommandResult
//!                                                                        |
//!                                      Effects: touched watch keys, lock-delays, session timers
//!                                        |                       |
//!                                Watches::fire -> waiters    Leader::on_applied
//! ```
//!
//! State machines with timers follow one driving contract: call
//! `handle_timeout(now)` when `poll_timeout()` is due, and after every
//! mutation drain `poll()` until it returns `None`.

pub mod agent;
pub mod anti_entropy;
pub mod api;
pub mod catalog;
pub mod checks;
pub mod checksum;
pub mod command;
pub mod coord;
pub mod dns;
pub mod event;
pub mod event_wire;
pub mod formation;
pub mod fsm;
pub mod fuzzing;
pub mod gossip;
pub mod hcl;
pub mod ids;
pub mod kv;
pub mod kv_key;
pub mod limits;
pub mod reconcile;
pub mod restore;
pub mod rng;
pub mod route;
pub mod rpc_frame;
pub mod server;
pub mod session;
pub mod snapshot_archive;
pub mod time;
pub mod tombstone_gc;
pub mod txn;
pub mod wal;
pub mod watch;

pub use command::{Command, CommandResult};
pub use fsm::{Effects, Fsm};

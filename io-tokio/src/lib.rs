//! tribune's tokio shell: the agent daemon, its HTTP API and the CLI.
//!
//! The shell moves bytes and time; every decision is made in
//! `tribune_core`. See `book/src/architecture.md`.

pub mod agent;
pub mod anti_entropy;
pub mod checks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod coord;
pub mod disk_space;
pub mod dns;
pub mod events;
pub mod gossip;
pub mod http;
pub mod keyring;
pub mod log;
pub mod raft;
pub mod read_index;
pub mod reconcile;
pub mod state;
pub mod storage;
pub mod upstream;

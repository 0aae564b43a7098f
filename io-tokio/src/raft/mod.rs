//! Raft for tribune servers: openraft behind thin adapters.
//!
//! ```text
//!  client_write(Command) ──> openraft ──> LogStore<LogBackend>   (MemLog now, the WAL later)
//!                              │  ▲
//!              Network/Peer ───┘  └── RpcServer (TCP, core::rpc_frame frames, postcard bodies)
//!                              │
//!                              └──> StateMachine ──Fsm::apply──> CommandResult, ApplyHook(Effects)
//! ```
//!
//! - [`types`]: the type config (`D = Command`, `R = CommandResult`,
//!   `NodeId = u64`, `Node = ServerNode { rpc_addr }`).
//! - [`state_machine`]: `RaftStateMachine` over core's `Fsm`, checksummed
//!   snapshots validated before install. Generic over the type config.
//! - [`log_store`]: `RaftLogStorage` over a small `LogBackend` trait, with
//!   an in-memory backend. Generic over the type config.
//! - [`rpc`], [`rpc_server`], [`network`]: server RPC (pooled TCP calls with
//!   deadlines), the listener that feeds the local Raft, and openraft's
//!   network over it, plus [`network::forward`] for client writes.
//!
//! Not wired into the agent yet: `state::Node` still applies writes from
//! its single-server in-memory path.

pub mod log_store;
pub mod network;
pub mod recovery;
pub mod rpc;
pub mod rpc_server;
pub mod state_machine;
pub mod types;
pub mod wal_log;

pub use log_store::{LogBackend, LogStore, MemLog};
pub use network::{forward, Network};
pub use rpc::{ForwardError, ForwardReply, RpcClient, RpcError};
pub use rpc_server::{RaftWriter, RpcServer, WriteHandler};
pub use state_machine::{MemStore, SnapshotDir, SnapshotFile, StateMachine, Store};
pub use types::{Raft, ServerNode, TypeConfig};

//! Raft for tribune servers: openraft behind thin adapters.
//!
//! ```text
//!  client_write(Command) ──> openraft ──> LogStore<LogBackend>   (WalLog on disk, MemLog in tests)
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
//!   an in-memory backend; [`wal_log`]: the durable backend on the WAL.
//! - [`rpc`], [`rpc_server`], [`network`]: server RPC (pooled TCP calls with
//!   deadlines), the listener that feeds the local Raft, and openraft's
//!   network over it, plus [`network::forward`] for client writes.
//! - [`stopped_by_fault`]: whether openraft's core stopped on a fault (the
//!   agent then exits; the simulator's supervisor restarts the node).

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

/// Why the Raft core behind `metrics` stopped, when it stopped on a fault:
/// a storage error (a failed write or fsync, a log record that fails its
/// checksum on read) or a panic. `None` while it runs, and after a
/// requested shutdown. openraft never restarts a stopped core, and the WAL
/// refuses every request after a failed write until it is reopened, so the
/// only way back is a restart, which reopens the log from what the files
/// hold (and refuses to start if they are damaged).
pub fn stopped_by_fault<C: openraft::RaftTypeConfig>(
    metrics: &openraft::RaftMetrics<C>,
) -> Option<String> {
    match &metrics.running_state {
        Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
        Err(fault) => Some(fault.to_string()),
    }
}

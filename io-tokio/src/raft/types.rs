//! tribune's openraft type configuration.
//!
//! Log entries carry core's [`Command`]; applying one answers a
//! [`CommandResult`]. Node IDs are `u64`; a node is known by the address of
//! its server RPC listener. Entries, votes and snapshots cross the wire as
//! postcard (serde), see `rpc.rs`.

use openraft::vote::RaftCommittedLeaderId;
use openraft::{Entry, EntryPayload};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use tribune_core::command::{Command, CommandResult};

/// A server as Raft knows it: its node name and where its server RPC
/// listens (port 8300 by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    pub name: String,
    pub rpc_addr: SocketAddr,
}

impl ServerNode {
    pub fn new(name: impl Into<String>, rpc_addr: SocketAddr) -> ServerNode {
        ServerNode {
            name: name.into(),
            rpc_addr,
        }
    }
}

/// openraft's storage test suite builds nodes with `Default`; a real node
/// always has its address.
impl Default for ServerNode {
    fn default() -> ServerNode {
        ServerNode::new("", SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }
}

openraft::declare_raft_types!(
    /// The openraft types of a tribune server running on tokio. A simulator
    /// declares its own config with the same `D`, `R`, `Node` and its own
    /// `AsyncRuntime`; the storage and state-machine adapters are generic.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = ServerNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a tribune server.
pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachine<TypeConfig>>;

/// The command in a log entry, if it has one. openraft's generic
/// `RaftEntry` does not expose the payload, so the adapters ask through this.
pub trait CommandEntry {
    fn command(&self) -> Option<&Command>;
}

impl<CLID, NID, N> CommandEntry for Entry<CLID, EntryPayload<Command, NID, N>>
where
    CLID: RaftCommittedLeaderId,
    NID: openraft::NodeId,
    N: openraft::Node,
{
    fn command(&self) -> Option<&Command> {
        match &self.payload {
            EntryPayload::Normal(command) => Some(command),
            EntryPayload::Blank | EntryPayload::Membership(_) => None,
        }
    }
}

//! The simulator's openraft type configuration: the daemon's `D`, `R`,
//! `NodeId` and `Node` (io-tokio's `raft::types`), on [`MadsimRuntime`].

use crate::MadsimRuntime;
use tribune::raft::ServerNode;
use tribune_core::command::{Command, CommandResult};

openraft::declare_raft_types!(
    /// tribune's Raft types on madsim.
    pub SimConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = ServerNode,
        AsyncRuntime = MadsimRuntime,
);

pub type C = SimConfig;
pub type LogId = openraft::type_config::alias::LogIdOf<C>;
pub type Vote = openraft::type_config::alias::VoteOf<C>;
pub type Entry = <C as openraft::RaftTypeConfig>::Entry;
pub type Raft = openraft::Raft<C, tribune::raft::StateMachine<C>>;

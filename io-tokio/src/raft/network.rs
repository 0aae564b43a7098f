//! openraft's network over server RPC: one [`Peer`] per target server,
//! all sharing one [`RpcClient`] (and its connection pools).
//!
//! Every call has a deadline: openraft's soft TTL for the call (3/4 of its
//! hard TTL, so our error arrives before openraft gives up on its own), or
//! [`RPC_CALL_TIMEOUT`] for a forwarded write. Any failure (timeout, refused
//! connection, an error from the peer) is reported as `Unreachable`, which
//! makes openraft back off before retrying that peer.

use super::rpc::{Addressed, ForwardError, ForwardReply, RpcClient, RpcError, SnapshotChunk};
use super::types::{ServerNode, TypeConfig};
use bytes::Bytes;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::RaftNetworkV2;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tribune_core::command::Command;
use tribune_core::limits::{RPC_CALL_TIMEOUT, RPC_SNAPSHOT_CHUNK_BYTES};
use tribune_core::rpc_frame::FrameKind;

type C = TypeConfig;

/// Creates a [`Peer`] for each server openraft talks to.
#[derive(Clone, Debug, Default)]
pub struct Network {
    client: Arc<RpcClient>,
}

impl Network {
    pub fn new(client: Arc<RpcClient>) -> Network {
        Network { client }
    }

    pub fn client(&self) -> &Arc<RpcClient> {
        &self.client
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &ServerNode) -> Peer {
        Peer {
            target,
            addr: node.rpc_addr,
            client: Arc::clone(&self.client),
        }
    }
}

/// The network to one server.
pub struct Peer {
    target: u64,
    addr: SocketAddr,
    client: Arc<RpcClient>,
}

fn unreachable(target: u64, e: RpcError) -> Unreachable<C> {
    Unreachable::from_string(format!("server {target}: {e}"))
}

impl Peer {
    /// Sends a Raft message addressed to the target's ID (see
    /// [`Addressed`]).
    async fn request<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: FrameKind,
        rpc: Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<C>> {
        let request = Addressed {
            to: self.target,
            rpc,
        };
        self.client
            .request(self.addr, kind, &request, option.soft_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(self.target, e)))
    }

    /// Sends `snapshot` chunk by chunk on one connection, each acknowledged
    /// before the next; stops early when `cancel` fires.
    async fn send_snapshot(
        &self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Bytes>,
        cancel: impl Future<Output = ReplicationClosed>,
        deadline: Duration,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let fail = |e| StreamingError::Unreachable(unreachable(self.target, e));
        let mut conn = self
            .client
            .checkout(self.addr, deadline)
            .await
            .map_err(fail)?;
        let bytes = snapshot.snapshot;
        let total_len = bytes.len() as u64;
        let mut offset = 0usize;
        tokio::pin!(cancel);
        loop {
            let end = (offset + RPC_SNAPSHOT_CHUNK_BYTES).min(bytes.len());
            let chunk = SnapshotChunk::<C> {
                vote,
                meta: snapshot.meta.clone(),
                offset: offset as u64,
                total_len,
                data: bytes[offset..end].to_vec(),
            };
            let body = super::rpc::encode_body(&Addressed {
                to: self.target,
                rpc: chunk,
            });
            let call = self
                .client
                .call_on(&mut conn, FrameKind::SnapshotChunk, &body, deadline);
            let reply = tokio::select! {
                biased;
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = call => reply.map_err(fail)?,
            };
            let answer: super::rpc::Reply<Option<SnapshotResponse<C>>> =
                super::rpc::decode_body(&reply).map_err(fail)?;
            match answer.map_err(|e| fail(RpcError::Remote(e)))? {
                Some(response) => {
                    self.client.checkin(conn);
                    return Ok(response);
                }
                None if end < bytes.len() => offset = end,
                None => return Err(fail(RpcError::Body("snapshot not installed".into()))),
            }
        }
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.request(FrameKind::AppendEntries, rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.request(FrameKind::Vote, rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.request(FrameKind::PreVote, rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        self.send_snapshot(vote, snapshot, cancel, option.soft_ttl())
            .await
    }
}

/// Why a forwarded write got no answer from the leader.
#[derive(Debug)]
#[non_exhaustive]
pub enum ForwardCallError {
    /// The call itself failed: the write may or may not have been applied.
    Rpc(RpcError),
    /// The receiver answered: not the leader, or Raft refused the write.
    Refused(ForwardError),
}

impl std::fmt::Display for ForwardCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardCallError::Rpc(e) => e.fmt(f),
            ForwardCallError::Refused(e) => e.fmt(f),
        }
    }
}

/// Forwards a client write to the server at `leader` (a follower's path
/// to the leader), within [`RPC_CALL_TIMEOUT`].
pub async fn forward(
    client: &RpcClient,
    leader: SocketAddr,
    command: &Command,
) -> Result<ForwardReply, ForwardCallError> {
    let reply = client
        .call(
            leader,
            FrameKind::Forward,
            &command.encode(),
            Duration::from_nanos(RPC_CALL_TIMEOUT.as_nanos()),
        )
        .await
        .map_err(ForwardCallError::Rpc)?;
    let answer: Result<ForwardReply, ForwardError> =
        super::rpc::decode_body(&reply).map_err(ForwardCallError::Rpc)?;
    answer.map_err(ForwardCallError::Refused)
}

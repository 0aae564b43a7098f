//! The server RPC listener: accepts connections and answers each request
//! frame from the local Raft node.
//!
//! | request kind    | body                         | reply body                                   |
//! |-----------------|------------------------------|----------------------------------------------|
//! | `AppendEntries` | `Addressed<AppendEntriesRequest>` | `Reply<AppendEntriesResponse>`          |
//! | `Vote`/`PreVote`| `Addressed<VoteRequest>`     | `Reply<VoteResponse>`                        |
//! | `SnapshotChunk` | `Addressed<`[`SnapshotChunk`]`>` | `Reply<Option<SnapshotResponse>>` (Some at the end) |
//! | `Forward`       | `Command::encode()`          | `Result<ForwardReply, ForwardError>`         |
//!
//! A frame the server cannot read (bad header, oversize) closes the
//! connection: the stream is no longer in sync. A body that does not decode
//! gets an `Error` frame and the connection stays open, and so does a Raft
//! message addressed to another server's ID ([`Addressed`]).
//!
//! A streamed snapshot is assembled per connection, up to
//! [`RAFT_SNAPSHOT_BYTES_MAX`], and validated in full
//! ([`validate_snapshot`]) before it is handed to Raft: openraft treats a
//! failed install as a storage failure and stops the node, so bad bytes
//! must be refused here.

use super::rpc::{
    decode_body, encode_body, read_frame, write_frame, Addressed, ForwardError, ForwardReply,
    Reply, RpcError, ServerReply, ServerRequest, SnapshotChunk,
};
use super::state_machine::validate_snapshot;
use super::types::{Raft, TypeConfig};
use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::SnapshotResponse;
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tribune_core::command::Command;
use tribune_core::limits::{
    RAFT_SNAPSHOT_BYTES_MAX, RPC_SERVER_CONNS_MAX, RPC_SERVER_IDLE_TIMEOUT,
};
use tribune_core::rpc_frame::FrameKind;

/// A boxed future, as the handler's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries out what other servers ask beyond Raft's own messages. The
/// agent's handler runs the leader's `prepare` (lock-delay, session IDs)
/// before proposing; [`RaftWriter`] proposes as is and answers nothing
/// else.
pub trait WriteHandler: Send + Sync + 'static {
    /// A write forwarded to this server.
    fn write(&self, command: Command) -> BoxFuture<'_, Result<ForwardReply, ForwardError>>;

    /// A [`ServerRequest`].
    fn request(&self, request: ServerRequest) -> BoxFuture<'_, Result<ServerReply, ForwardError>> {
        let _ = request;
        Box::pin(async { Err(ForwardError::Failed("request not served here".into())) })
    }

    /// A leader's AppendEntries was accepted (last contact with a leader).
    fn leader_contact(&self) {}
}

/// Proposes forwarded commands straight to Raft.
pub struct RaftWriter(pub Raft);

impl WriteHandler for RaftWriter {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<ForwardReply, ForwardError>> {
        Box::pin(client_write(&self.0, command))
    }
}

/// `client_write` with its errors turned into [`ForwardError`].
pub async fn client_write(raft: &Raft, command: Command) -> Result<ForwardReply, ForwardError> {
    client_result(raft.client_write(command).await)
}

/// The answer to a Raft write (a command or a membership change), with
/// its errors turned into [`ForwardError`].
pub fn client_result(
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    >,
) -> Result<ForwardReply, ForwardError> {
    match result {
        Ok(response) => Ok(ForwardReply {
            index: response.log_id.index,
            result: response.data,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
            Err(ForwardError::NotLeader {
                leader_id: to.leader_id,
                leader_addr: to.leader_node.map(|node| node.rpc_addr),
            })
        }
        Err(e) => Err(ForwardError::Failed(e.to_string())),
    }
}

/// A running listener; dropping it does not stop it, [`RpcServer::shutdown`] does.
pub struct RpcServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RpcServer {
    /// Serves `listener` until shut down.
    pub fn start(listener: TcpListener, raft: Raft, writer: Arc<dyn WriteHandler>) -> RpcServer {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let task = tokio::spawn(accept_loop(listener, raft, writer));
        RpcServer { local_addr, task }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves one connection accepted elsewhere (the LAN port, shared with
    /// gossip, hands over connections that begin with the RPC magic).
    pub fn serve_stream(stream: TcpStream, raft: Raft, writer: Arc<dyn WriteHandler>) {
        tokio::spawn(serve_connection(stream, raft, writer));
    }

    /// Stops accepting and closes every connection (their tasks live in the
    /// accept loop's `JoinSet`, which aborts them when dropped).
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, raft: Raft, writer: Arc<dyn WriteHandler>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= RPC_SERVER_CONNS_MAX => {
                    crate::log::warn(&format!(
                        "raft rpc: {RPC_SERVER_CONNS_MAX} connections open, closing {peer}"
                    ));
                    drop(stream);
                }
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, raft.clone(), Arc::clone(&writer)));
                }
                Err(e) => {
                    crate::log::warn(&format!("raft rpc: accept failed: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A snapshot being received on one connection.
struct Assembly {
    vote: VoteOf<TypeConfig>,
    meta: SnapshotMetaOf<TypeConfig>,
    total_len: u64,
    data: Vec<u8>,
}

async fn serve_connection(mut stream: TcpStream, raft: Raft, writer: Arc<dyn WriteHandler>) {
    let mut assembly: Option<Assembly> = None;
    let idle = std::time::Duration::from_nanos(RPC_SERVER_IDLE_TIMEOUT.as_nanos());
    loop {
        let (header, body) = match tokio::time::timeout(idle, read_frame(&mut stream)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                crate::log::debug(&format!("raft rpc: closing connection: {e}"));
                return;
            }
            Err(_) => {
                crate::log::debug(&format!("raft rpc: closing a connection idle for {idle:?}"));
                return;
            }
        };
        let (kind, reply) = match dispatch(&raft, &*writer, header.kind, &body, &mut assembly).await
        {
            Ok(reply) => (FrameKind::Reply, reply),
            Err(e) => (FrameKind::Error, e.to_string().into_bytes()),
        };
        if let Err(e) = write_frame(&mut stream, kind, header.request_id, &reply).await {
            crate::log::debug(&format!("raft rpc: reply not sent: {e}"));
            return;
        }
    }
}

/// Answers one request; `Err` becomes an `Error` frame.
async fn dispatch(
    raft: &Raft,
    writer: &dyn WriteHandler,
    kind: FrameKind,
    body: &[u8],
    assembly: &mut Option<Assembly>,
) -> Result<Vec<u8>, RpcError> {
    fn reply<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Vec<u8> {
        encode_body::<Reply<T>>(&result.map_err(|e| e.to_string()))
    }
    // Raft messages are answered only when they are meant for this server.
    let me = {
        use openraft::async_runtime::WatchReceiver;
        let metrics = raft.metrics();
        let id = metrics.borrow_watched().id;
        id
    };
    Ok(match kind {
        FrameKind::AppendEntries => {
            let answer = raft.append_entries(Addressed::open(me, body)?).await;
            if matches!(&answer, Ok(response) if !matches!(response, openraft::raft::AppendEntriesResponse::HigherVote(_)))
            {
                writer.leader_contact();
            }
            reply(answer)
        }
        FrameKind::Vote => reply(raft.vote(Addressed::open(me, body)?).await),
        FrameKind::PreVote => reply(raft.pre_vote(Addressed::open(me, body)?).await),
        FrameKind::SnapshotChunk => {
            let chunk = Addressed::open(me, body)?;
            encode_body(&receive_chunk(raft, chunk, assembly).await)
        }
        FrameKind::Forward => {
            let command = Command::decode(body).map_err(|e| RpcError::Body(e.to_string()))?;
            encode_body(&writer.write(command).await)
        }
        FrameKind::Request => {
            let request: ServerRequest = decode_body(body)?;
            encode_body(&writer.request(request).await)
        }
        FrameKind::Reply | FrameKind::Error => {
            return Err(RpcError::Body(format!("{kind:?} is not a request")))
        }
    })
}

/// Adds a chunk; installs the snapshot when it is complete.
async fn receive_chunk(
    raft: &Raft,
    chunk: SnapshotChunk<TypeConfig>,
    assembly: &mut Option<Assembly>,
) -> Reply<Option<SnapshotResponse<TypeConfig>>> {
    if chunk.offset == 0 {
        if chunk.total_len > RAFT_SNAPSHOT_BYTES_MAX as u64 {
            return Err(format!(
                "snapshot of {} bytes is over the limit",
                chunk.total_len
            ));
        }
        *assembly = Some(Assembly {
            vote: chunk.vote,
            meta: chunk.meta.clone(),
            total_len: chunk.total_len,
            // Grows with the chunks actually received, not the claim.
            data: Vec::new(),
        });
    }
    let Some(current) = assembly.as_mut() else {
        return Err("snapshot chunk without a first chunk".into());
    };
    let in_order = current.vote == chunk.vote
        && current.meta == chunk.meta
        && current.total_len == chunk.total_len
        && current.data.len() as u64 == chunk.offset
        && chunk.offset + chunk.data.len() as u64 <= chunk.total_len;
    if !in_order {
        *assembly = None;
        return Err("snapshot chunk out of order".into());
    }
    current.data.extend_from_slice(&chunk.data);
    if (current.data.len() as u64) < current.total_len {
        return Ok(None);
    }
    let Assembly {
        vote, meta, data, ..
    } = assembly.take().expect("checked above");
    if let Err(e) = validate_snapshot::<TypeConfig>(&meta, &data) {
        return Err(format!("snapshot refused: {e}"));
    }
    let snapshot = SnapshotOf::<TypeConfig, Bytes> {
        meta,
        snapshot: Bytes::from(data),
    };
    let last = snapshot.meta.last_log_id.as_ref().map_or(0, |id| id.index);
    let len = snapshot.snapshot.len();
    let installed = raft
        .install_full_snapshot(vote, snapshot)
        .await
        .map(Some)
        .map_err(|e| e.to_string());
    if installed.is_ok() {
        crate::log::info(&format!(
            "raft: installed a snapshot from the leader through index {last} ({len} bytes)"
        ));
    }
    installed
}

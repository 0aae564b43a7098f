//! Server RPC over TCP: frames (core's `rpc_frame`), postcard bodies, and a
//! client with a connection pool per peer and a deadline on every call.
//!
//! One connection carries one call at a time: the client writes a request
//! frame and reads the reply frame with the same request id. A connection
//! that failed in any way (timeout, bad frame, wrong id) is dropped, never
//! reused, so a late reply can't be taken for the answer to the next call
//! (the failure openraft's turmoil suite found with deadline-less RPCs).
//! Idle connections go back to their peer's pool, up to
//! [`RPC_IDLE_CONNS_PER_PEER_MAX`].

use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use openraft::RaftTypeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tribune_core::command::CommandResult;
use tribune_core::limits::RPC_IDLE_CONNS_PER_PEER_MAX;
use tribune_core::route::Miss;
use tribune_core::rpc_frame::{self, FrameError, FrameHeader, FrameKind, RPC_FRAME_HEADER_BYTES};

// ---------------------------------------------------------------- messages

/// One piece of a full snapshot streamed to a follower. Chunks go in order
/// on one connection; each is acknowledged before the next is sent, so
/// neither side holds more than a chunk in flight.
/// A Raft message (`AppendEntries`, `Vote`, `PreVote`, `SnapshotChunk`
/// bodies) with the Raft ID of the server it is meant for. A server
/// answers only messages addressed to itself: one that lost its state and
/// came back at the same address under a new ID must not take the
/// replication (or grant the votes) meant for its old self, which Raft
/// cannot survive (a vote given twice in one term, acknowledged entries
/// forgotten).
#[derive(Debug, Serialize, Deserialize)]
pub struct Addressed<T> {
    pub to: u64,
    pub rpc: T,
}

impl<T: DeserializeOwned> Addressed<T> {
    /// Decodes a body addressed to `me`; another address is refused.
    pub fn open(me: u64, body: &[u8]) -> Result<T, RpcError> {
        let Addressed { to, rpc } = decode_body::<Addressed<T>>(body)?;
        if to != me {
            return Err(RpcError::Remote(format!(
                "this server is {me:016x}, not {to:016x}: it lost its state or took \
                 another server's address"
            )));
        }
        Ok(rpc)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SnapshotChunk<C: RaftTypeConfig> {
    pub vote: VoteOf<C>,
    pub meta: SnapshotMetaOf<C>,
    /// Where `data` starts in the snapshot.
    pub offset: u64,
    /// Length of the whole snapshot.
    pub total_len: u64,
    pub data: Vec<u8>,
}

/// A server as the join exchange describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Raft's id (derived from the node ID).
    pub id: u64,
    pub name: String,
    pub datacenter: String,
    /// Server RPC (Raft and forwarding).
    pub rpc_addr: SocketAddr,
    /// Where the join exchange is served (the serf LAN port).
    pub lan_addr: SocketAddr,
}

/// Server-to-server requests beyond Raft's own (`FrameKind::Request`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerRequest {
    /// The join exchange: the sender introduces itself and asks whom the
    /// receiver knows (served on the LAN port until gossip replaces it).
    Hello(ServerInfo),
    /// Renews a session's TTL (leader only).
    RenewSession(tribune_core::ids::SessionId),
    /// The log index a read must wait for before it is served locally:
    /// a read index confirmed by a quorum (`linearizable`) or under the
    /// leader's lease (Consul's default mode).
    ReadIndex { linearizable: bool },
    /// Adds a server to the configuration as a voter (leader only).
    AddServer(ServerInfo),
    /// Removes a server from the configuration (leader only).
    RemoveServer { id: u64 },
    /// A client agent's write (its catalog sync, check updates): any
    /// server takes it and passes it to the leader.
    ClientWrite(tribune_core::Command),
    /// A client agent's HTTP request for the cluster's state (KV, catalog,
    /// health, sessions, txn, status, operator), served by the receiving
    /// server's own API as if it had come in on its HTTP port.
    Http(HttpCall),
    /// What the catalog holds for one node (a client's anti-entropy).
    NodeCatalog { node: String },
    /// A DNS question a client agent received, answered from the server's
    /// store with the client's DNS configuration.
    Dns {
        config: Box<tribune_core::dns::DnsConfig>,
        question: tribune_core::dns::Question,
    },
    /// A leader confirming a linearizable read: does the receiver, a
    /// voter, follow `leader` in `term`? (`crate::read_index`; appended
    /// last so earlier variants keep their encoding)
    ConfirmLeader { term: u64, leader: u64 },
}

/// An HTTP request a client agent forwards to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    /// The path as received (still percent-encoded).
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub token: Option<String>,
    pub body: Vec<u8>,
    /// The forwarding agent's node name: what "this agent" means in the
    /// request (a session's default node).
    pub agent_node: String,
}

/// The server's complete answer to an [`HttpCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Answers to [`ServerRequest`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerReply {
    Hello {
        /// Every server the receiver knows of, itself included.
        known: Vec<ServerInfo>,
        /// The receiver is part of a formed cluster.
        initialized: bool,
    },
    Session(Option<tribune_core::session::Session>),
    ReadIndex(u64),
    Done,
    Written(CommandResult),
    Http(HttpAnswer),
    Catalog(tribune_core::catalog::Catalog),
    Dns(Box<tribune_core::dns::Answer>),
    /// The answer to `ConfirmLeader` (appended last, as it).
    LeaderConfirmed(bool),
}

/// The answer to a forwarded write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardReply {
    /// The log index the command was applied at.
    pub index: u64,
    pub result: CommandResult,
}

/// Why a forwarded write was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ForwardError {
    /// The receiver is not the leader; it names the leader if it knows one.
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<SocketAddr>,
    },
    /// Raft refused or lost the write (shutdown, leader change mid-write).
    Failed(String),
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::NotLeader {
                leader_id: Some(id),
                leader_addr,
            } => write!(
                f,
                "not the leader; the leader is server {id} at {leader_addr:?}"
            ),
            ForwardError::NotLeader { .. } => f.write_str("No cluster leader"),
            ForwardError::Failed(why) => write!(f, "write failed: {why}"),
        }
    }
}

/// The body of a `Reply` frame: the answer, or why the server could not
/// produce it (shown to operators, never matched on).
pub type Reply<T> = Result<T, String>;

// ---------------------------------------------------------------- errors

/// Why a call did not produce a reply.
#[derive(Debug)]
#[non_exhaustive]
pub enum RpcError {
    /// The deadline passed (connect, send or reply).
    Timeout(Duration),
    Io(io::Error),
    /// The peer sent something that is not a frame, or the request was
    /// too big to send.
    Frame(FrameError),
    /// A body did not decode as the message its kind names.
    Body(String),
    /// The peer answered with an `Error` frame.
    Remote(String),
    /// The reply was not for this call.
    Mismatch {
        expected_id: u64,
        got_id: u64,
    },
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Timeout(after) => write!(f, "server RPC timed out after {after:?}"),
            RpcError::Io(e) => write!(f, "server RPC I/O error: {e}"),
            RpcError::Frame(e) => e.fmt(f),
            RpcError::Body(why) => write!(f, "server RPC body: {why}"),
            RpcError::Remote(why) => write!(f, "server RPC refused by peer: {why}"),
            RpcError::Mismatch {
                expected_id,
                got_id,
            } => write!(
                f,
                "server RPC reply for call {got_id}, expected {expected_id}"
            ),
        }
    }
}

impl std::error::Error for RpcError {}

impl From<io::Error> for RpcError {
    fn from(e: io::Error) -> RpcError {
        RpcError::Io(e)
    }
}

// ---------------------------------------------------------------- bodies

pub fn encode_body<T: Serialize>(message: &T) -> Vec<u8> {
    // Every message is owned, in-memory data: serializing cannot fail.
    postcard::to_allocvec(message).expect("RPC messages always serialize")
}

/// Decodes a whole body; trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    match postcard::take_from_bytes(body) {
        Ok((message, [])) => Ok(message),
        Ok(_) => Err(RpcError::Body("trailing bytes".into())),
        Err(e) => Err(RpcError::Body(e.to_string())),
    }
}

// ---------------------------------------------------------------- frames

/// Reads one frame. `Ok(None)` when the peer closed the connection between
/// frames; a frame cut short is an error. The body is allocated only after
/// the header passed its checks (the length limit among them).
pub async fn read_frame(
    stream: &mut TcpStream,
) -> Result<Option<(FrameHeader, Vec<u8>)>, RpcError> {
    let mut header = [0u8; RPC_FRAME_HEADER_BYTES];
    let first = stream.read(&mut header).await?;
    if first == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut header[first..]).await?;
    let header = FrameHeader::decode(&header).map_err(RpcError::Frame)?;
    let mut body = vec![0u8; header.body_len as usize];
    stream.read_exact(&mut body).await?;
    Ok(Some((header, body)))
}

pub async fn write_frame(
    stream: &mut TcpStream,
    kind: FrameKind,
    request_id: u64,
    body: &[u8],
) -> Result<(), RpcError> {
    let mut frame = Vec::new();
    rpc_frame::encode(kind, request_id, body, &mut frame).map_err(RpcError::Frame)?;
    stream.write_all(&frame).await?;
    Ok(())
}

// ---------------------------------------------------------------- client

/// The server RPC client: pooled connections per peer address.
#[derive(Debug, Default)]
pub struct RpcClient {
    idle: Mutex<BTreeMap<SocketAddr, Vec<TcpStream>>>,
    next_request_id: AtomicU64,
}

/// A connection taken from the pool for a sequence of calls.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
}

impl RpcClient {
    pub fn new() -> RpcClient {
        RpcClient::default()
    }

    /// One request, one reply, within `deadline`.
    pub async fn call(
        &self,
        addr: SocketAddr,
        kind: FrameKind,
        body: &[u8],
        deadline: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        self.try_call(addr, kind, body, deadline, deadline)
            .await
            .map_err(|(_, e)| e)
    }

    /// One request, one reply: connecting within `connect`, the exchange
    /// within `deadline`. A failure says whether anything was sent
    /// (core's `route::Miss`: `NotSent` when the connection could not be
    /// made, else `NoAnswer`), which decides whether it may be resent.
    pub async fn try_call(
        &self,
        addr: SocketAddr,
        kind: FrameKind,
        body: &[u8],
        connect: Duration,
        deadline: Duration,
    ) -> Result<Vec<u8>, (Miss, RpcError)> {
        let mut conn = self
            .checkout(addr, connect)
            .await
            .map_err(|e| (Miss::NotSent, e))?;
        let reply = self
            .call_on(&mut conn, kind, body, deadline)
            .await
            .map_err(|e| (Miss::NoAnswer, e))?;
        self.checkin(conn);
        Ok(reply)
    }

    /// An idle connection to `addr`, or a new one (connecting within
    /// `deadline`).
    pub async fn checkout(&self, addr: SocketAddr, deadline: Duration) -> Result<Conn, RpcError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get_mut(&addr)
                .and_then(Vec::pop);
            let Some(stream) = idle else { break };
            // An idle connection has nothing to read; if it has, the peer
            // closed it (or restarted) and a call on it would fail after
            // sending, with an unknown outcome. Such connections are dropped
            // here, before anything is sent.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Conn { addr, stream })
                }
                _ => continue,
            }
        }
        let stream = tokio::time::timeout(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::Timeout(deadline))??;
        stream.set_nodelay(true)?;
        Ok(Conn { addr, stream })
    }

    /// Returns a connection whose last call succeeded to the pool.
    pub fn checkin(&self, conn: Conn) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let pool = idle.entry(conn.addr).or_default();
        if pool.len() < RPC_IDLE_CONNS_PER_PEER_MAX {
            pool.push(conn.stream);
        }
    }

    /// Forgets the idle connections to `addr` (e.g. the peer restarted).
    pub fn forget(&self, addr: SocketAddr) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&addr);
    }

    /// One call on a checked-out connection. On error the connection is in
    /// an unknown state: drop it, don't check it in.
    pub async fn call_on(
        &self,
        conn: &mut Conn,
        kind: FrameKind,
        body: &[u8],
        deadline: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            write_frame(&mut conn.stream, kind, request_id, body).await?;
            let Some((header, reply)) = read_frame(&mut conn.stream).await? else {
                return Err(RpcError::Io(io::ErrorKind::UnexpectedEof.into()));
            };
            if header.request_id != request_id {
                return Err(RpcError::Mismatch {
                    expected_id: request_id,
                    got_id: header.request_id,
                });
            }
            match header.kind {
                FrameKind::Reply => Ok(reply),
                FrameKind::Error => Err(RpcError::Remote(
                    String::from_utf8_lossy(&reply).into_owned(),
                )),
                other => Err(RpcError::Body(format!("{other:?} frame in reply"))),
            }
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| RpcError::Timeout(deadline))?
    }

    /// Sends a typed request and decodes its [`Reply`].
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        kind: FrameKind,
        request: &Req,
        deadline: Duration,
    ) -> Result<Resp, RpcError> {
        let reply = self
            .call(addr, kind, &encode_body(request), deadline)
            .await?;
        decode_body::<Reply<Resp>>(&reply)?.map_err(RpcError::Remote)
    }
}

// ---------------------------------------------------------------- fuzzing

/// What a server RPC body can be, by the fuzz input's first byte.
const FUZZ_BODY_KINDS: u8 = 5;

/// The `server_rpc_bodies` fuzz target: the first byte picks a body type
/// (server request, its answer, AppendEntries, vote, snapshot chunk), the
/// rest is the body. Decoding never panics, and whatever decodes encodes
/// to bytes that decode again to the same value.
/// `io-tokio/tests/fuzz_corpora.rs` replays the corpus.
pub fn fuzzing(data: &[u8]) {
    use crate::raft::TypeConfig;
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    fn round_trip<T: Serialize + DeserializeOwned + fmt::Debug>(body: &[u8]) {
        if let Ok(value) = decode_body::<T>(body) {
            let again = encode_body(&value);
            let back: T = decode_body(&again).expect("re-encoded body decodes");
            assert_eq!(format!("{value:?}"), format!("{back:?}"));
        }
    }
    match kind % FUZZ_BODY_KINDS {
        0 => round_trip::<ServerRequest>(body),
        1 => round_trip::<Result<ServerReply, ForwardError>>(body),
        2 => round_trip::<Addressed<AppendEntriesRequest<TypeConfig>>>(body),
        3 => round_trip::<Addressed<VoteRequest<TypeConfig>>>(body),
        _ => round_trip::<Addressed<SnapshotChunk<TypeConfig>>>(body),
    }
}

/// Whether a fuzz input decodes as the body type its first byte names.
pub fn fuzz_decodes(data: &[u8]) -> bool {
    use crate::raft::TypeConfig;
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    let Some((&kind, body)) = data.split_first() else {
        return false;
    };
    match kind % FUZZ_BODY_KINDS {
        0 => decode_body::<ServerRequest>(body).is_ok(),
        1 => decode_body::<Result<ServerReply, ForwardError>>(body).is_ok(),
        2 => decode_body::<Addressed<AppendEntriesRequest<TypeConfig>>>(body).is_ok(),
        3 => decode_body::<Addressed<VoteRequest<TypeConfig>>>(body).is_ok(),
        _ => decode_body::<Addressed<SnapshotChunk<TypeConfig>>>(body).is_ok(),
    }
}

/// Seeds for the `server_rpc_bodies` corpus: a valid body of each kind.
pub fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::raft::TypeConfig;
    use openraft::raft::VoteRequest;
    let info = ServerInfo {
        id: 7,
        name: "s1".into(),
        datacenter: "dc1".into(),
        rpc_addr: "127.0.0.1:8300".parse().expect("literal address"),
        lan_addr: "127.0.0.1:8301".parse().expect("literal address"),
    };
    let with_kind = |kind: u8, body: Vec<u8>| {
        let mut out = vec![kind];
        out.extend(body);
        out
    };
    vec![
        (
            "valid-hello",
            with_kind(0, encode_body(&ServerRequest::Hello(info.clone()))),
        ),
        (
            "valid-read-index",
            with_kind(
                0,
                encode_body(&ServerRequest::ReadIndex { linearizable: true }),
            ),
        ),
        (
            "valid-confirm-leader",
            with_kind(
                0,
                encode_body(&ServerRequest::ConfirmLeader { term: 3, leader: 7 }),
            ),
        ),
        (
            "valid-add-server",
            with_kind(0, encode_body(&ServerRequest::AddServer(info.clone()))),
        ),
        (
            "valid-http-call",
            with_kind(
                0,
                encode_body(&ServerRequest::Http(HttpCall {
                    method: "PUT".into(),
                    path: "/v1/kv/a%20b".into(),
                    query: "cas=0".into(),
                    token: None,
                    body: b"value".to_vec(),
                    agent_node: "c1".into(),
                })),
            ),
        ),
        (
            "valid-node-catalog",
            with_kind(
                0,
                encode_body(&ServerRequest::NodeCatalog { node: "c1".into() }),
            ),
        ),
        (
            "valid-dns",
            with_kind(
                0,
                encode_body(&ServerRequest::Dns {
                    config: Box::new(tribune_core::dns::DnsConfig::new("dc1")),
                    question: tribune_core::dns::Question {
                        name: "web.service.consul.".into(),
                        qtype: tribune_core::dns::QType::Srv,
                        answer_limit: Some(3),
                    },
                }),
            ),
        ),
        (
            "valid-http-answer",
            with_kind(
                1,
                encode_body::<Result<ServerReply, ForwardError>>(&Ok(ServerReply::Http(
                    HttpAnswer {
                        status: 200,
                        headers: vec![("X-Consul-Index".into(), "7".into())],
                        body: b"true".to_vec(),
                    },
                ))),
            ),
        ),
        (
            "valid-hello-reply",
            with_kind(
                1,
                encode_body::<Result<ServerReply, ForwardError>>(&Ok(ServerReply::Hello {
                    known: vec![info],
                    initialized: true,
                })),
            ),
        ),
        (
            "valid-not-leader",
            with_kind(
                1,
                encode_body::<Result<ServerReply, ForwardError>>(&Err(ForwardError::NotLeader {
                    leader_id: Some(3),
                    leader_addr: None,
                })),
            ),
        ),
        (
            "valid-vote",
            with_kind(
                3,
                encode_body(&Addressed {
                    to: 2,
                    rpc: VoteRequest::<TypeConfig>::new(
                        openraft::Vote::new(2, 1),
                        Some(openraft::testing::log_id::<TypeConfig>(1, 1, 5)),
                    ),
                }),
            ),
        ),
    ]
}

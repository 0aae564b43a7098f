//! openraft's network over madsim's simulated network.
//!
//! Each node serves on `10.0.0.<id>:7000` (see [`addr`]); each call binds
//! an ephemeral endpoint on the caller's node, sends the request (the
//! openraft message itself, boxed: nothing is serialized) with a random
//! call id, and waits for the answer carrying that id within openraft's
//! soft TTL (ports are reused, so late answers to earlier calls arrive
//! too, and are dropped). madsim applies the network
//! faults: latency, loss, clogged nodes and links (partitions), killed
//! and paused nodes. madsim has no duplication, so [`call`] adds it: with
//! the cluster's duplicate rate a request is sent a second time, 0..20 ms
//! later, from another endpoint (the server handles both; the second
//! answer is dropped), which also reorders it behind later requests. Any
//! failure is `Unreachable` for openraft, as in io-tokio's TCP network.

use crate::types::{Vote, C};
use bytes::Bytes;
use madsim::net::Endpoint;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf};
use openraft::RaftNetworkV2;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tribune::raft::ServerNode;

pub const PORT: u16 = 7000;
const TAG: u64 = 1;

pub fn ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8))
}

/// The node at `ip`, if it is a simulated node's address.
pub fn id_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [10, 0, high, low] => Some(u64::from(high) << 8 | u64::from(low)),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

/// The server address of node `id`.
pub fn addr(id: u64) -> SocketAddr {
    SocketAddr::new(ip(id), PORT)
}

/// What a node serves.
#[derive(Clone)]
pub enum Request {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C>),
    PreVote(VoteRequest<C>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMetaOf<C>,
        data: Bytes,
    },
    /// io-tokio's `read_index`: does the receiver follow `leader` in `term`?
    ConfirmLeader {
        term: u64,
        leader: u64,
    },
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Append(_) => "append",
            Request::Vote(_) => "vote",
            Request::PreVote(_) => "pre-vote",
            Request::Snapshot { .. } => "snapshot",
            Request::ConfirmLeader { .. } => "confirm-leader",
        }
    }
}

pub enum Response {
    Append(Result<AppendEntriesResponse<C>, String>),
    Vote(Result<VoteResponse<C>, String>),
    Snapshot(Result<SnapshotResponse<C>, String>),
    Confirmed(bool),
}

/// A request with the id its answer must carry: ephemeral ports are
/// reused, so a late answer to an earlier call can reach a later one.
struct Call {
    id: u64,
    request: Request,
}

struct Answer {
    id: u64,
    response: Response,
}

/// One call from the current node to `target`'s server; with probability
/// `duplicate_rate` the request is delivered twice.
pub async fn call(
    target: u64,
    request: Request,
    timeout: Duration,
    duplicate_rate: f64,
) -> Result<Response, String> {
    let endpoint = Endpoint::bind("0.0.0.0:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let id = {
        use madsim::rand::RngCore;
        madsim::rand::thread_rng().next_u64()
    };
    if duplicate_rate > 0.0 {
        use madsim::rand::Rng;
        let mut rng = madsim::rand::thread_rng();
        if rng.gen_bool(duplicate_rate.min(1.0)) {
            let delay = Duration::from_micros(rng.gen_range(0..20_000));
            let copy = request.clone();
            madsim::task::spawn(async move {
                madsim::time::sleep(delay).await;
                if let Ok(endpoint) = Endpoint::bind("0.0.0.0:0").await {
                    let call = Box::new(Call { id, request: copy });
                    let _ = endpoint.send_to_raw(addr(target), TAG, call).await;
                }
            });
        }
    }
    endpoint
        .send_to_raw(addr(target), TAG, Box::new(Call { id, request }))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let receive = async {
        loop {
            let (payload, _) = endpoint.recv_from_raw(TAG).await?;
            match payload.downcast::<Answer>() {
                Ok(answer) if answer.id == id => return Ok::<_, std::io::Error>(answer.response),
                // Someone else's late answer.
                _ => continue,
            }
        }
    };
    match madsim::time::timeout(timeout, receive).await {
        Err(_) => Err(format!("server {target}: timed out after {timeout:?}")),
        Ok(Err(e)) => Err(format!("server {target}: {e}")),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Serves requests on the current node with `handle`, forever.
pub async fn serve<F, Fut>(handle: F)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let id_ip = "0.0.0.0";
    let endpoint = std::sync::Arc::new(
        Endpoint::bind((id_ip, PORT))
            .await
            .expect("the server port is free"),
    );
    let handle = std::sync::Arc::new(handle);
    loop {
        let Ok((payload, from)) = endpoint.recv_from_raw(TAG).await else {
            continue;
        };
        let Ok(call) = payload.downcast::<Call>() else {
            continue;
        };
        let endpoint = std::sync::Arc::clone(&endpoint);
        let handle = std::sync::Arc::clone(&handle);
        madsim::task::spawn(async move {
            let Call { id, request } = *call;
            let response = handle(request).await;
            let _ = endpoint
                .send_to_raw(from, TAG, Box::new(Answer { id, response }))
                .await;
        });
    }
}

/// openraft's network factory for one node.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// The probability that a request is delivered twice.
    pub duplicate_rate: f64,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &ServerNode) -> Peer {
        Peer {
            target,
            duplicate_rate: self.duplicate_rate,
        }
    }
}

pub struct Peer {
    target: u64,
    duplicate_rate: f64,
}

fn unreachable(e: String) -> Unreachable<C> {
    Unreachable::from_string(e)
}

impl Peer {
    async fn request(&self, request: Request, option: &RPCOption) -> Result<Response, RPCError<C>> {
        call(self.target, request, option.soft_ttl(), self.duplicate_rate)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))
    }
}

fn remote<T>(result: Result<T, String>) -> Result<T, RPCError<C>> {
    result.map_err(|e| RPCError::Unreachable(unreachable(e)))
}

fn wrong() -> RPCError<C> {
    RPCError::Unreachable(unreachable("wrong response kind".to_owned()))
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match self.request(Request::Append(rpc), &option).await? {
            Response::Append(r) => remote(r),
            _ => Err(wrong()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.request(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => remote(r),
            _ => Err(wrong()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.request(Request::PreVote(rpc), &option).await? {
            Response::Vote(r) => remote(r),
            _ => Err(wrong()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<C, Bytes>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let call = call(self.target, request, option.soft_ttl(), self.duplicate_rate);
        let mut call = std::pin::pin!(call);
        let mut cancel = std::pin::pin!(cancel);
        let answer = std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(closed) = cancel.as_mut().poll(cx) {
                return std::task::Poll::Ready(Err(StreamingError::Closed(closed)));
            }
            call.as_mut().poll(cx).map(Ok)
        })
        .await?;
        match answer {
            Ok(Response::Snapshot(Ok(r))) => Ok(r),
            Ok(Response::Snapshot(Err(e))) | Err(e) => {
                Err(StreamingError::Unreachable(unreachable(e)))
            }
            Ok(_) => Err(StreamingError::Unreachable(unreachable(
                "wrong response kind".to_owned(),
            ))),
        }
    }
}

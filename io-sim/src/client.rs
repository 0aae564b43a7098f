//! Client requests over the simulated network, the way a Consul user's
//! application makes them: to the client agent on its host, which picks a
//! server from its gossip pool and sends the request over server RPC; a
//! server that does not lead forwards it to the leader. Which server, and
//! whether a request is tried again after an attempt that brought no
//! answer, core's `route` decides, as in the daemon (io-tokio's
//! `upstream` and `Node::write`):
//!
//! ```text
//!  driver ──(loopback)──> agent k ──connection──> server s ──connection──> leader
//!                          route::Servers (sticky, demote)     route::Call::to_leader (hold 7 s)
//!                          route::Call::from_client (hold 7 s; resend only reads or what was never sent)
//! ```
//!
//! Every hop crosses madsim's network, so partitions, loss, latency,
//! paused and killed nodes apply to the client's path too (the direct
//! `Cluster::write` and `Cluster::read` reach a server in-process).

use crate::cluster::{self, Live, ReadMode, WriteOutcome};
use crate::net;
use crate::trace::Trace;
use crate::NodeClock;
use madsim::net::Endpoint;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune_core::command::{Command, CommandResult};
use tribune_core::gossip::SerfMember;
use tribune_core::ids::SessionId;
use tribune_core::kv::KvEntry;
use tribune_core::route::{Call, Miss, Servers, Step};
use tribune_core::session::Session;

/// Consul's answer when a client agent reaches no server.
pub use tribune::upstream::NO_SERVERS;

/// Where servers take clients' requests (Consul's server RPC port).
pub const PORT: u16 = 8300;

/// How long a leader waits for its write to commit.
pub const LEADER_WRITE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// How long a server waits for the leader's answer to a forwarded request.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(2_000);
/// How long a client agent waits for a server's answer: the server may
/// hold the request for the hold timeout, then forward it once more.
pub const SERVER_CALL_TIMEOUT: Duration = Duration::from_millis(
    FORWARD_TIMEOUT.as_millis() as u64 + tribune_core::route::HOLD_TIMEOUT.as_millis() + 500,
);

/// What a client asks of the cluster.
#[derive(Clone, Debug)]
pub enum ClientRequest {
    Write(Command),
    /// A key's entry, in the cluster's read mode.
    Read(String),
    /// `PUT /v1/session/renew`: the leader resets the session's TTL timer
    /// (not a Raft write, not resent: it is no read).
    Renew(SessionId),
}

impl ClientRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            ClientRequest::Write(_) => "client-write",
            ClientRequest::Read(_) => "client-read",
            ClientRequest::Renew(_) => "client-renew",
        }
    }

    fn read_only(&self) -> bool {
        matches!(self, ClientRequest::Read(_))
    }
}

/// A server's answer to a client request.
#[derive(Clone, Debug)]
pub enum ClientAnswer {
    Written(CommandResult),
    Read(Option<KvEntry>),
    /// The renewed session; `None`: no such session.
    Renewed(Option<Session>),
    /// Nothing was done: no leader was found within the hold timeout (or,
    /// to a forwarded request, this server does not lead).
    NoLeader,
    /// No answer came from the leader: a write may take effect.
    Failed(String),
}

/// What crosses a client connection to a server.
struct Sent {
    request: ClientRequest,
    /// By a server to its leader, which does not forward it again.
    forwarded: bool,
}

/// One request to server `target` over a connection of its own: madsim's
/// reliable, ordered channel (TCP: it waits out lost packets and clogged
/// links, and delivers once). A connection that cannot be made (the link
/// is down, the node is not there) sends nothing.
async fn rpc(target: u64, sent: Sent, timeout: Duration) -> Result<ClientAnswer, Miss> {
    let endpoint = Endpoint::bind("0.0.0.0:0")
        .await
        .map_err(|_| Miss::NotSent)?;
    let (tx, mut rx) = endpoint
        .connect1(SocketAddr::new(net::ip(target), PORT))
        .await
        .map_err(|_| Miss::NotSent)?;
    if tx.send(Box::new(sent)).await.is_err() {
        return Err(Miss::NoAnswer);
    }
    match madsim::time::timeout(timeout, rx.recv()).await {
        Ok(Ok(payload)) => payload
            .downcast::<ClientAnswer>()
            .map(|answer| *answer)
            .map_err(|_| Miss::NoAnswer),
        Ok(Err(_)) | Err(_) => Err(Miss::NoAnswer),
    }
}

/// Serves clients' requests on the current server node, forever.
pub(crate) async fn serve(server: Arc<ServerSide>, trace: Trace) {
    let Ok(endpoint) = Endpoint::bind(("0.0.0.0", PORT)).await else {
        trace.record(server.id, "client port taken");
        return;
    };
    while let Ok((tx, mut rx, _from)) = endpoint.accept1().await {
        let (server, trace) = (Arc::clone(&server), trace.clone());
        madsim::task::spawn(crate::clock::inherit(async move {
            let Ok(payload) = rx.recv().await else {
                return;
            };
            let Ok(sent) = payload.downcast::<Sent>() else {
                return;
            };
            trace.record(server.id, format!("recv {}", sent.request.kind()));
            let answer = server.serve(sent.request, sent.forwarded).await;
            let _ = tx.send(Box::new(answer)).await;
        }));
    }
}

/// What a server needs to answer clients.
pub(crate) struct ServerSide {
    pub(crate) id: u64,
    pub(crate) live: Live,
    pub(crate) read_mode: ReadMode,
    pub(crate) round_timeout: Duration,
    pub(crate) clock: Option<NodeClock>,
    /// Broken on purpose (the teeth test): a forwarded write that brought
    /// no answer is sent to the leader again.
    pub(crate) resend_unanswered: bool,
}

impl ServerSide {
    fn now(&self) -> tribune_core::time::Instant {
        crate::server::now_on(self.clock)
    }

    fn leader(&self) -> Option<u64> {
        use openraft::async_runtime::WatchReceiver;
        let metrics = self.live.raft.metrics();
        let leader = metrics.borrow_watched().current_leader;
        leader
    }

    /// Serves `request` on this server (runs on its node): as the leader,
    /// or by forwarding it to the leader, held while there is none.
    pub(crate) async fn serve(&self, request: ClientRequest, forwarded: bool) -> ClientAnswer {
        let call = Call::to_leader(self.now(), request.read_only());
        loop {
            let miss = match self.leader() {
                Some(leader) if leader == self.id => match self.as_leader(&request).await {
                    Some(answer) => return answer,
                    None => Miss::NotLeader,
                },
                // One hop: the leader this one forwarded to does not lead.
                _ if forwarded => return ClientAnswer::NoLeader,
                Some(leader) => {
                    let forward = Sent {
                        request: request.clone(),
                        forwarded: true,
                    };
                    match rpc(leader, forward, FORWARD_TIMEOUT).await {
                        Ok(ClientAnswer::NoLeader) => Miss::NotLeader,
                        Ok(answer) => return answer,
                        Err(miss) => miss,
                    }
                }
                None => Miss::NotLeader,
            };
            if let (Step::Fail(_), false) = (call.missed(miss), self.resend_unanswered) {
                return ClientAnswer::Failed("no answer from the leader".into());
            }
            match call.exhausted(self.now()) {
                Step::Wait(pause) => madsim::time::sleep(pause.to_std()).await,
                _ => return ClientAnswer::NoLeader,
            }
        }
    }

    /// The leader's half; `None`: this server turned out not to lead
    /// (nothing was done).
    async fn as_leader(&self, request: &ClientRequest) -> Option<ClientAnswer> {
        match request {
            ClientRequest::Write(command) => {
                let command = command.clone();
                match cluster::write_on(&self.live, self.now(), command, LEADER_WRITE_TIMEOUT).await
                {
                    WriteOutcome::Applied(result) => Some(ClientAnswer::Written(result)),
                    WriteOutcome::Refused(_) => None,
                    WriteOutcome::Unknown(why) => Some(ClientAnswer::Failed(why)),
                }
            }
            ClientRequest::Read(key) => {
                cluster::barrier(self.read_mode, self.id, &self.live, self.round_timeout)
                    .await
                    .ok()?;
                let entry = self.live.store.read(|fsm| fsm.kv.get(key).cloned());
                Some(ClientAnswer::Read(entry))
            }
            ClientRequest::Renew(id) => {
                let renewed = self.live.store.renew(self.now(), *id).ok()?;
                Some(ClientAnswer::Renewed(renewed))
            }
        }
    }
}

/// Why a client agent brought back no server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentError {
    /// The agent does not run: the connection to it is refused.
    Down(String),
    /// No server could be reached within the hold timeout ("No known
    /// Consul servers"); nothing was done.
    NoServers,
    /// A write was sent and not answered: it may take effect.
    Unknown(String),
}

/// The alive servers among `members` (Consul's server tags), as node ids.
fn servers_in(members: &[SerfMember]) -> Vec<u64> {
    tribune_core::reconcile::alive_servers(members, crate::gossip::DATACENTER)
        .filter_map(|(member, _port)| net::id_of(member.addr.ip()))
        .collect()
}

/// Runs `f` on an agent's server list, made (with a seed from the
/// simulation's RNG) at its first use.
fn with_servers<T>(
    servers: &Mutex<Option<Servers<u64>>>,
    f: impl FnOnce(&mut Servers<u64>) -> T,
) -> T {
    let mut guard = servers.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(|| {
        use madsim::rand::Rng;
        Servers::new(madsim::rand::thread_rng().gen())
    }))
}

/// A client agent's half (runs on its node): picks a server from its
/// member list, sends, and moves on or gives up as core's `route::Call`
/// says (`resend_unanswered`: broken on purpose, every miss moves on).
pub(crate) async fn from_agent(
    servers: &Mutex<Option<Servers<u64>>>,
    members: &crate::gossip::MemberView,
    request: ClientRequest,
    resend_unanswered: bool,
) -> Result<ClientAnswer, AgentError> {
    let now = || crate::server::now_on(crate::clock::current());
    let call = Call::from_client(now(), request.read_only());
    loop {
        let found = servers_in(&members.lock().unwrap_or_else(|p| p.into_inner()));
        let candidates = with_servers(servers, |list| {
            list.update(found);
            list.known().to_vec()
        });
        for server in candidates {
            let sent = Sent {
                request: request.clone(),
                forwarded: false,
            };
            let miss = match rpc(server, sent, SERVER_CALL_TIMEOUT).await {
                Ok(answer) => return Ok(answer),
                Err(miss) => miss,
            };
            with_servers(servers, |list| list.demote(&server));
            if let (Step::Fail(_), false) = (call.missed(miss), resend_unanswered) {
                return Err(AgentError::Unknown(format!(
                    "no answer from server {server}"
                )));
            }
        }
        match call.exhausted(now()) {
            Step::Wait(pause) => madsim::time::sleep(pause.to_std()).await,
            _ => return Err(AgentError::NoServers),
        }
    }
}

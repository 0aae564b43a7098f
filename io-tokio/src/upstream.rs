//! A client agent's way to the servers: it finds them in the LAN gossip
//! pool (members tagged `role=consul` in its datacenter, RPC port in the
//! `port` tag) and sends every request for the cluster's state to one of
//! them over server RPC, as Consul's client agents do.
//!
//! Like Consul's router, a client sticks to one server and moves to the
//! next when a call fails to reach it. A request is retried on another
//! server only when nothing was sent (the connection could not be made)
//! or when it was a read; a write whose connection broke after sending has
//! an unknown outcome and fails. With no server known or reachable,
//! requests are held and retried for [`RPC_HOLD_TIMEOUT`], then fail with
//! Consul's "No known Consul servers".

use crate::cluster::RPC_HOLD_TIMEOUT;
use crate::gossip::Gossip;
use crate::raft::rpc::{decode_body, encode_body, RpcClient, RpcError, ServerReply, ServerRequest};
use crate::raft::ForwardError;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tribune_core::gossip::{SerfEvent, SerfMember};
use tribune_core::limits::RPC_CALL_TIMEOUT;
use tribune_core::rng::Rng;
use tribune_core::rpc_frame::FrameKind;

/// Consul's error when a client knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";
/// Between attempts while no server answers.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often the server list is rebuilt from the member list even without
/// membership events (a lost event must not leave it stale).
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Why a request got no answer.
#[derive(Debug)]
pub enum UpstreamError {
    /// No server was known or reachable within the hold timeout.
    NoServers,
    /// The server answered with a refusal (for example no cluster leader).
    Refused(ForwardError),
    /// The request may have reached a server, the outcome is unknown.
    Failed(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NoServers => f.write_str(NO_SERVERS),
            UpstreamError::Refused(e) => e.fmt(f),
            UpstreamError::Failed(why) => f.write_str(why),
        }
    }
}

pub struct Upstream {
    datacenter: String,
    client: RpcClient,
    /// Known servers' RPC addresses; the first is the one in use.
    servers: Mutex<Vec<SocketAddr>>,
    rng: Mutex<Rng>,
    /// For callers on threads outside the runtime (the DNS threads).
    runtime: tokio::runtime::Handle,
}

/// The RPC addresses of the alive servers of `datacenter` among `members`,
/// sorted.
pub fn servers_of(members: &[SerfMember], datacenter: &str) -> Vec<SocketAddr> {
    let mut found: Vec<SocketAddr> = tribune_core::reconcile::alive_servers(members, datacenter)
        .map(|(m, port)| SocketAddr::new(m.addr.ip(), port))
        .collect();
    found.sort();
    found.dedup();
    found
}

impl Upstream {
    /// Must be called inside the tokio runtime.
    pub fn new(datacenter: String, seed: u64) -> Upstream {
        Upstream {
            runtime: tokio::runtime::Handle::current(),
            datacenter,
            client: RpcClient::new(),
            servers: Mutex::new(Vec::new()),
            rng: Mutex::new(Rng::from_seed(seed)),
        }
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The servers known now, the one in use first.
    pub fn known(&self) -> Vec<SocketAddr> {
        self.servers().clone()
    }

    /// Replaces the server list with what the pool shows. The server in use
    /// stays first while it is listed; otherwise a random one is picked,
    /// so clients spread over the servers.
    pub fn update(&self, members: &[SerfMember]) {
        let mut found = servers_of(members, &self.datacenter);
        let mut servers = self.servers();
        let current = servers.first().copied();
        match current.and_then(|c| found.iter().position(|s| *s == c)) {
            Some(at) => found.rotate_left(at),
            None if !found.is_empty() => {
                let len = found.len() as u64;
                let at = self
                    .rng
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .below(len);
                found.rotate_left(at as usize);
            }
            None => {}
        }
        *servers = found;
    }

    /// Moves `failed` to the back of the list (if it is still first).
    fn demote(&self, failed: SocketAddr) {
        let mut servers = self.servers();
        if servers.first() == Some(&failed) {
            servers.rotate_left(1);
        }
    }

    /// Keeps the server list in step with the pool for the life of the
    /// process.
    pub async fn follow(self: std::sync::Arc<Self>, gossip: Gossip) {
        let mut events = gossip.subscribe();
        loop {
            self.update(&gossip.members().await);
            let wait = tokio::time::sleep(REFRESH_EVERY);
            tokio::select! {
                _ = wait => {}
                event = events.recv() => match event {
                    Ok(SerfEvent::User(_) | SerfEvent::Query(_)) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Runs `future` to completion from synchronous code: a thread of its
    /// own (the DNS threads) or a runtime worker (which hands its other
    /// tasks to another worker meanwhile).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(future)),
            Err(_) => self.runtime.block_on(future),
        }
    }

    /// Sends `request` to a server and returns its answer. `read_only`
    /// requests may be resent to another server after a failure mid-call;
    /// others only when the connection could not be made. `deadline`
    /// bounds one attempt's exchange (a blocking query needs its wait).
    pub async fn call(
        &self,
        request: &ServerRequest,
        read_only: bool,
        deadline: Duration,
    ) -> Result<ServerReply, UpstreamError> {
        let body = encode_body(request);
        let connect = Duration::from_nanos(RPC_CALL_TIMEOUT.as_nanos());
        let hold_until = tokio::time::Instant::now() + RPC_HOLD_TIMEOUT;
        let mut last_error = String::new();
        loop {
            let candidates = self.known();
            for server in candidates {
                let mut conn = match self.client.checkout(server, connect).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        crate::log::debug(&format!("upstream: server {server}: {e}"));
                        last_error = format!("server {server}: {e}");
                        self.client.forget(server);
                        self.demote(server);
                        continue;
                    }
                };
                match self
                    .client
                    .call_on(&mut conn, FrameKind::Request, &body, deadline)
                    .await
                {
                    Ok(reply) => {
                        self.client.checkin(conn);
                        let answer: Result<ServerReply, ForwardError> = decode_body(&reply)
                            .map_err(|e| UpstreamError::Failed(format!("server {server}: {e}")))?;
                        // A server that found no leader already held the
                        // request for the hold timeout: its answer is final.
                        return answer.map_err(UpstreamError::Refused);
                    }
                    Err(e) => {
                        self.client.forget(server);
                        self.demote(server);
                        if !read_only || matches!(e, RpcError::Remote(_)) {
                            return Err(UpstreamError::Failed(format!(
                                "rpc error talking to server {server}: {e}"
                            )));
                        }
                        last_error = format!("server {server}: {e}");
                    }
                }
            }
            if tokio::time::Instant::now() >= hold_until {
                if !last_error.is_empty() {
                    crate::log::warn(&format!("upstream: no server answered: {last_error}"));
                }
                return Err(UpstreamError::NoServers);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

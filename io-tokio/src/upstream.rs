//! A client agent's way to the servers: it finds them in the LAN gossip
//! pool (members tagged `role=consul` in its datacenter, RPC port in the
//! `port` tag) and sends every request for the cluster's state to one of
//! them over server RPC, as Consul's client agents do.
//!
//! Which server, and whether a failed request is tried again, core's
//! `route` decides (Consul's router: stick to one server, move on when a
//! call fails; resend only reads, or what was never sent; hold for the
//! hold timeout, then "No known Consul servers").

use crate::gossip::Gossip;
use crate::raft::rpc::{decode_body, encode_body, RpcClient, RpcError, ServerReply, ServerRequest};
use crate::raft::ForwardError;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tribune_core::gossip::{SerfEvent, SerfMember};
use tribune_core::limits::RPC_CALL_TIMEOUT;
use tribune_core::route::{Call, Servers, Step};
use tribune_core::rpc_frame::FrameKind;

/// Consul's error when a client knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";
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
    servers: Mutex<Servers<SocketAddr>>,
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
            servers: Mutex::new(Servers::new(seed)),
        }
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, Servers<SocketAddr>> {
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The servers known now, the one in use first.
    pub fn known(&self) -> Vec<SocketAddr> {
        self.servers().known().to_vec()
    }

    /// Replaces the server list with what the pool shows (core's
    /// `Servers::update`: the server in use stays first while listed).
    pub fn update(&self, members: &[SerfMember]) {
        let found = servers_of(members, &self.datacenter);
        self.servers().update(found);
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
    /// others only when the connection could not be made (core's
    /// `route::Call`). `deadline` bounds one attempt's exchange (a
    /// blocking query needs its wait).
    pub async fn call(
        &self,
        request: &ServerRequest,
        read_only: bool,
        deadline: Duration,
    ) -> Result<ServerReply, UpstreamError> {
        let body = encode_body(request);
        let connect = RPC_CALL_TIMEOUT.to_std();
        let call = Call::from_client(crate::clock::now(), read_only);
        let mut last_error = String::new();
        loop {
            let candidates = self.known();
            for server in candidates {
                let kind = FrameKind::Request;
                let (miss, why) = match self
                    .client
                    .try_call(server, kind, &body, connect, deadline)
                    .await
                {
                    Ok(reply) => {
                        let answer: Result<ServerReply, ForwardError> = decode_body(&reply)
                            .map_err(|e| UpstreamError::Failed(format!("server {server}: {e}")))?;
                        // A server that found no leader already held the
                        // request for the hold timeout: its answer is final.
                        return answer.map_err(UpstreamError::Refused);
                    }
                    // A remote error is the server's answer.
                    Err((_, e @ RpcError::Remote(_))) => {
                        return Err(UpstreamError::Failed(format!(
                            "rpc error talking to server {server}: {e}"
                        )))
                    }
                    Err((miss, e)) => (miss, e.to_string()),
                };
                crate::log::debug(&format!("upstream: server {server}: {why}"));
                self.client.forget(server);
                self.servers().demote(&server);
                if call.missed(miss) != Step::Next {
                    return Err(UpstreamError::Failed(format!(
                        "rpc error talking to server {server}: {why}"
                    )));
                }
                last_error = format!("server {server}: {why}");
            }
            match call.exhausted(crate::clock::now()) {
                Step::Wait(pause) => tokio::time::sleep(pause.to_std()).await,
                _ => {
                    if !last_error.is_empty() {
                        crate::log::warn(&format!("upstream: no server answered: {last_error}"));
                    }
                    return Err(UpstreamError::NoServers);
                }
            }
        }
    }
}

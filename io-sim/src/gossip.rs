//! Gossip on the simulated network: core's `Serf` driven on madsim, as
//! io-tokio's gossip driver drives it on sockets.
//!
//! Each server runs one driver task that owns its `Serf`. Packets travel
//! as datagrams on madsim's network (so loss, latency, clogged links and
//! partitions apply), encoded and decoded by core's real codec (compound
//! messages, LZW compression, CRC). Streams (push/pull, the TCP fallback
//! ping) are one request and one answer between endpoints, carrying the
//! `Message` itself, like the simulated Raft RPCs; a stream that gets no
//! answer within the memberlist timeout fails. Receivers are tasks of
//! their own that feed the driver through a channel, so that nothing
//! received is dropped by a `select`.
//!
//! A node joins through the other servers when it starts (and after a
//! restart), retrying every 2 s until one answers, as `-retry-join`
//! does. What the node's member list shows is published after every
//! step ([`MemberView`]) for the checkers, and every membership event is
//! traced.

use crate::clock::SimInstant;
use crate::trace::Trace;
use madsim::net::Endpoint;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tribune_core::gossip::codec::{decode_packet_with, encode_packet, Inbound, Outbound};
use tribune_core::gossip::message::Message;
use tribune_core::gossip::{Output, Serf, SerfConfig, SerfEvent, SerfMember, SerfOutput, StreamId};
use tribune_core::rng::Rng;
use tribune_core::time::Instant;

pub const GOSSIP_PORT: u16 = 8301;
const PACKET_TAG: u64 = 2;
const STREAM_TAG: u64 = 3;
/// How often a node that joined nobody tries again.
const RETRY_JOIN: Duration = Duration::from_secs(2);

/// Client agents' ids start here (agent `k` is node `AGENT_BASE + k`,
/// at `10.0.1.k`); servers' ids are below.
pub const AGENT_BASE: u64 = 256;

/// Client agent `k`'s node id.
pub fn agent_id(k: u64) -> u64 {
    AGENT_BASE + k
}

/// Node `id`'s gossip address.
pub fn addr(id: u64) -> SocketAddr {
    SocketAddr::new(crate::net::ip(id), GOSSIP_PORT)
}

/// The gossip (and catalog) name of node `id`: `server-<id>` for a
/// server, `agent-<k>` for client agent `k`.
pub fn name(id: u64) -> String {
    match id.checked_sub(AGENT_BASE) {
        Some(k) if k > 0 => format!("agent-{k}"),
        _ => format!("server-{id}"),
    }
}

/// What a node's member list shows, in name order.
pub type MemberView = Arc<Mutex<Vec<SerfMember>>>;

/// A way into a node's running gossip from outside (the test): each
/// incarnation installs its own, so a request never reaches a later one.
#[derive(Clone, Default)]
pub struct Control(Arc<Mutex<Option<mpsc::UnboundedSender<Input>>>>);

impl Control {
    /// Asks the running incarnation to leave the pool gracefully (serf's
    /// `Leave`) and stop once the leave has propagated; false if none
    /// runs.
    pub fn leave(&self) -> bool {
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner());
        sender
            .as_ref()
            .is_some_and(|s| s.send(Input::Leave).is_ok())
    }

    /// Whether an incarnation's gossip runs (not yet started, stopped
    /// after its leave, or killed: no).
    pub fn is_running(&self) -> bool {
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().is_some_and(|s| !s.is_closed())
    }
}

/// What a node's gossip runs with.
pub struct Setup {
    /// The node's id (its name and address follow from it).
    pub id: u64,
    pub config: SerfConfig,
    /// Where it joins, retrying every 2 s until one answers.
    pub peers: Vec<SocketAddr>,
    /// Where its member list is published.
    pub view: MemberView,
    pub control: Control,
    pub trace: Trace,
    /// Counts the members it declares failed.
    pub failures: Arc<AtomicU64>,
}

/// The datacenter the simulated servers announce.
pub const DATACENTER: &str = "dc1";

/// The gossip configuration the simulated servers use: memberlist's
/// `Local` preset (probe every second, 200 ms probe timeout) and serf's
/// LAN settings, with failed members retried every 2 s (serf's
/// `reconnect_interval`, 30 s by default) so that a partition's two sides,
/// which each declared the other failed, find each other again within a
/// liveness bound. The tags are a Consul server's (`role`, `dc`, `port`),
/// which the leader's reconciliation reads.
pub fn sim_config() -> SerfConfig {
    use tribune_core::reconcile::{PORT_TAG, SERVER_ROLE};
    let mut config = agent_config(SERVER_ROLE);
    config
        .tags
        .insert(PORT_TAG.into(), crate::net::PORT.to_string());
    config
}

/// A client agent's: the same settings with Consul's client tags
/// (`role=node`, `dc`).
pub fn client_config() -> SerfConfig {
    agent_config(tribune_core::reconcile::CLIENT_ROLE)
}

fn agent_config(role: &str) -> SerfConfig {
    use tribune_core::reconcile::{DATACENTER_TAG, ROLE_TAG};
    let mut config = SerfConfig::lan();
    config.tags.insert(ROLE_TAG.into(), role.into());
    config.tags.insert(DATACENTER_TAG.into(), DATACENTER.into());
    config.memberlist = tribune_core::gossip::Config::local();
    config.reconnect_interval = tribune_core::time::Duration::from_secs(2);
    config
}

struct StreamCall {
    id: u64,
    msg: Message,
}

struct StreamAnswer {
    id: u64,
    msg: Option<Message>,
}

enum Input {
    /// Leave gracefully, then stop (the agent's process exits).
    Leave,
    Packet(Vec<u8>, SocketAddr),
    Stream {
        call: u64,
        msg: Message,
        from: SocketAddr,
    },
    Outcome {
        id: StreamId,
        answer: Result<Message, String>,
    },
}

/// The node's clock reading as core's `Instant` (inside a node's task).
fn now() -> Instant {
    Instant(<SimInstant as openraft_rt::Instant>::now().as_nanos())
}

struct Driver {
    id: u64,
    serf: Serf,
    rng: Rng,
    endpoint: Arc<Endpoint>,
    inputs: mpsc::UnboundedSender<Input>,
    view: MemberView,
    trace: Trace,
    failures: Arc<AtomicU64>,
    peers: Vec<SocketAddr>,
    /// When to try joining again (no join has succeeded yet).
    retry_join_at: Option<Instant>,
    /// The graceful leave finished: the node stops.
    left: bool,
}

/// Runs node `id`'s gossip until the node dies or has left.
pub async fn run(setup: Setup, seed: u64) {
    let Setup {
        id,
        config,
        peers,
        view,
        control,
        trace,
        failures,
    } = setup;
    let endpoint = Arc::new(
        Endpoint::bind(("0.0.0.0", GOSSIP_PORT))
            .await
            .expect("the gossip port is free"),
    );
    let (inputs, mut received) = mpsc::unbounded_channel();
    spawn_receivers(&endpoint, &inputs);
    *control.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(inputs.clone());
    let serf = Serf::new(now(), config, name(id), addr(id), seed).expect("valid serf config");
    let mut driver = Driver {
        id,
        serf,
        rng: Rng::from_seed(seed ^ 0x0090_551b),
        endpoint,
        inputs,
        view,
        trace,
        failures,
        peers,
        retry_join_at: Some(now()),
        left: false,
    };
    loop {
        driver.join_if_due();
        driver.drain().await;
        if driver.left {
            driver.trace.record(id, "gossip: left, stopping");
            return;
        }
        let wake = [driver.serf.poll_timeout(), driver.retry_join_at]
            .into_iter()
            .flatten()
            .min();
        let sleep = async move {
            match wake {
                Some(at) => {
                    madsim::time::sleep_until(SimInstant::from_nanos(at.0).to_madsim()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            input = received.recv() => match input {
                Some(input) => driver.on_input(input).await,
                None => return,
            },
            () = sleep => driver.serf.handle_timeout(now()),
        }
    }
}

/// Packets and stream requests, from their own tasks into the driver's
/// channel.
fn spawn_receivers(endpoint: &Arc<Endpoint>, inputs: &mpsc::UnboundedSender<Input>) {
    let (ep, tx) = (Arc::clone(endpoint), inputs.clone());
    madsim::task::spawn(crate::clock::inherit(async move {
        let mut buf = vec![0u8; tribune_core::limits::GOSSIP_PACKET_BYTES_MAX];
        while let Ok((n, from)) = ep.recv_from(PACKET_TAG, &mut buf).await {
            if tx.send(Input::Packet(buf[..n].to_vec(), from)).is_err() {
                return;
            }
        }
    }));
    let (ep, tx) = (Arc::clone(endpoint), inputs.clone());
    madsim::task::spawn(crate::clock::inherit(async move {
        while let Ok((payload, from)) = ep.recv_from_raw(STREAM_TAG).await {
            let Ok(call) = payload.downcast::<StreamCall>() else {
                continue;
            };
            let StreamCall { id, msg } = *call;
            if tx
                .send(Input::Stream {
                    call: id,
                    msg,
                    from,
                })
                .is_err()
            {
                return;
            }
        }
    }));
}

impl Driver {
    fn join_if_due(&mut self) {
        let now = now();
        if self.retry_join_at.is_some_and(|at| at <= now) {
            self.retry_join_at =
                Some(now + tribune_core::time::Duration::from_nanos(RETRY_JOIN.as_nanos() as u64));
            // Nobody to join, or serf refuses (it left): stop trying.
            if self.peers.is_empty() || self.serf.join(now, &self.peers, false).is_err() {
                self.retry_join_at = None;
            }
        }
    }

    async fn on_input(&mut self, input: Input) {
        let now = now();
        match input {
            Input::Leave => {
                self.retry_join_at = None;
                if let Err(e) = self.serf.leave(now) {
                    self.trace.record(self.id, format!("gossip: leave: {e}"));
                }
            }
            Input::Packet(bytes, from) => {
                // Bad input is dropped (counted by the real shell).
                if let Ok(decoded) = decode_packet_with(&bytes, &Inbound::new("", None)) {
                    for msg in decoded.messages {
                        self.serf.handle_packet(now, from, msg);
                    }
                }
            }
            Input::Stream { call, msg, from } => {
                let answer = match msg {
                    Message::PushPull(remote) => Some(Message::PushPull(
                        self.serf.handle_push_pull(now, from, remote),
                    )),
                    Message::Ping(ping) => self
                        .serf
                        .handle_ping_stream(now, from, ping)
                        .map(Message::Ack),
                    Message::User(bytes) => {
                        self.serf.handle_user_message(now, &bytes);
                        None
                    }
                    _ => None,
                };
                let answer = Box::new(StreamAnswer {
                    id: call,
                    msg: answer,
                });
                let _ = self.endpoint.send_to_raw(from, STREAM_TAG, answer).await;
            }
            Input::Outcome { id, answer } => match answer {
                Ok(Message::PushPull(remote)) => self.serf.handle_push_pull_reply(now, id, remote),
                Ok(Message::Ack(ack)) => self.serf.handle_ping_stream_ack(now, id, ack),
                Ok(_) | Err(_) => self.serf.handle_stream_failed(now, id),
            },
        }
    }

    async fn drain(&mut self) {
        while let Some(out) = self.serf.poll() {
            match out {
                SerfOutput::Event(event) => self.on_event(event),
                SerfOutput::Memberlist(output) => self.on_output(output).await,
            }
        }
        self.publish();
    }

    /// Publishes the member list when it differs from the published one. Not only after events: a join intent moves
    /// a member from leaving back to alive without one (as in serf).
    fn publish(&self) {
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if !view.iter().eq(self.serf.members()) {
            *view = self.serf.members().cloned().collect();
        }
    }

    /// Traces a membership event.
    fn on_event(&mut self, event: SerfEvent) {
        let (what, member) = match &event {
            SerfEvent::MemberJoin(m) => ("join", m),
            SerfEvent::MemberFailed(m) => {
                self.failures.fetch_add(1, SeqCst);
                ("failed", m)
            }
            SerfEvent::MemberLeave(m) => ("left", m),
            SerfEvent::MemberReap(m) => ("reaped", m),
            SerfEvent::JoinFinished { joined, .. } => {
                if *joined > 0 {
                    self.retry_join_at = None;
                }
                return;
            }
            SerfEvent::LeaveFinished => {
                self.left = true;
                return;
            }
            _ => return,
        };
        self.trace
            .record(self.id, format!("gossip: {} {what}", member.name));
    }

    async fn on_output(&mut self, output: Output) {
        match output {
            Output::Packet { to, msgs } => {
                let out = Outbound::new("", None);
                if let Ok(bytes) = encode_packet(&msgs, &out, &mut self.rng) {
                    let _ = self.endpoint.send_to(to, PACKET_TAG, &bytes).await;
                }
            }
            out @ (Output::OpenPushPull { .. } | Output::OpenPingStream { .. }) => {
                if let Some(stream) = out.into_stream() {
                    let left = Duration::from_nanos(stream.deadline.0.saturating_sub(now().0));
                    self.open_stream(stream.id, stream.to, stream.msg, left);
                }
            }
            _ => {}
        }
    }

    /// One request and its answer, from an endpoint of its own.
    fn open_stream(&mut self, id: StreamId, to: SocketAddr, msg: Message, timeout: Duration) {
        let call = self.rng.next_u64();
        let inputs = self.inputs.clone();
        let timeout = crate::clock::virtual_duration(timeout);
        madsim::task::spawn(crate::clock::inherit(async move {
            let exchange = async {
                let endpoint = Endpoint::bind("0.0.0.0:0")
                    .await
                    .map_err(|e| format!("bind: {e}"))?;
                endpoint
                    .send_to_raw(to, STREAM_TAG, Box::new(StreamCall { id: call, msg }))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                loop {
                    let (payload, _) = endpoint
                        .recv_from_raw(STREAM_TAG)
                        .await
                        .map_err(|e| format!("receive: {e}"))?;
                    match payload.downcast::<StreamAnswer>() {
                        Ok(answer) if answer.id == call => {
                            return answer.msg.ok_or_else(|| "no answer".to_owned())
                        }
                        // A late answer to an earlier stream.
                        _ => continue,
                    }
                }
            };
            let answer = match madsim::time::timeout(timeout, exchange).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer from {to} within {timeout:?}")),
            };
            let _ = inputs.send(Input::Outcome { id, answer });
        }));
    }
}

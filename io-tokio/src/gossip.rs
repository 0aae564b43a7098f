//! The gossip transport: a tokio driver for core's [`Serf`].
//!
//! One task (the driver) owns the `Serf`, the UDP socket and an RNG seeded
//! from the OS. It feeds it packets and stream messages, sleeps until
//! `poll_timeout()`, and carries out what `poll()` asks: packets go out on
//! the UDP socket at once (a full socket buffer drops the packet, as UDP
//! would), streams are dialled and read by tasks of their own that report
//! back to the driver over a bounded channel.
//!
//! The TCP listener is shared: an accepted connection whose first byte is
//! `T` (tribune's RPC frames begin `TB`) is handed to the Raft RPC server,
//! anything else is a memberlist stream (a message type 0–13, or 244 for a
//! label header).
//!
//! Bad input (undecodable packets and streams) is dropped and counted, and
//! logged at most once per [`BAD_INPUT_LOG_EVERY`].
//!
//! Encryption: serf owns the keyring (`SerfConfig::keyring`; its key
//! queries change it). The driver seals every packet and stream with the
//! primary key and opens inbound ones with any installed key; stream tasks
//! read a copy that the driver replaces on `SerfEvent::KeyringChanged`,
//! when it also rewrites the keyring file. With encryption on, plaintext
//! and undecryptable input is refused (unless `verify_incoming` is off),
//! counted in `bad_packets`/`bad_streams` and logged like other bad input.

use crate::clock;
pub use crate::keyring::Encryption;
use crate::keyring::KeyringCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tribune_core::gossip::codec::{
    decode_packet_with, encode_packet, label_header, Inbound, Outbound, Packer,
};
use tribune_core::gossip::crypto::{EncryptionVersion, Keyring};
use tribune_core::gossip::message::Message;
use tribune_core::gossip::stream::{
    decode_stream, encode_stream, stream_need, stream_start, StreamNeed, StreamStart,
};
use tribune_core::gossip::{
    KeyOperation, KeySummary, Output, QueryId, Serf, SerfConfig, SerfEvent, SerfMember, SerfOutput,
    StreamId, WireError,
};
use tribune_core::limits::GOSSIP_PACKET_BYTES_MAX;
use tribune_core::rng::Rng;

/// Bad input is logged at most this often (with the count since).
pub const BAD_INPUT_LOG_EVERY: StdDuration = StdDuration::from_secs(10);
/// Inbound gossip streams served at once; more wait for a slot.
pub const INBOUND_STREAMS_MAX: usize = 128;
/// How long an accepted connection may take to send its first byte.
const FIRST_BYTE_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Requests from handles and stream tasks waiting for the driver.
const CHANNEL_SLOTS: usize = 256;
/// Events buffered per subscriber; a slow subscriber loses the oldest.
const EVENT_SLOTS: usize = 1024;
/// Bytes read from a stream per call.
const READ_CHUNK: usize = 64 * 1024;
/// How long `leave` waits for serf's graceful leave.
const LEAVE_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// What the driver needs to start.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub name: String,
    /// The address other members reach us at (its port is the listener's).
    pub advertise: SocketAddr,
    pub serf: SerfConfig,
    /// The gossip label ("" for none).
    pub label: String,
    /// How the keyring in `serf.keyring` is used, and where it is kept.
    pub encryption: Encryption,
}

/// Takes TCP connections that begin with tribune's RPC magic.
pub type RpcHook = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// A handle on the running gossip pool; cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<SerfEvent>,
    stats: Arc<TransportStats>,
    local_addr: SocketAddr,
    keyring: KeyringCell,
}

/// The transport's own counters (serf's are in `SerfStats`).
#[derive(Debug, Default)]
pub struct TransportStats {
    pub packets_received: AtomicU64,
    pub bad_packets: AtomicU64,
    pub packets_sent: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub bad_streams: AtomicU64,
    pub stream_failures: AtomicU64,
}

/// Where a join's outcome goes: how many answered, or why none did.
type JoinReply = oneshot::Sender<Result<usize, String>>;

enum Command {
    Members(oneshot::Sender<Vec<SerfMember>>),
    Join(Vec<SocketAddr>, JoinReply),
    Leave(oneshot::Sender<Result<(), String>>),
    ForceLeave {
        node: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    KeyOperation {
        op: KeyOperation,
        relay_factor: u8,
        reply: KeyReply,
    },
}

/// Where a key operation's outcome goes.
type KeyReply = oneshot::Sender<Result<KeySummary, String>>;

/// From stream tasks to the driver.
enum Inward {
    /// A peer's stream message; the answer (if any) is the encoded reply.
    Request {
        from: SocketAddr,
        msg: Message,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// The answer to a stream we opened, or why there is none.
    Outcome {
        id: StreamId,
        result: Result<Message, String>,
    },
}

impl Gossip {
    /// Starts the pool on `listener`'s address (UDP on the same port) and
    /// returns once the sockets are bound. Connections starting with the
    /// RPC magic go to `rpc`; without it they are closed.
    pub async fn start(
        config: GossipConfig,
        listener: TcpListener,
        rpc: Option<RpcHook>,
    ) -> Result<Gossip, String> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| format!("gossip listener address: {e}"))?;
        let udp = UdpSocket::bind(local_addr)
            .await
            .map_err(|e| format!("failed to listen on {local_addr} (serf LAN, udp): {e}"))?;
        let seed = clock::os_seed();
        let mut rng = Rng::from_seed(seed);
        let now = clock::now();
        let tcp_timeout = StdDuration::from_nanos(config.serf.memberlist.tcp_timeout.0);
        let mut config = config;
        let keyring = KeyringCell::new(config.serf.keyring.clone());
        // Room for what sealing adds to every packet: the label header, the
        // CRC and (memberlist does the same) the encryption.
        let memberlist = &mut config.serf.memberlist;
        memberlist.udp_reserved_bytes += Packer::framing_bytes(
            &config.label,
            true,
            config
                .serf
                .keyring
                .as_ref()
                .map(|_| EncryptionVersion::Unpadded),
        );
        let compress = memberlist.enable_compression;
        let encrypted = config.serf.keyring.is_some();
        let serf = Serf::new(
            now,
            config.serf,
            config.name.clone(),
            config.advertise,
            rng.next_u64(),
        )
        .map_err(|e| format!("starting serf: {e}"))?;
        let (commands, command_rx) = mpsc::channel(CHANNEL_SLOTS);
        let (inward, inward_rx) = mpsc::channel(CHANNEL_SLOTS);
        let (events, _) = broadcast::channel(EVENT_SLOTS);
        let stats = Arc::new(TransportStats::default());
        let bad_log = Arc::new(Mutex::new(BadLog::default()));
        let shared = Shared {
            compress,
            label: config.label,
            keyring: keyring.clone(),
            encryption: config.encryption,
            tcp_timeout,
            inward,
            stats: stats.clone(),
            bad_log,
        };
        tokio::spawn(accept_loop(listener, rpc, shared.clone()));
        let driver = Driver {
            serf,
            udp,
            rng,
            shared,
            events: events.clone(),
            active_join: None,
            queued_joins: VecDeque::new(),
            leave_waiters: Vec::new(),
            key_operations: BTreeMap::new(),
        };
        tokio::spawn(driver.run(command_rx, inward_rx));
        crate::log::info(&format!(
            "gossip: serf LAN pool on {local_addr} (udp+tcp) as {:?}, advertising {}, \
             encrypted: {encrypted}; rng seed {seed:#018x}",
            config.name, config.advertise
        ));
        Ok(Gossip {
            commands,
            events,
            stats,
            local_addr,
            keyring,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Whether gossip is encrypted (a keyring is installed).
    pub fn encrypted(&self) -> bool {
        self.keyring.get().is_some()
    }

    /// Sends the command `make` builds to the driver and waits for the
    /// answer on its reply channel.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| "gossip has stopped".to_string())?;
        rx.await.map_err(|_| "gossip has stopped".to_string())?
    }

    /// Runs a key operation across the pool (serf's key queries) and
    /// returns what the members answered once all have, or at the query's
    /// deadline.
    pub async fn key_operation(
        &self,
        op: KeyOperation,
        relay_factor: u8,
    ) -> Result<KeySummary, String> {
        self.ask(|reply| Command::KeyOperation {
            op,
            relay_factor,
            reply,
        })
        .await
    }

    /// Every member serf knows, ourselves included, in name order.
    pub async fn members(&self) -> Vec<SerfMember> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Members(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Joins through `addrs` (push/pull with each); the number that
    /// answered, or an error when none did.
    pub async fn join(&self, addrs: Vec<SocketAddr>) -> Result<usize, String> {
        self.ask(|reply| Command::Join(addrs, reply)).await
    }

    /// Leaves gracefully; returns when the leave has been gossiped (or
    /// after a timeout).
    pub async fn leave(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Leave(tx))
            .await
            .map_err(|_| "gossip has stopped".to_string())?;
        match tokio::time::timeout(LEAVE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("gossip has stopped".into()),
            Err(_) => Err("timed out waiting for the leave to propagate".into()),
        }
    }

    /// Declares a failed member left (Consul's `force-leave`); with `prune`
    /// it is erased from the member list at once.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), String> {
        self.ask(|reply| Command::ForceLeave {
            node: node.to_string(),
            prune,
            reply,
        })
        .await
    }

    /// Fires a user event to the pool.
    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), String> {
        self.ask(|reply| Command::UserEvent {
            name: name.to_string(),
            payload: payload.to_vec(),
            coalesce,
            reply,
        })
        .await
    }

    /// serf's events from now on. A subscriber that falls more than
    /// `EVENT_SLOTS` behind misses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<SerfEvent> {
        self.events.subscribe()
    }
}

/// Resolves `host[:port]` (port defaults to `default_port`) for a join.
pub async fn resolve(addr: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let target = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    let mut found = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("{addr:?} resolves to no address"))
}

/// What the accept loop and stream tasks share with the driver.
#[derive(Clone)]
struct Shared {
    /// memberlist's `EnableCompression`, as core packs packets for it.
    compress: bool,
    label: String,
    keyring: KeyringCell,
    encryption: Encryption,
    tcp_timeout: StdDuration,
    inward: mpsc::Sender<Inward>,
    stats: Arc<TransportStats>,
    bad_log: Arc<Mutex<BadLog>>,
}

impl Shared {
    /// The keyring as it is now (stream tasks take one per stream).
    fn keyring(&self) -> Option<Arc<Keyring>> {
        self.keyring.get()
    }

    fn inbound<'a>(&'a self, keyring: Option<&'a Keyring>) -> Inbound<'a> {
        let mut inbound = Inbound::new(&self.label, keyring);
        inbound.verify_incoming = self.encryption.verify_incoming;
        inbound
    }

    fn outbound<'a>(&'a self, keyring: Option<&'a Keyring>) -> Outbound<'a> {
        let keyring = keyring.filter(|_| self.encryption.verify_outgoing);
        Outbound {
            compress: self.compress,
            ..Outbound::new(&self.label, keyring)
        }
    }

    /// Counts bad input and logs it, at most once per
    /// `BAD_INPUT_LOG_EVERY`.
    fn bad(&self, counter: &AtomicU64, what: &str, from: SocketAddr, why: &dyn std::fmt::Display) {
        counter.fetch_add(1, Ordering::Relaxed);
        let Ok(mut log) = self.bad_log.lock() else {
            return;
        };
        log.suppressed += 1;
        let now = std::time::Instant::now();
        if log
            .last
            .is_some_and(|at| now.duration_since(at) < BAD_INPUT_LOG_EVERY)
        {
            return;
        }
        let also = log.suppressed - 1;
        log.suppressed = 0;
        log.last = Some(now);
        drop(log);
        let tail = if also > 0 {
            format!(" ({also} more bad inputs since the last report)")
        } else {
            String::new()
        };
        crate::log::warn(&format!("gossip: dropped {what} from {from}: {why}{tail}"));
    }
}

#[derive(Default)]
struct BadLog {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

struct Driver {
    serf: Serf,
    udp: UdpSocket,
    rng: Rng,
    shared: Shared,
    events: broadcast::Sender<SerfEvent>,
    active_join: Option<JoinReply>,
    queued_joins: VecDeque<(Vec<SocketAddr>, JoinReply)>,
    leave_waiters: Vec<oneshot::Sender<Result<(), String>>>,
    key_operations: BTreeMap<QueryId, KeyReply>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inward: mpsc::Receiver<Inward>,
    ) {
        let mut buf = vec![0u8; GOSSIP_PACKET_BYTES_MAX];
        loop {
            self.drain();
            let wake = self.serf.poll_timeout().map(clock::to_std);
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.on_packet(&buf[..n], from),
                    Err(e) => {
                        crate::log::debug(&format!("gossip: udp receive: {e}"));
                    }
                },
                Some(msg) = inward.recv() => self.on_inward(msg),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                () = timer => self.serf.handle_timeout(clock::now()),
            }
        }
    }

    fn on_packet(&mut self, bytes: &[u8], from: SocketAddr) {
        let stats = self.shared.stats.clone();
        stats.packets_received.fetch_add(1, Ordering::Relaxed);
        let inbound = self.shared.inbound(self.serf.keyring());
        let decoded = match decode_packet_with(bytes, &inbound) {
            Ok(d) => d,
            Err(e) => {
                self.shared.bad(&stats.bad_packets, "a packet", from, &e);
                return;
            }
        };
        if let Some(e) = decoded.part_errors.first() {
            self.shared
                .bad(&stats.bad_packets, "part of a packet", from, e);
        }
        let now = clock::now();
        for msg in decoded.messages {
            self.serf.handle_packet(now, from, msg);
        }
    }

    fn on_inward(&mut self, msg: Inward) {
        let now = clock::now();
        match msg {
            Inward::Request { from, msg, reply } => {
                let answer = match self.serf.handle_stream_request(now, from, msg) {
                    Ok(answer) => answer,
                    Err(kind) => {
                        let why = format!("unexpected {kind:?} on a stream");
                        self.shared
                            .bad(&self.shared.stats.bad_streams, "a stream", from, &why);
                        None
                    }
                };
                let bytes = answer.and_then(|m| self.encode_stream(&m, false).ok());
                let _ = reply.send(bytes);
            }
            Inward::Outcome { id, result } => match result {
                Ok(Message::PushPull(remote)) => self.serf.handle_push_pull_reply(now, id, remote),
                Ok(Message::Ack(ack)) => self.serf.handle_ping_stream_ack(now, id, ack),
                Ok(other) => {
                    crate::log::debug(&format!(
                        "gossip: stream answered with {:?}",
                        other.message_type()
                    ));
                    self.shared
                        .stats
                        .stream_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.serf.handle_stream_failed(now, id);
                }
                Err(e) => {
                    crate::log::debug(&format!("gossip: stream failed: {e}"));
                    self.shared
                        .stats
                        .stream_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.serf.handle_stream_failed(now, id);
                }
            },
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = clock::now();
        match command {
            Command::Members(reply) => {
                let _ = reply.send(self.serf.members().cloned().collect());
            }
            Command::Join(addrs, reply) => {
                if self.active_join.is_some() {
                    self.queued_joins.push_back((addrs, reply));
                } else {
                    self.start_join(addrs, reply);
                }
            }
            Command::Leave(reply) => match self.serf.leave(now) {
                Ok(()) if self.serf.state() == tribune_core::gossip::SerfState::Left => {
                    let _ = reply.send(Ok(()));
                }
                Ok(()) => self.leave_waiters.push(reply),
                Err(tribune_core::gossip::SerfError::LeaveInProgress) => {
                    self.leave_waiters.push(reply)
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            Command::ForceLeave { node, prune, reply } => {
                let known = self.serf.members().any(|m| m.name == node);
                let result = match known {
                    true => {
                        self.serf.force_leave(now, &node, prune);
                        Ok(())
                    }
                    false => Err(format!("agent: No node found with name '{node}'")),
                };
                let _ = reply.send(result);
            }
            Command::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            } => {
                let result = self
                    .serf
                    .user_event(now, &name, &payload, coalesce)
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            Command::KeyOperation {
                op,
                relay_factor,
                reply,
            } => match self.serf.key_operation(now, &op, relay_factor) {
                Ok(id) => {
                    self.key_operations.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
        }
    }

    fn start_join(&mut self, addrs: Vec<SocketAddr>, reply: JoinReply) {
        match self.serf.join(clock::now(), &addrs, false) {
            Ok(()) => self.active_join = Some(reply),
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }

    fn drain(&mut self) {
        loop {
            while let Some(out) = self.serf.poll() {
                match out {
                    SerfOutput::Event(event) => self.on_event(event),
                    SerfOutput::Memberlist(output) => self.on_output(output),
                }
            }
            // A finished join lets the next queued one start, whose
            // outputs are drained on the next pass.
            if self.active_join.is_some() {
                return;
            }
            let Some((addrs, reply)) = self.queued_joins.pop_front() else {
                return;
            };
            self.start_join(addrs, reply);
        }
    }

    fn on_event(&mut self, event: SerfEvent) {
        match &event {
            SerfEvent::MemberJoin(m) => crate::log::info(&format!(
                "serf: EventMemberJoin: {} {}",
                m.name,
                m.addr.ip()
            )),
            SerfEvent::MemberFailed(m) => crate::log::info(&format!(
                "serf: EventMemberFailed: {} {}",
                m.name,
                m.addr.ip()
            )),
            SerfEvent::MemberLeave(m) => crate::log::info(&format!(
                "serf: EventMemberLeave: {} {}",
                m.name,
                m.addr.ip()
            )),
            SerfEvent::MemberReap(m) => {
                crate::log::info(&format!("serf: EventMemberReap: {}", m.name))
            }
            SerfEvent::JoinFinished { attempted, joined } => {
                if let Some(reply) = self.active_join.take() {
                    let result = if *joined > 0 || *attempted == 0 {
                        Ok(*joined)
                    } else {
                        Err(format!("failed to join any of {attempted} addresses"))
                    };
                    let _ = reply.send(result);
                }
            }
            SerfEvent::LeaveFinished => {
                for reply in self.leave_waiters.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            SerfEvent::KeyringChanged(ring) => self
                .shared
                .keyring
                .replace(ring, self.shared.encryption.keyring_file.as_deref()),
            SerfEvent::KeyOperationFinished { query, summary } => {
                if let Some(reply) = self.key_operations.remove(query) {
                    let _ = reply.send(Ok(summary.clone()));
                }
            }
            SerfEvent::MemberUpdate(_)
            | SerfEvent::User(_)
            | SerfEvent::Query(_)
            | SerfEvent::QueryAck { .. }
            | SerfEvent::QueryResponse { .. }
            | SerfEvent::QueryFinished(_) => {}
        }
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn on_output(&mut self, output: Output) {
        match output {
            Output::Packet { to, msgs } => {
                let crc = self.peer_takes_crc(to);
                let mut out = self.shared.outbound(self.serf.keyring());
                out.crc = crc;
                match encode_packet(&msgs, &out, &mut self.rng) {
                    Ok(bytes) => match self.udp.try_send_to(&bytes, to) {
                        Ok(_) => {
                            self.shared
                                .stats
                                .packets_sent
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.shared
                                .stats
                                .packets_dropped
                                .fetch_add(1, Ordering::Relaxed);
                            crate::log::debug(&format!("gossip: udp send to {to}: {e}"));
                        }
                    },
                    Err(e) => crate::log::warn(&format!("gossip: cannot encode a packet: {e}")),
                }
            }
            out @ (Output::OpenPushPull { .. } | Output::OpenPingStream { .. }) => {
                if let Some(stream) = out.into_stream() {
                    let left = stream.deadline.0.saturating_sub(clock::now().0);
                    let timeout = StdDuration::from_nanos(left);
                    self.open_stream(stream.id, stream.to, &stream.msg, timeout);
                }
            }
            // serf consumes memberlist's other outputs; coordinates
            // (PingComplete) are not kept yet.
            _ => {}
        }
    }

    /// memberlist adds a CRC for peers whose protocol max is at least 5;
    /// an address it does not know yet (a join) gets none.
    fn peer_takes_crc(&self, to: SocketAddr) -> bool {
        self.serf
            .memberlist()
            .members()
            .any(|m| m.addr == to && m.protocol_max() >= 5)
    }

    fn encode_stream(&mut self, msg: &Message, with_label: bool) -> Result<Vec<u8>, WireError> {
        let out = self.shared.outbound(self.serf.keyring());
        let mut bytes = if with_label {
            label_header(&self.shared.label)?
        } else {
            Vec::new()
        };
        bytes.extend(encode_stream(msg, &out, &mut self.rng)?);
        Ok(bytes)
    }

    fn open_stream(&mut self, id: StreamId, to: SocketAddr, msg: &Message, timeout: StdDuration) {
        let shared = self.shared.clone();
        let bytes = match self.encode_stream(msg, true) {
            Ok(b) => b,
            Err(e) => {
                crate::log::warn(&format!("gossip: cannot encode a stream message: {e}"));
                self.serf.handle_stream_failed(clock::now(), id);
                return;
            }
        };
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, exchange(to, &bytes, &shared)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer from {to} within {timeout:?}")),
            };
            let _ = shared.inward.send(Inward::Outcome { id, result }).await;
        });
    }
}

/// Dials `to`, sends `bytes`, reads the one-message answer.
async fn exchange(to: SocketAddr, bytes: &[u8], shared: &Shared) -> Result<Message, String> {
    let mut stream = TcpStream::connect(to)
        .await
        .map_err(|e| format!("connect {to}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(bytes)
        .await
        .map_err(|e| format!("write to {to}: {e}"))?;
    let mut buf = Vec::new();
    // The answer carries no label header.
    let keyring = shared.keyring();
    read_message(
        &mut stream,
        &mut buf,
        0,
        &shared.inbound(keyring.as_deref()),
    )
    .await
}

/// Reads from `stream` into `buf` until the message starting at `start`
/// is whole, and decodes it. `stream_need` refuses anything over the
/// stream limits before it is buffered.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    start: usize,
    inbound: &Inbound<'_>,
) -> Result<Message, String> {
    loop {
        let need = match stream_need(&buf[start..], inbound).map_err(|e| e.to_string())? {
            StreamNeed::Complete(n) => {
                let (msg, _) =
                    decode_stream(&buf[start..start + n], inbound).map_err(|e| e.to_string())?;
                return Ok(msg);
            }
            StreamNeed::More(need) => start + need,
        };
        fill(stream, buf, need).await?;
    }
}

/// Reads until `buf` holds at least `len` bytes.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<(), String> {
    let mut chunk = vec![0u8; READ_CHUNK];
    while buf.len() < len {
        let want = (len - buf.len()).clamp(1, READ_CHUNK);
        let n = stream
            .read(&mut chunk[..want])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed mid-message".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, rpc: Option<RpcHook>, shared: Shared) {
    let slots = Arc::new(Semaphore::new(INBOUND_STREAMS_MAX));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                crate::log::warn(&format!("gossip: accept failed: {e}"));
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let rpc = rpc.clone();
        let shared = shared.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(1)) => {}
                _ => return,
            }
            if first[0] == tribune_core::rpc_frame::RPC_FRAME_MAGIC[0] {
                match rpc {
                    Some(hook) => hook(stream),
                    None => crate::log::debug(&format!(
                        "gossip: {from} sent an RPC frame, which this agent does not serve"
                    )),
                }
                return;
            }
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let timeout = shared.tcp_timeout;
            match tokio::time::timeout(timeout, serve_stream(stream, from, &shared)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => shared.bad(&shared.stats.bad_streams, "a stream", from, &e),
                Err(_) => shared.bad(
                    &shared.stats.bad_streams,
                    "a stream",
                    from,
                    &format!("not finished within {timeout:?}"),
                ),
            }
        });
    }
}

/// One inbound memberlist stream: label header, one message, our answer.
async fn serve_stream(
    mut stream: TcpStream,
    from: SocketAddr,
    shared: &Shared,
) -> Result<(), String> {
    let keyring = shared.keyring();
    let inbound = shared.inbound(keyring.as_deref());
    let mut buf = Vec::new();
    let start = loop {
        match stream_start(&buf, &inbound).map_err(|e| e.to_string())? {
            StreamStart::Ready { header_len, .. } => break header_len,
            StreamStart::More(need) => fill(&mut stream, &mut buf, need).await?,
        }
    };
    let msg = read_message(&mut stream, &mut buf, start, &inbound).await?;
    let (reply, answer) = oneshot::channel();
    shared
        .inward
        .send(Inward::Request { from, msg, reply })
        .await
        .map_err(|_| "gossip has stopped".to_string())?;
    if let Ok(Some(bytes)) = answer.await {
        stream
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let _ = stream.shutdown().await;
    }
    Ok(())
}

//! SWIM membership with Lifeguard, behaving like HashiCorp memberlist,
//! as a sans-I/O state machine.
//!
//! Data flow:
//!
//! ```text
//!  shell                         Memberlist                          shell
//!  packet --handle_packet------> probe / ack / alive / suspect / dead
//!  stream --handle_push_pull---> merge table, answer local state
//!  tick   --handle_timeout-----> probe round, indirect probes,   --poll--> Packet{to, msgs}
//!                                suspicion timers, gossip,                 OpenPushPull / OpenPingStream
//!                                push/pull, leave deadline                 Event(Join/Update/Leave)
//!                                                                          UserMessage, PingComplete, ...
//! ```
//!
//! Driving contract: after `new` and after every `handle_*`/`join`/
//! `leave`/`update_meta`/`send_user_broadcast`, drain [`Memberlist::poll`]
//! until it returns `None`; call [`Memberlist::handle_timeout`] when
//! [`Memberlist::poll_timeout`] is due. Streams are correlated by
//! [`StreamId`]: each `Open*` output must be answered by exactly one of
//! `handle_push_pull_reply`, `handle_ping_stream_ack` or
//! `handle_stream_failed` (late answers are ignored and counted).
//!
//! The protocol follows memberlist's `state.go`: round-robin probes over a
//! shuffled member list, indirect probes with nacks and a stream ping in
//! parallel, suspicion with Lifeguard's confirmations, incarnation rules
//! for alive/suspect/dead, refutation, gossip of a transmit-limited queue
//! and periodic push/pull. Member-facing details live in `swim_state.rs`
//! (the table rules) and `swim_probe.rs` (failure detection).

use super::awareness::Awareness;
use super::broadcast::{BroadcastQueue, Pick};
use super::codec::{encode_message, packet_payload_len};
use super::config::{
    push_pull_scale, Config, COMPOUND_HEADER_BYTES, COMPOUND_PART_BYTES, COMPRESSED_FILL_FACTOR,
    META_BYTES_MAX, USER_BROADCASTS_QUEUED_MAX,
};
use super::message::{Ack, Message, NodeState, Ping, PushPull};
use super::suspicion::Suspicion;
use crate::limits::GOSSIP_COMPOUND_PARTS_MAX;
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, VecDeque};

pub use super::swim_types::{
    LocalNode, Member, MemberEvent, MemberlistError, OpenStream, Output, Stats, StreamId,
};
use std::fmt;
use std::net::SocketAddr;

/// A probe in flight (memberlist runs one at a time).
#[derive(Clone, Debug)]
pub(super) struct Probe {
    pub(super) ping: Ping,
    pub(super) node: String,
    pub(super) addr: SocketAddr,
    /// Incarnation and protocol of the target when the probe started.
    pub(super) incarnation: u32,
    pub(super) protocol_max: u8,
    pub(super) sent: Instant,
    /// End of the direct phase; `None` once indirect probes went out.
    pub(super) indirect_at: Option<Instant>,
    /// End of the probe: the awareness-scaled probe interval.
    pub(super) deadline: Instant,
    pub(super) expected_nacks: u32,
    pub(super) nacks: u32,
    pub(super) fallback: Fallback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fallback {
    NotTried,
    Pending(StreamId),
    Contacted,
    Failed,
}

/// An indirect probe we run for another member.
#[derive(Clone, Debug)]
pub(super) struct Forward {
    pub(super) origin_seq: u32,
    pub(super) reply_to: SocketAddr,
    pub(super) expires: Instant,
    pub(super) send_nack: bool,
}

#[derive(Clone, Debug)]
pub(super) enum PendingStream {
    PushPull {
        to: SocketAddr,
        join: bool,
        opened: Instant,
    },
    FallbackPing {
        seq_no: u32,
    },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct LeaveWait {
    pub(super) token: u64,
    pub(super) deadline: Option<Instant>,
}

const LEAVE_NOTIFY_TOKEN: u64 = 1;

/// The membership state machine. See the module docs for the driving
/// contract.
pub struct Memberlist {
    pub(super) config: Config,
    pub(super) local: LocalNode,
    pub(super) rng: Rng,
    pub(super) members: BTreeMap<String, Member>,
    /// Probe order: a shuffled permutation of `members`' names.
    pub(super) probe_order: Vec<String>,
    pub(super) probe_index: usize,
    pub(super) incarnation: u32,
    pub(super) seq_no: u32,
    pub(super) awareness: Awareness,
    pub(super) suspicions: BTreeMap<String, Suspicion>,
    pub(super) broadcasts: BroadcastQueue,
    pub(super) user_broadcasts: BroadcastQueue,
    pub(super) probe: Option<Probe>,
    /// A probe tick arrived while a probe was running; memberlist's ticker
    /// keeps one such tick and starts the next probe as soon as the
    /// current one ends.
    pub(super) probe_tick_pending: bool,
    pub(super) forwards: BTreeMap<u32, Forward>,
    pub(super) streams: BTreeMap<StreamId, PendingStream>,
    pub(super) next_stream_id: u64,
    pub(super) next_probe_at: Instant,
    pub(super) next_gossip_at: Option<Instant>,
    pub(super) next_push_pull_at: Option<Instant>,
    /// One push/pull a probe interval after a successful join (see
    /// `handle_push_pull_reply`).
    pub(super) catch_up_push_pull_at: Option<Instant>,
    pub(super) left: bool,
    pub(super) leave_wait: Option<LeaveWait>,
    pub(super) ack_payload: Vec<u8>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) stats: Stats,
}

impl fmt::Debug for Memberlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memberlist")
            .field("local", &self.local.name)
            .field("members", &self.members.len())
            .field("incarnation", &self.incarnation)
            .field("awareness", &self.awareness.score())
            .finish_non_exhaustive()
    }
}

impl Memberlist {
    /// Starts a one-member cluster at `now`: we are alive at incarnation 1,
    /// and our alive message is queued (memberlist's `setAlive`). Timers
    /// start with a random stagger so members don't probe in lockstep.
    pub fn new(
        now: Instant,
        config: Config,
        local: LocalNode,
        seed: u64,
    ) -> Result<Memberlist, MemberlistError> {
        if local.meta.len() > META_BYTES_MAX {
            return Err(MemberlistError::MetaTooLarge {
                len: local.meta.len(),
            });
        }
        let mut rng = Rng::from_seed(seed);
        let next_probe_at = now + stagger(&mut rng, config.probe_interval);
        let next_gossip_at = (config.gossip_interval > Duration::ZERO && config.gossip_nodes > 0)
            .then(|| now + stagger(&mut rng, config.gossip_interval));
        let next_push_pull_at = (config.push_pull_interval > Duration::ZERO)
            .then(|| now + stagger(&mut rng, config.push_pull_interval));
        let mut list = Memberlist {
            awareness: Awareness::new(config.awareness_max_multiplier),
            config,
            local,
            rng,
            members: BTreeMap::new(),
            probe_order: Vec::new(),
            probe_index: 0,
            incarnation: 0,
            seq_no: 0,
            suspicions: BTreeMap::new(),
            broadcasts: BroadcastQueue::new(),
            user_broadcasts: BroadcastQueue::new(),
            probe: None,
            probe_tick_pending: false,
            forwards: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_stream_id: 0,
            next_probe_at,
            next_gossip_at,
            next_push_pull_at,
            catch_up_push_pull_at: None,
            left: false,
            leave_wait: None,
            ack_payload: Vec::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        };
        list.announce_self(now);
        Ok(list)
    }

    // ----- getters -----

    pub fn local_name(&self) -> &str {
        &self.local.name
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Our current incarnation number.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Lifeguard's health score (0 = healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// Every member we know, ourselves included, in name order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Members not dead or left, ourselves included (memberlist's
    /// `NumMembers`).
    pub fn num_alive(&self) -> usize {
        self.members
            .values()
            .filter(|m| !m.is_dead_or_left())
            .count()
    }

    /// memberlist's `estNumNodes`: table size, recent dead included.
    pub fn estimated_cluster_size(&self) -> usize {
        self.members.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Broadcasts (membership, user) still waiting to be gossiped.
    pub fn queued_broadcasts(&self) -> (usize, usize) {
        (self.broadcasts.len(), self.user_broadcasts.len())
    }

    // ----- inputs -----

    /// Asks the shell to push/pull with each address (memberlist's `Join`);
    /// each outcome comes back as `Output::JoinResult`.
    pub fn join(&mut self, now: Instant, addrs: &[SocketAddr]) {
        for &to in addrs {
            self.open_push_pull(now, to, true);
        }
    }

    /// One message of a packet from `from` (the codec splits compounds).
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        self.stats.messages_received += 1;
        match msg {
            Message::Ping(ping) => self.on_ping(from, ping),
            Message::IndirectPing(ind) => self.on_indirect_ping(now, from, ind),
            Message::Ack(ack) => self.on_ack(now, ack),
            Message::Nack(nack) => self.on_nack(nack),
            Message::Alive(alive) => self.alive_node(now, &alive, false, None),
            Message::Suspect(suspect) => self.suspect_node(now, &suspect),
            Message::Dead(dead) => self.dead_node(now, &dead, None),
            Message::User(bytes) => self.outputs.push_back(Output::UserMessage(bytes)),
            Message::PushPull(_) | Message::Err(_) => self.stats.unexpected_messages += 1,
        }
        self.after_mutation();
    }

    /// A peer opened a push/pull stream: answer with our state (as it was
    /// before the merge, like memberlist) and merge theirs.
    pub fn handle_push_pull(
        &mut self,
        now: Instant,
        from: SocketAddr,
        remote: PushPull,
    ) -> PushPull {
        let _ = from;
        let reply = self.local_state(remote.join);
        if !self.merge_remote_state(now, remote) {
            self.stats.incompatible_push_pulls += 1;
        }
        self.after_mutation();
        reply
    }

    /// The answer to one of our `OpenPushPull` streams.
    pub fn handle_push_pull_reply(&mut self, now: Instant, id: StreamId, remote: PushPull) {
        match self.streams.remove(&id) {
            Some(PendingStream::PushPull { to, join, .. }) => {
                let ok = self.merge_remote_state(now, remote);
                if !ok {
                    self.stats.incompatible_push_pulls += 1;
                }
                if join {
                    self.outputs.push_back(Output::JoinResult { to, ok });
                    // tribune's addition: one more full exchange a probe
                    // interval later. Members that join at about the same
                    // time gossip their alive messages while we are still
                    // unknown to most of the pool, so a few can miss us
                    // before their retransmissions run out; memberlist
                    // leaves that to the periodic push/pull (30-60 s at
                    // these sizes). Seen as a 6.4 s tail among 60 members
                    // joining 13 ms apart in virtual time.
                    if ok && self.config.push_pull_interval > Duration::ZERO {
                        self.catch_up_push_pull_at = Some(now + self.config.probe_interval);
                    }
                }
            }
            Some(other) => {
                // A push/pull answer on a ping stream: the peer is confused.
                self.streams.insert(id, other);
                self.stats.unexpected_messages += 1;
            }
            None => self.stats.unknown_streams += 1,
        }
        self.after_mutation();
    }

    /// A peer's stream ping (memberlist answers an ack on the stream);
    /// `None` when the ping names another node.
    pub fn handle_ping_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ping: Ping,
    ) -> Option<Ack> {
        let _ = (now, from);
        self.stats.messages_received += 1;
        if !ping.node.is_empty() && ping.node != self.local.name {
            self.stats.pings_for_other_node += 1;
            return None;
        }
        Some(Ack {
            seq_no: ping.seq_no,
            payload: Vec::new(),
        })
    }

    /// The ack our fallback stream ping got back.
    pub fn handle_ping_stream_ack(&mut self, now: Instant, id: StreamId, ack: Ack) {
        let _ = now;
        match self.streams.remove(&id) {
            Some(PendingStream::FallbackPing { seq_no }) => {
                let contacted = ack.seq_no == seq_no;
                if !contacted {
                    self.stats.unknown_ack_seq += 1;
                }
                self.settle_fallback(id, contacted);
            }
            Some(other) => {
                self.streams.insert(id, other);
                self.stats.unexpected_messages += 1;
            }
            None => self.stats.unknown_streams += 1,
        }
        self.after_mutation();
    }

    /// A stream we asked for could not be opened or broke.
    pub fn handle_stream_failed(&mut self, now: Instant, id: StreamId) {
        let _ = now;
        match self.streams.remove(&id) {
            Some(PendingStream::PushPull { to, join, .. }) => {
                self.stats.push_pull_failures += 1;
                if join {
                    self.outputs.push_back(Output::JoinResult { to, ok: false });
                }
            }
            Some(PendingStream::FallbackPing { .. }) => self.settle_fallback(id, false),
            None => self.stats.unknown_streams += 1,
        }
        self.after_mutation();
    }

    /// Leaves gracefully: a `dead` about ourselves from ourselves, which
    /// others record as `Left`. `Output::LeaveFinished` follows once that
    /// message has been transmitted its full count, or after `timeout`
    /// (zero waits without limit), or at once when nobody else is alive.
    pub fn leave(&mut self, now: Instant, timeout: Duration) {
        if self.left {
            return;
        }
        self.left = true;
        let dead = super::message::Dead {
            incarnation: self.incarnation,
            node: self.local.name.clone(),
            from: self.local.name.clone(),
        };
        self.dead_node(now, &dead, Some(LEAVE_NOTIFY_TOKEN));
        if self.any_alive_peer() {
            self.leave_wait = Some(LeaveWait {
                token: LEAVE_NOTIFY_TOKEN,
                deadline: (timeout > Duration::ZERO).then(|| now + timeout),
            });
        } else {
            self.outputs.push_back(Output::LeaveFinished {
                broadcast_sent: true,
            });
        }
        self.after_mutation();
    }

    /// New metadata: a new incarnation and an alive broadcast
    /// (memberlist's `UpdateNode`).
    pub fn update_meta(&mut self, now: Instant, meta: Vec<u8>) -> Result<(), MemberlistError> {
        if meta.len() > META_BYTES_MAX {
            return Err(MemberlistError::MetaTooLarge { len: meta.len() });
        }
        if self.left {
            return Err(MemberlistError::Left);
        }
        self.local.meta = meta;
        self.announce_self(now);
        self.after_mutation();
        Ok(())
    }

    /// Queues an opaque message (serf's) to gossip to every member.
    pub fn send_user_broadcast(&mut self, bytes: Vec<u8>) -> Result<(), MemberlistError> {
        let msg = Message::User(bytes);
        let len = encode_message(&msg).len();
        let budget = self.config.packet_budget_bytes();
        if len + COMPOUND_PART_BYTES > budget {
            return Err(MemberlistError::BroadcastTooLarge { len, budget });
        }
        self.user_broadcasts.queue(None, msg, None);
        self.user_broadcasts.prune(USER_BROADCASTS_QUEUED_MAX);
        Ok(())
    }

    /// Whether `bytes` still waits in the user broadcast queue: a queued
    /// message leaves it after its last transmission (or when pruned), so
    /// serf's graceful leave waits on this for its leave intent the way
    /// serf waits on a broadcast's notify channel.
    pub fn user_broadcast_queued(&self, bytes: &[u8]) -> bool {
        self.user_broadcasts
            .iter()
            .any(|(_, msg)| matches!(msg, Message::User(b) if b.as_slice() == bytes))
    }

    /// The payload our acks carry (serf puts its coordinate here).
    pub fn set_ack_payload(&mut self, payload: Vec<u8>) {
        self.ack_payload = payload;
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_probe(now);
        self.expire_forwards(now);
        self.expire_suspicions(now);
        self.expire_streams(now);
        if now >= self.next_probe_at {
            let interval = self.config.probe_interval.max(Duration(1));
            while self.next_probe_at <= now {
                self.next_probe_at = self.next_probe_at + interval;
            }
            if self.probe.is_some() {
                self.probe_tick_pending = true;
            } else {
                self.probe_next(now);
            }
        }
        if self.next_gossip_at.is_some_and(|at| now >= at) {
            let interval = self.config.gossip_interval;
            self.next_gossip_at = self.next_gossip_at.map(|at| next_tick(at, interval, now));
            self.gossip(now);
        }
        if self.catch_up_push_pull_at.is_some_and(|at| now >= at) {
            self.catch_up_push_pull_at = None;
            self.periodic_push_pull(now);
        }
        if self.next_push_pull_at.is_some_and(|at| now >= at) {
            let interval = push_pull_scale(self.config.push_pull_interval, self.members.len());
            self.next_push_pull_at = Some(now + interval);
            self.periodic_push_pull(now);
        }
        if let Some(wait) = self.leave_wait {
            if wait.deadline.is_some_and(|d| now >= d) {
                self.leave_wait = None;
                self.outputs.push_back(Output::LeaveFinished {
                    broadcast_sent: false,
                });
            }
        }
        self.after_mutation();
    }

    // ----- outputs -----

    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = self
            .probe
            .as_ref()
            .map(|p| p.indirect_at.unwrap_or(p.deadline).min(p.deadline));
        let forwards = self.forwards.values().map(|f| f.expires).min();
        let suspicions = self.suspicions.values().map(Suspicion::deadline).min();
        let leave = self.leave_wait.and_then(|w| w.deadline);
        [
            Some(self.next_probe_at),
            probe,
            forwards,
            suspicions,
            self.next_gossip_at,
            self.next_push_pull_at,
            self.catch_up_push_pull_at,
            leave,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- internals shared by the submodules -----

    /// Packs `msg` and as many queued broadcasts as fit into one packet.
    pub(super) fn send_with_piggyback(&mut self, to: SocketAddr, msg: Message) {
        let msgs = self.fill_packet(Some(msg));
        self.outputs.push_back(Output::Packet { to, msgs });
    }

    /// memberlist's `getBroadcasts`: membership news first, then user
    /// messages in the room left, after `lead` (a probe message) if there
    /// is one. With compression on, the packet is filled by its compressed
    /// size: Consul's tags make every alive message about 170 bytes, of
    /// which the keys and most values repeat from member to member, so a
    /// 1,400-byte packet carries about twice as many of them (memberlist
    /// fills by the uncompressed size; its receivers decompress without a
    /// size limit, so they take these packets).
    pub(super) fn fill_packet(&mut self, lead: Option<Message>) -> Vec<Message> {
        let n = self.members.len();
        let mult = self.config.retransmit_mult;
        let compress = self.config.enable_compression;
        let budget = self.config.packet_budget_bytes();
        let lead_bytes = lead.as_ref().map(encode_message);
        let lead_cost = lead_bytes
            .as_ref()
            .map_or(0, |b| b.len() + COMPOUND_PART_BYTES);
        let room = budget.saturating_sub(lead_cost);
        let raw_room = if compress {
            room.saturating_mul(COMPRESSED_FILL_FACTOR)
        } else {
            room
        };
        let parts_max = GOSSIP_COMPOUND_PARTS_MAX - usize::from(lead.is_some());
        let member = self
            .broadcasts
            .select(COMPOUND_PART_BYTES, raw_room, parts_max);
        let cost = |picks: &[Pick]| -> usize {
            picks.iter().map(|p| p.bytes() + COMPOUND_PART_BYTES).sum()
        };
        let left = raw_room.saturating_sub(cost(&member));
        let user = if left > COMPOUND_PART_BYTES + 1 {
            self.user_broadcasts
                .select(COMPOUND_PART_BYTES, left, parts_max - member.len())
        } else {
            Vec::new()
        };
        // How many of the picks (member news, then user messages) to send:
        // all that fit uncompressed, and with compression the longest
        // prefix whose compressed packet fits.
        let all: Vec<Pick> = member.iter().chain(&user).copied().collect();
        let mut keep = 0;
        let mut used = 0;
        for p in &all {
            used += p.bytes() + COMPOUND_PART_BYTES;
            if used > room {
                break;
            }
            keep += 1;
        }
        if keep < all.len() {
            let mut parts: Vec<&[u8]> = lead_bytes.as_deref().into_iter().collect();
            let lead_parts = parts.len();
            parts.extend(
                self.broadcasts
                    .encoded(&member)
                    .chain(self.user_broadcasts.encoded(&user)),
            );
            keep = longest_fitting_prefix(&parts, lead_parts, keep, compress, budget);
        }
        let member_kept = keep.min(member.len());
        let mut msgs: Vec<Message> = lead.into_iter().collect();
        msgs.extend(self.broadcasts.send(&member[..member_kept], mult, n));
        msgs.extend(
            self.user_broadcasts
                .send(&user[..keep - member_kept], mult, n),
        );
        msgs
    }

    pub(super) fn next_seq_no(&mut self) -> u32 {
        self.seq_no = self.seq_no.wrapping_add(1);
        self.seq_no
    }

    pub(super) fn new_stream_id(&mut self) -> StreamId {
        self.next_stream_id += 1;
        StreamId(self.next_stream_id)
    }

    pub(super) fn emit(&mut self, event: MemberEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn open_push_pull(&mut self, now: Instant, to: SocketAddr, join: bool) {
        let id = self.new_stream_id();
        let opened = now;
        self.streams
            .insert(id, PendingStream::PushPull { to, join, opened });
        let state = self.local_state(join);
        let deadline = now + self.config.tcp_timeout;
        self.outputs.push_back(Output::OpenPushPull {
            id,
            to,
            state,
            deadline,
        });
    }

    /// Our table as a push/pull, in probe order like memberlist.
    fn local_state(&self, join: bool) -> PushPull {
        PushPull {
            join,
            nodes: self
                .probe_order
                .iter()
                .filter_map(|name| self.members.get(name))
                .map(Member::push_state)
                .collect(),
            user_state: Vec::new(),
        }
    }

    /// Verifies versions, merges members, surfaces the delegate state.
    /// False when the remote cluster's protocol versions are incompatible.
    fn merge_remote_state(&mut self, now: Instant, remote: PushPull) -> bool {
        if !self.protocol_compatible(&remote.nodes) {
            return false;
        }
        self.merge_state(now, &remote.nodes);
        if !remote.user_state.is_empty() {
            let nodes = remote
                .nodes
                .iter()
                .map(|n| (n.name.clone(), (n.state, n.incarnation)))
                .collect();
            self.outputs.push_back(Output::RemoteUserState {
                join: remote.join,
                state: remote.user_state,
                nodes,
            });
        }
        true
    }

    /// memberlist's `gossip`: queued broadcasts to a few random members,
    /// recently dead ones included so they can refute.
    fn gossip(&mut self, now: Instant) {
        let dead_window = self.config.gossip_to_the_dead_time;
        let local = self.local.name.clone();
        let targets = self.k_random_members(self.config.gossip_nodes, |m| {
            m.name == local
                || match m.state {
                    NodeState::Alive | NodeState::Suspect => false,
                    NodeState::Dead => now.saturating_duration_since(m.state_change) > dead_window,
                    NodeState::Left => true,
                }
        });
        for to in targets {
            let msgs = self.fill_packet(None);
            if msgs.is_empty() {
                return;
            }
            self.outputs.push_back(Output::Packet { to, msgs });
        }
    }

    /// Push/pull streams the shell never settled count as failed after
    /// twice the stream timeout, so the table of open streams stays bounded
    /// even with a careless shell.
    fn expire_streams(&mut self, now: Instant) {
        let limit = self.config.tcp_timeout.saturating_mul(2);
        let stale: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| match s {
                PendingStream::PushPull { opened, .. } => {
                    now.saturating_duration_since(*opened) > limit
                }
                PendingStream::FallbackPing { .. } => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(PendingStream::PushPull { to, join, .. }) = self.streams.remove(&id) {
                self.stats.push_pull_failures += 1;
                if join {
                    self.outputs.push_back(Output::JoinResult { to, ok: false });
                }
            }
        }
    }

    /// memberlist's `pushPull`: a full exchange with one random live member.
    fn periodic_push_pull(&mut self, now: Instant) {
        let local = self.local.name.clone();
        let targets = self.k_random_members(1, |m| m.name == local || m.state != NodeState::Alive);
        if let Some(&to) = targets.first() {
            self.open_push_pull(now, to, false);
        }
    }

    /// memberlist's `kRandomNodes`: up to `k` distinct members not
    /// excluded, as addresses. Small tables are shuffled and scanned so the
    /// search is exhaustive; large ones are sampled up to `3n` times.
    pub(super) fn k_random_members(
        &mut self,
        k: usize,
        exclude: impl Fn(&Member) -> bool,
    ) -> Vec<SocketAddr> {
        self.k_random_names(k, exclude)
            .iter()
            .filter_map(|name| self.members.get(name).map(|m| m.addr))
            .collect()
    }

    pub(super) fn k_random_names(
        &mut self,
        k: usize,
        exclude: impl Fn(&Member) -> bool,
    ) -> Vec<String> {
        let n = self.probe_order.len();
        let mut chosen: Vec<String> = Vec::with_capacity(k);
        let eligible =
            |list: &Memberlist, name: &String| list.members.get(name).is_some_and(|m| !exclude(m));
        if n < k * 3 {
            let mut order = self.probe_order.clone();
            shuffle(&mut self.rng, &mut order);
            chosen.extend(
                order
                    .into_iter()
                    .filter(|name| eligible(self, name))
                    .take(k),
            );
            return chosen;
        }
        for _ in 0..3 * n {
            if chosen.len() >= k {
                break;
            }
            let name = &self.probe_order[self.rng.below(n as u64) as usize];
            if eligible(self, name) && !chosen.contains(name) {
                chosen.push(name.clone());
            }
        }
        chosen
    }

    fn any_alive_peer(&self) -> bool {
        self.members
            .values()
            .any(|m| m.name != self.local.name && !m.is_dead_or_left())
    }

    /// Bookkeeping after every input: report a finished leave broadcast.
    fn after_mutation(&mut self) {
        let finished = self.broadcasts.take_finished();
        if let Some(wait) = self.leave_wait {
            if finished.contains(&wait.token) {
                self.leave_wait = None;
                self.outputs.push_back(Output::LeaveFinished {
                    broadcast_sent: true,
                });
            }
        }
    }

    /// Cheap structural checks; the simulator calls this after every step.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.probe_order.len(),
            self.members.len(),
            "probe order is a permutation of the member table"
        );
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.probe_order {
            assert!(
                self.members.contains_key(name),
                "probe order names a member"
            );
            assert!(seen.insert(name), "probe order has no duplicates");
        }
        let me = self
            .members
            .get(&self.local.name)
            .expect("the local node is always in its own table");
        assert_eq!(
            me.incarnation, self.incarnation,
            "local incarnation in sync"
        );
        if !self.left {
            assert_eq!(me.state, NodeState::Alive, "we never mark ourselves failed");
        }
        for name in self.suspicions.keys() {
            let state = self.members.get(name).map(|m| m.state);
            assert_eq!(
                state,
                Some(NodeState::Suspect),
                "suspicion timers only for suspects"
            );
        }
        assert!(self.awareness.score() < self.config.awareness_max_multiplier.max(1));
        self.broadcasts.check_invariants();
        self.user_broadcasts.check_invariants();
    }
}

/// A uniform delay in `0..interval`, memberlist's ticker stagger.
fn stagger(rng: &mut Rng, interval: Duration) -> Duration {
    if interval == Duration::ZERO {
        return Duration::ZERO;
    }
    Duration(rng.below(interval.as_nanos()))
}

/// The first tick of the grid `at + i * interval` after `now`.
fn next_tick(at: Instant, interval: Duration, now: Instant) -> Instant {
    let step = interval.max(Duration(1));
    let behind = now.saturating_duration_since(at).as_nanos() / step.as_nanos() + 1;
    at + step.saturating_mul(behind)
}

/// Fisher–Yates with our seeded generator (memberlist's `shuffleNodes`).
pub(super) fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// How many of `parts[skip..]` can follow `parts[..skip]` in one packet
/// whose payload (compressed if `compress` and smaller) stays within
/// `budget + COMPOUND_HEADER_BYTES`. The first `fits` of them are known to
/// fit. LZW's ratio changes slowly with the amount of input, so the
/// count the whole set's ratio suggests is close: start there and step,
/// each step one compression (about three per packet).
fn longest_fitting_prefix(
    parts: &[&[u8]],
    skip: usize,
    fits: usize,
    compress: bool,
    budget: usize,
) -> usize {
    let limit = budget + COMPOUND_HEADER_BYTES;
    let size = |k: usize| packet_payload_len(&parts[..skip + k], compress);
    let ok = |k: usize| size(k).is_some_and(|l| l <= limit);
    let all = parts.len() - skip;
    let Some(whole) = size(all) else {
        return fits;
    };
    if whole <= limit {
        return all;
    }
    let guess = (all * limit / whole).clamp(fits, all - 1);
    let mut k = guess;
    if ok(k) {
        while k + 1 < all && ok(k + 1) {
            k += 1;
        }
    } else {
        // The guess does not fit: step down to the first count that does
        // (`fits` does).
        while k > fits {
            k -= 1;
            if ok(k) {
                break;
            }
        }
    }
    k
}

//! serf on top of memberlist, as a sans-I/O state machine ([`Serf`]).
//!
//! Data flow:
//!
//! ```text
//!  shell                        Serf                                  shell
//!  packet/stream/tick --------> Memberlist --Output--> pump:
//!                                 Event(Join/Update/Leave) -> member table --poll--> Event(MemberJoin..Reap)
//!                                 UserMessage -> intents, user events,      Event(User / Query)
//!                                                queries, relays            Memberlist(Packet / OpenPushPull /
//!                                 RemoteUserState -> merge (clocks,                    OpenPingStream / PingComplete)
//!                                                left members, events)
//!                                 OpenPushPull -> fill serf's push/pull
//!                                 JoinResult, LeaveFinished -> join/leave
//! ```
//!
//! Driving contract: the same as memberlist's. After `new` and after every
//! `handle_*`, `join`, `leave`, `force_leave`, `set_tags`, `user_event`
//! and `respond_query`, drain [`Serf::poll`] until `None`; call
//! [`Serf::handle_timeout`] when [`Serf::poll_timeout`] is due. Each
//! `SerfOutput::Memberlist(Open*)` is answered through the matching
//! `Serf::handle_*` (push/pull reply, ping-stream ack, stream failure).
//! Reliable user messages from memberlist's streams go to
//! [`Serf::handle_user_message`].
//!
//! The behaviour is serf's (`serf.go`, `delegate.go`): Lamport clocks for
//! intents, events and queries; join/leave intents buffered for members
//! memberlist hasn't told us about; status `alive → leaving → left` on a
//! graceful leave and `alive → failed` on a failure; user events
//! de-duplicated in a ring keyed by Lamport time and re-gossiped when new;
//! failed and left members reaped after their timeouts. serf's three
//! broadcast queues share memberlist's user broadcast queue here, which
//! serves fresh messages first just as serf's queues do.

use super::lamport::LamportClock;
use super::message::{Message, PushPull};
use super::serf::{self, encode_serf, encode_tags, BufferedEvents, SerfMessage};
use super::swim::{MemberEvent, Memberlist, Output, StreamId};
use super::swim_types::LocalNode;
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use super::crypto::Keyring;
pub use super::serf_keys::{KeyOperation, KeySummary};
use super::serf_query::OutgoingQuery;
pub use super::serf_types::{
    MemberStatus, QueryEvent, QueryId, QueryParams, SerfConfig, SerfError, SerfEvent, SerfMember,
    SerfOutput, SerfState, SerfStats, UserEventRecord, CONFLICT_QUERY, INSTALL_KEY_QUERY,
    INTERNAL_QUERY_PREFIX, LIST_KEYS_QUERY, PING_QUERY, REMOVE_KEY_QUERY, SERF_VSN,
    USER_EVENT_BYTES_MAX, USE_KEY_QUERY,
};

/// A member with serf's bookkeeping (`memberState`).
#[derive(Clone, Debug)]
pub(super) struct MemberState {
    pub(super) member: SerfMember,
    /// Lamport time of the last intent applied to this member.
    pub(super) status_ltime: u64,
    /// When it failed or left; reaping counts from here.
    pub(super) leave_time: Option<Instant>,
    /// While leaving: the peer's record of the life whose leave made it so
    /// (`Unknown` for a gossiped intent); see `Serf::handle_join_intent`.
    pub(super) leave_from: super::serf_members::Departed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntentKind {
    Join,
    Leave,
}

/// An intent about a member memberlist hasn't reported (`nodeIntent`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Intent {
    pub(super) kind: IntentKind,
    pub(super) ltime: u64,
    pub(super) seen: Instant,
    /// For a leave learnt from a peer's push/pull: the peer's memberlist
    /// record of the member. A member memberlist then reports alive after
    /// that record has come back since, and the leave is not applied.
    pub(super) departed: super::serf_members::Departed,
}

/// One `join` call: its addresses still waiting for a push/pull result.
#[derive(Clone, Debug)]
pub(super) struct JoinBatch {
    pub(super) pending: Vec<SocketAddr>,
    pub(super) attempted: usize,
    pub(super) joined: usize,
    pub(super) ignore_old: bool,
}

/// Where a graceful leave stands.
#[derive(Clone, Debug)]
pub(super) enum LeavePhase {
    /// Our leave intent is being gossiped; memberlist's leave starts when
    /// it has been sent its full count or at `deadline`.
    Intent { raw: Vec<u8>, deadline: Instant },
    /// memberlist is gossiping its dead-about-ourselves.
    Memberlist,
    /// Letting the news spread (`LeavePropagateDelay`).
    Propagate { until: Instant },
}

/// A query delivered to the owner that may still be answered.
#[derive(Clone, Debug)]
pub(super) struct PendingQuery {
    pub(super) to: SocketAddr,
    pub(super) source_node: String,
    pub(super) relay_factor: u8,
    pub(super) deadline: Instant,
}

/// The serf state machine. See the module docs for the driving contract.
pub struct Serf {
    pub(super) config: SerfConfig,
    pub(super) list: Memberlist,
    pub(super) local_name: String,
    pub(super) state: SerfState,
    pub(super) clock: LamportClock,
    pub(super) event_clock: LamportClock,
    pub(super) query_clock: LamportClock,
    pub(super) members: BTreeMap<String, MemberState>,
    pub(super) recent_intents: BTreeMap<String, Intent>,
    /// The user-event ring: slot `ltime % len` holds the events seen at
    /// that time (serf's `eventBuffer`).
    pub(super) event_buffer: Vec<Option<BufferedEvents>>,
    /// Events below this time are ignored (set by a join that ignores
    /// old events).
    pub(super) event_min_time: u64,
    /// The query ring: ids seen per Lamport time (serf's `queryBuffer`).
    pub(super) query_buffer: Vec<Option<(u64, Vec<u32>)>>,
    pub(super) pending_queries: BTreeMap<(u64, u32), PendingQuery>,
    /// Queries we started, collecting acks and answers until their
    /// deadline (serf's `queryResponse` map).
    pub(super) outgoing_queries: BTreeMap<QueryId, OutgoingQuery>,
    /// The gossip keyring (encryption on) or `None`.
    pub(super) keyring: Option<Keyring>,
    pub(super) joins: Vec<JoinBatch>,
    pub(super) leave: Option<LeavePhase>,
    /// Force-left members to erase once their leave had time to spread.
    pub(super) prunes: BTreeMap<String, Instant>,
    pub(super) next_reap_at: Instant,
    pub(super) next_reconnect_at: Instant,
    pub(super) rng: Rng,
    pub(super) outputs: VecDeque<SerfOutput>,
    pub(super) stats: SerfStats,
}

impl fmt::Debug for Serf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serf")
            .field("local", &self.local_name)
            .field("state", &self.state)
            .field("members", &self.members.len())
            .field("clock", &self.clock.time())
            .field("event_clock", &self.event_clock.time())
            .finish_non_exhaustive()
    }
}

impl Serf {
    /// Starts a one-member cluster: memberlist with our tags as meta and
    /// serf's version vector; every clock at 1 (serf's `Create`).
    pub fn new(
        now: Instant,
        config: SerfConfig,
        name: String,
        addr: SocketAddr,
        seed: u64,
    ) -> Result<Serf, SerfError> {
        if config.user_event_size_limit > USER_EVENT_BYTES_MAX {
            return Err(SerfError::Config("user event size limit exceeds 9 KiB"));
        }
        if config.event_buffer == 0 || config.query_buffer == 0 {
            return Err(SerfError::Config("event and query buffers need a slot"));
        }
        let meta = encode_tags(&config.tags).map_err(SerfError::Tags)?;
        let mut rng = Rng::from_seed(seed);
        let local = LocalNode {
            name: name.clone(),
            addr,
            meta,
            vsn: SERF_VSN,
        };
        let list = Memberlist::new(now, config.memberlist.clone(), local, rng.next_u64())?;
        let mut serf = Serf {
            keyring: config.keyring.clone(),
            event_buffer: vec![None; config.event_buffer],
            query_buffer: vec![None; config.query_buffer],
            next_reap_at: now + config.reap_interval.max(Duration(1)),
            next_reconnect_at: now + config.reconnect_interval.max(Duration(1)),
            config,
            list,
            local_name: name,
            state: SerfState::Alive,
            clock: LamportClock::new(),
            event_clock: LamportClock::new(),
            query_clock: LamportClock::new(),
            members: BTreeMap::new(),
            recent_intents: BTreeMap::new(),
            event_min_time: 0,
            pending_queries: BTreeMap::new(),
            outgoing_queries: BTreeMap::new(),
            joins: Vec::new(),
            leave: None,
            prunes: BTreeMap::new(),
            rng,
            outputs: VecDeque::new(),
            stats: SerfStats::default(),
        };
        serf.clock.increment();
        serf.event_clock.increment();
        serf.query_clock.increment();
        serf.pump(now);
        Ok(serf)
    }

    // ----- getters -----

    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    pub fn state(&self) -> SerfState {
        self.state
    }

    pub fn member(&self, name: &str) -> Option<&SerfMember> {
        self.members.get(name).map(|m| &m.member)
    }

    /// Every member serf knows, ourselves included, in name order.
    pub fn members(&self) -> impl Iterator<Item = &SerfMember> {
        self.members.values().map(|m| &m.member)
    }

    pub fn local_member(&self) -> &SerfMember {
        // We enter our own table in `new` and leave it only by reaping,
        // which skips us.
        &self.members[&self.local_name].member
    }

    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.config.tags
    }

    /// The member, event and query clocks' current times.
    pub fn clocks(&self) -> (u64, u64, u64) {
        (
            self.clock.time(),
            self.event_clock.time(),
            self.query_clock.time(),
        )
    }

    pub fn stats(&self) -> &SerfStats {
        &self.stats
    }

    /// The keyring to encrypt (primary key) and decrypt (every key) gossip
    /// with; `None` when encryption is off.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The memberlist underneath, for its table, stats and health.
    pub fn memberlist(&self) -> &Memberlist {
        &self.list
    }

    // ----- inputs: memberlist's, passed through -----

    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        self.list.handle_packet(now, from, msg);
        self.pump(now);
    }

    /// A peer's push/pull: answered with our state as it was before the
    /// merge (memberlist sends before it merges), serf's state included.
    pub fn handle_push_pull(
        &mut self,
        now: Instant,
        from: SocketAddr,
        remote: PushPull,
    ) -> PushPull {
        let mut reply = self.list.handle_push_pull(now, from, remote);
        reply.user_state = self.local_state_bytes();
        self.pump(now);
        reply
    }

    pub fn handle_push_pull_reply(&mut self, now: Instant, id: StreamId, remote: PushPull) {
        self.list.handle_push_pull_reply(now, id, remote);
        self.pump(now);
    }

    pub fn handle_ping_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ping: super::message::Ping,
    ) -> Option<super::message::Ack> {
        let ack = self.list.handle_ping_stream(now, from, ping);
        self.pump(now);
        ack
    }

    pub fn handle_ping_stream_ack(&mut self, now: Instant, id: StreamId, ack: super::message::Ack) {
        self.list.handle_ping_stream_ack(now, id, ack);
        self.pump(now);
    }

    pub fn handle_stream_failed(&mut self, now: Instant, id: StreamId) {
        self.list.handle_stream_failed(now, id);
        self.pump(now);
    }

    /// A memberlist user message that arrived on a stream (memberlist's
    /// reliable send); packets' user messages arrive via `handle_packet`.
    pub fn handle_user_message(&mut self, now: Instant, bytes: &[u8]) {
        self.on_user_message(now, bytes);
        self.pump(now);
    }

    /// The one message an inbound stream carried, dispatched as memberlist
    /// does: a push/pull or a ping is answered (`Ok(Some(answer))`), a user
    /// message is taken (`Ok(None)`); any other type is refused with its
    /// type, for the shell to count as bad input.
    pub fn handle_stream_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
    ) -> Result<Option<Message>, super::message::MessageType> {
        match msg {
            Message::PushPull(remote) => Ok(Some(Message::PushPull(
                self.handle_push_pull(now, from, remote),
            ))),
            Message::Ping(ping) => Ok(self.handle_ping_stream(now, from, ping).map(Message::Ack)),
            Message::User(bytes) => {
                self.handle_user_message(now, &bytes);
                Ok(None)
            }
            other => Err(other.message_type()),
        }
    }

    // ----- inputs: serf's own -----

    /// Joins through `addrs` (serf's `Join`). With `ignore_old`, user
    /// events the cluster had before this join are not replayed.
    /// `SerfEvent::JoinFinished` reports the outcome.
    pub fn join(
        &mut self,
        now: Instant,
        addrs: &[SocketAddr],
        ignore_old: bool,
    ) -> Result<(), SerfError> {
        if self.state != SerfState::Alive {
            return Err(SerfError::NotAlive);
        }
        if addrs.is_empty() {
            self.emit(SerfEvent::JoinFinished {
                attempted: 0,
                joined: 0,
            });
            return Ok(());
        }
        self.joins.push(JoinBatch {
            pending: addrs.to_vec(),
            attempted: addrs.len(),
            joined: 0,
            ignore_old,
        });
        self.list.join(now, addrs);
        self.pump(now);
        Ok(())
    }

    /// Leaves gracefully (serf's `Leave`): our leave intent is gossiped,
    /// then memberlist leaves, then after the propagation delay
    /// `SerfEvent::LeaveFinished`. Other members see us `left`.
    pub fn leave(&mut self, now: Instant) -> Result<(), SerfError> {
        match self.state {
            SerfState::Left => return Ok(()),
            SerfState::Leaving => return Err(SerfError::LeaveInProgress),
            SerfState::Alive => {}
        }
        self.state = SerfState::Leaving;
        let msg = serf::Leave {
            ltime: self.clock.time(),
            node: self.local_name.clone(),
            prune: false,
        };
        self.clock.increment();
        self.handle_leave_intent(now, &msg);
        if self.has_alive_members() {
            let raw = encode_serf(&SerfMessage::Leave(msg));
            self.broadcast(raw.clone());
            self.leave = Some(LeavePhase::Intent {
                raw,
                deadline: now + self.config.broadcast_timeout,
            });
        } else {
            self.start_memberlist_leave(now);
        }
        self.pump(now);
        Ok(())
    }

    /// Declares `node` left on its behalf (serf's `RemoveFailedNode`);
    /// with `prune` it is also erased at once (`-prune`). Returns without
    /// waiting for the broadcast, unlike serf.
    pub fn force_leave(&mut self, now: Instant, node: &str, prune: bool) {
        let msg = serf::Leave {
            ltime: self.clock.time(),
            node: node.to_owned(),
            prune,
        };
        self.clock.increment();
        self.handle_leave_intent(now, &msg);
        if self.has_alive_members() {
            self.broadcast(encode_serf(&SerfMessage::Leave(msg)));
        }
        self.pump(now);
    }

    /// New tags: memberlist announces them as our meta (serf's `SetTags`).
    pub fn set_tags(
        &mut self,
        now: Instant,
        tags: BTreeMap<String, String>,
    ) -> Result<(), SerfError> {
        let meta = encode_tags(&tags).map_err(SerfError::Tags)?;
        self.list.update_meta(now, meta)?;
        self.config.tags = tags;
        self.pump(now);
        Ok(())
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.list.handle_timeout(now);
        self.pump(now);
        if now >= self.next_reap_at {
            self.next_reap_at = now + self.config.reap_interval.max(Duration(1));
            self.reap(now);
        }
        if now >= self.next_reconnect_at {
            self.next_reconnect_at = now + self.config.reconnect_interval.max(Duration(1));
            self.reconnect(now);
        }
        let due: Vec<String> = self
            .prunes
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.prunes.remove(&name);
            self.erase_member(&name);
        }
        // Dropped at the deadline itself, which `poll_timeout` names:
        // keeping it would ask for a timeout at `now` again, forever.
        self.pending_queries.retain(|_, q| now < q.deadline);
        self.finish_due_queries(now);
        if let Some(LeavePhase::Propagate { until }) = self.leave {
            if now >= until {
                self.leave = None;
                self.state = SerfState::Left;
                self.emit(SerfEvent::LeaveFinished);
            }
        }
        self.pump(now);
    }

    // ----- outputs -----

    pub fn poll(&mut self) -> Option<SerfOutput> {
        self.outputs.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let leave = match self.leave {
            Some(LeavePhase::Intent { deadline, .. }) => Some(deadline),
            Some(LeavePhase::Propagate { until }) => Some(until),
            Some(LeavePhase::Memberlist) | None => None,
        };
        [
            self.list.poll_timeout(),
            Some(self.next_reap_at),
            Some(self.next_reconnect_at),
            self.prunes.values().min().copied(),
            self.pending_queries.values().map(|q| q.deadline).min(),
            self.outgoing_queries.values().map(|q| q.deadline).min(),
            leave,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- the pump: memberlist's outputs into serf -----

    /// Handles every memberlist output, and keeps a graceful leave moving.
    /// Handling may queue more memberlist work (re-broadcasts, the leave),
    /// so this loops until memberlist is quiet.
    pub(super) fn pump(&mut self, now: Instant) {
        loop {
            while let Some(out) = self.list.poll() {
                self.on_memberlist_output(now, out);
            }
            if !self.advance_leave(now) {
                break;
            }
        }
    }

    fn on_memberlist_output(&mut self, now: Instant, out: Output) {
        match out {
            Output::Event(MemberEvent::Join(m)) => self.handle_node_join(&m),
            Output::Event(MemberEvent::Update(m)) => self.handle_node_update(&m),
            Output::Event(MemberEvent::Leave(m)) => self.handle_node_leave(now, &m),
            Output::UserMessage(bytes) => self.on_user_message(now, &bytes),
            Output::RemoteUserState { join, state, nodes } => {
                self.merge_remote_state(now, join, &state, &nodes)
            }
            Output::JoinResult { to, ok } => self.on_join_result(now, to, ok),
            Output::LeaveFinished { .. } => {
                if matches!(self.leave, Some(LeavePhase::Memberlist)) {
                    self.leave = Some(LeavePhase::Propagate {
                        until: now + self.config.leave_propagate_delay,
                    });
                }
            }
            Output::OpenPushPull {
                id,
                to,
                mut state,
                deadline,
            } => {
                state.user_state = self.local_state_bytes();
                self.outputs
                    .push_back(SerfOutput::Memberlist(Output::OpenPushPull {
                        id,
                        to,
                        state,
                        deadline,
                    }));
            }
            other @ (Output::Packet { .. }
            | Output::OpenPingStream { .. }
            | Output::PingComplete { .. }) => {
                self.outputs.push_back(SerfOutput::Memberlist(other));
            }
        }
    }

    /// Moves a graceful leave from the intent phase to memberlist's leave
    /// once the intent is out; true when it did (memberlist has work).
    fn advance_leave(&mut self, now: Instant) -> bool {
        let Some(LeavePhase::Intent { raw, deadline }) = &self.leave else {
            return false;
        };
        if self.list.user_broadcast_queued(raw) && now < *deadline {
            return false;
        }
        self.start_memberlist_leave(now);
        true
    }

    fn start_memberlist_leave(&mut self, now: Instant) {
        self.leave = Some(LeavePhase::Memberlist);
        self.list.leave(now, self.config.broadcast_timeout);
    }

    fn on_join_result(&mut self, now: Instant, to: SocketAddr, ok: bool) {
        // Results of reconnect attempts belong to no batch.
        let Some(i) = self.joins.iter().position(|b| b.pending.contains(&to)) else {
            return;
        };
        let batch = &mut self.joins[i];
        if let Some(p) = batch.pending.iter().position(|a| *a == to) {
            batch.pending.swap_remove(p);
        }
        batch.joined += usize::from(ok);
        if !batch.pending.is_empty() {
            return;
        }
        let batch = self.joins.remove(i);
        if batch.joined > 0 && self.state == SerfState::Alive {
            self.broadcast_join(now, self.clock.time());
        }
        self.emit(SerfEvent::JoinFinished {
            attempted: batch.attempted,
            joined: batch.joined,
        });
    }

    /// Announces that we are (still) a member at `ltime` (`broadcastJoin`).
    pub(super) fn broadcast_join(&mut self, now: Instant, ltime: u64) {
        let msg = serf::Join {
            ltime,
            node: self.local_name.clone(),
        };
        self.clock.witness(ltime);
        self.handle_join_intent(now, &msg);
        self.broadcast(encode_serf(&SerfMessage::Join(msg)));
    }

    /// Queues a serf message for gossip through memberlist.
    pub(super) fn broadcast(&mut self, raw: Vec<u8>) {
        if self.list.send_user_broadcast(raw).is_err() {
            self.stats.rebroadcasts_refused += 1;
        }
    }

    pub(super) fn emit(&mut self, event: SerfEvent) {
        self.outputs.push_back(SerfOutput::Event(event));
    }

    pub(super) fn has_alive_members(&self) -> bool {
        self.members
            .values()
            .any(|m| m.member.name != self.local_name && m.member.status == MemberStatus::Alive)
    }

    /// Cheap structural checks; the simulator calls this after every step.
    pub fn check_invariants(&self) {
        self.list.check_invariants();
        let me = self
            .members
            .get(&self.local_name)
            .expect("the local member is always in serf's table");
        match self.state {
            SerfState::Alive => assert_eq!(me.member.status, MemberStatus::Alive),
            SerfState::Leaving => assert!(matches!(
                me.member.status,
                MemberStatus::Leaving | MemberStatus::Left
            )),
            SerfState::Left => {
                assert!(self.list.has_left());
                assert_eq!(me.member.status, MemberStatus::Left);
            }
        }
        assert!(self.clock.time() >= 1 && self.event_clock.time() >= 1);
        let n = self.event_buffer.len() as u64;
        for (i, slot) in self.event_buffer.iter().enumerate() {
            if let Some(events) = slot {
                assert_eq!(events.ltime % n, i as u64, "event ring slot by ltime");
                assert!(
                    events.ltime < self.event_clock.time(),
                    "events are witnessed"
                );
            }
        }
        for m in self.members.values() {
            let gone = matches!(m.member.status, MemberStatus::Failed | MemberStatus::Left);
            assert_eq!(
                gone,
                m.leave_time.is_some(),
                "failed and left members, and only they, carry the time they went"
            );
        }
    }
}

//! serf's messages arriving at [`Serf`]: intents, user events, queries and
//! relays from memberlist user messages (`delegate.go`'s `NotifyMsg`), and
//! serf's push/pull state (`LocalState`, `MergeRemoteState`).
//!
//! User events and queries are de-duplicated in rings keyed by Lamport
//! time: slot `ltime % len` holds what was seen at that time. An event
//! older than the ring (`ltime < clock - len`) can't be checked against it
//! and is dropped; one already in its slot is a duplicate. Anything new is
//! delivered once and re-gossiped, which is how serf spreads events
//! further than memberlist's retransmit count alone would.

use super::message::{addr_bytes, socket_addr, Message, NodeState};
use super::serf::{
    self, decode_serf, encode_serf, BufferedEvent, BufferedEvents, Filter, SerfMessage,
    SerfMessageType,
};
use super::serf_members::Departed;
use super::serf_state::{PendingQuery, Serf};
use super::serf_types::{
    MemberStatus, QueryEvent, SerfError, SerfEvent, SerfOutput, SerfState, UserEventRecord,
    CONFLICT_QUERY, INTERNAL_QUERY_PREFIX, PING_QUERY, USER_EVENT_BYTES_MAX,
};
use super::swim::Output;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

impl Serf {
    // ----- user events -----

    /// Fires a user event to the whole cluster (serf's `UserEvent`): it is
    /// stamped with the event clock, delivered locally, and gossiped.
    pub fn user_event(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), SerfError> {
        if self.state != SerfState::Alive {
            return Err(SerfError::NotAlive);
        }
        let limit = self.config.user_event_size_limit.min(USER_EVENT_BYTES_MAX);
        let len = name.len() + payload.len();
        if len > limit {
            return Err(SerfError::UserEventTooLarge { len, limit });
        }
        let event = serf::UserEvent {
            ltime: self.event_clock.time(),
            name: name.to_owned(),
            payload: payload.to_vec(),
            cc: coalesce,
        };
        let raw = encode_serf(&SerfMessage::UserEvent(event.clone()));
        if raw.len() > limit {
            return Err(SerfError::UserEventTooLarge {
                len: raw.len(),
                limit,
            });
        }
        self.list.send_user_broadcast(raw)?;
        self.event_clock.increment();
        self.handle_user_event(&event);
        self.pump(now);
        Ok(())
    }

    /// `handleUserEvent`: true when the event is new (delivered, and worth
    /// re-gossiping).
    pub(super) fn handle_user_event(&mut self, msg: &serf::UserEvent) -> bool {
        self.event_clock.witness(msg.ltime);
        let n = self.event_buffer.len() as u64;
        let now_time = self.event_clock.time();
        if msg.ltime < self.event_min_time || (now_time > n && msg.ltime < now_time - n) {
            self.stats.old_user_events += 1;
            return false;
        }
        let event = BufferedEvent {
            name: msg.name.clone(),
            payload: msg.payload.clone(),
        };
        let slot = &mut self.event_buffer[(msg.ltime % n) as usize];
        match slot {
            Some(seen) if seen.ltime == msg.ltime => {
                if seen.events.contains(&event) {
                    self.stats.duplicate_user_events += 1;
                    return false;
                }
                seen.events.push(event);
            }
            _ => {
                *slot = Some(BufferedEvents {
                    ltime: msg.ltime,
                    events: vec![event],
                });
            }
        }
        self.stats.user_events_delivered += 1;
        self.emit(SerfEvent::User(UserEventRecord {
            ltime: msg.ltime,
            name: msg.name.clone(),
            payload: msg.payload.clone(),
            coalesce: msg.cc,
        }));
        true
    }

    // ----- messages from the cluster -----

    /// One serf message (`NotifyMsg`). Bad input is counted and dropped.
    pub(super) fn on_user_message(&mut self, now: Instant, buf: &[u8]) {
        self.stats.messages_received += 1;
        match buf.first().map(|&t| SerfMessageType::from_u8(t)) {
            None => {
                self.stats.malformed_messages += 1;
                return;
            }
            Some(None) => {
                self.stats.unknown_message_types += 1;
                return;
            }
            Some(Some(_)) => {}
        }
        let Ok(msg) = decode_serf(buf) else {
            self.stats.malformed_messages += 1;
            return;
        };
        let rebroadcast = match msg {
            SerfMessage::Leave(leave) => self.handle_leave_intent(now, &leave),
            SerfMessage::Join(join) => self.handle_remote_join_intent(now, &join),
            SerfMessage::UserEvent(event) => self.handle_user_event(&event),
            SerfMessage::Query(query) => self.handle_query(now, query),
            SerfMessage::QueryResponse(response) => {
                self.handle_query_response(now, response);
                false
            }
            SerfMessage::Relay(relay) => {
                self.forward_relay(relay);
                false
            }
            SerfMessage::PushPull(_)
            | SerfMessage::ConflictResponse(_)
            | SerfMessage::KeyRequest(_)
            | SerfMessage::KeyResponse(_) => {
                self.stats.unexpected_messages += 1;
                false
            }
        };
        if rebroadcast {
            self.broadcast(buf.to_vec());
        }
    }

    /// A relayed query response: send the inner message on to its
    /// destination as a plain user message packet (memberlist's
    /// `SendToAddress`, no piggybacked gossip).
    fn forward_relay(&mut self, relay: serf::Relay) {
        let port = u16::try_from(relay.dest_port).ok();
        let Some(to) = port.and_then(|p| socket_addr(&relay.dest_ip, p)) else {
            self.stats.bad_addresses += 1;
            return;
        };
        self.stats.relays_forwarded += 1;
        self.send_to(to, relay.message);
    }

    fn send_to(&mut self, to: SocketAddr, raw: Vec<u8>) {
        let msgs = vec![Message::User(raw)];
        self.outputs
            .push_back(SerfOutput::Memberlist(Output::Packet { to, msgs }));
    }

    // ----- queries -----

    /// `handleQuery`: de-duplicate, ack if asked, answer serf's own
    /// queries, hand the rest to the owner; true to re-gossip.
    pub(super) fn handle_query(&mut self, now: Instant, q: serf::Query) -> bool {
        self.query_clock.witness(q.ltime);
        let n = self.query_buffer.len() as u64;
        let now_time = self.query_clock.time();
        if now_time > n && q.ltime < now_time - n {
            self.stats.old_queries += 1;
            return false;
        }
        let slot = &mut self.query_buffer[(q.ltime % n) as usize];
        match slot {
            Some((ltime, ids)) if *ltime == q.ltime => {
                if ids.contains(&q.id) {
                    self.stats.duplicate_queries += 1;
                    return false;
                }
                ids.push(q.id);
            }
            _ => *slot = Some((q.ltime, vec![q.id])),
        }
        self.stats.queries_received += 1;
        let rebroadcast = q.flags & serf::QUERY_FLAG_NO_BROADCAST == 0;
        if !self.should_process_query(&q.filters) {
            self.stats.queries_filtered += 1;
            return rebroadcast;
        }
        let Some(to) = socket_addr(&q.addr, q.port) else {
            self.stats.bad_addresses += 1;
            return rebroadcast;
        };
        let timeout = Duration(u64::try_from(q.timeout_ns).unwrap_or(0));
        let pending = PendingQuery {
            to,
            source_node: q.source_node.clone(),
            relay_factor: q.relay_factor,
            deadline: now + timeout,
        };
        if q.flags & serf::QUERY_FLAG_ACK != 0 {
            let ack = serf::QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: self.local_name.clone(),
                flags: serf::QUERY_FLAG_ACK,
                payload: Vec::new(),
            };
            self.send_query_response(&pending, ack);
        }
        match q.name.as_str() {
            PING_QUERY => {}
            CONFLICT_QUERY => self.answer_conflict(&q, &pending),
            _ if self.answer_key_query(&q, &pending) => {}
            // serf answers its own queries and hands the rest on.
            name if name.starts_with(INTERNAL_QUERY_PREFIX) => {
                self.stats.unknown_internal_queries += 1;
            }
            _ => self.deliver_query(q, pending),
        }
        rebroadcast
    }

    /// `_serf_conflict`: what we know about the named member (nil when we
    /// don't know it); the node itself stays silent.
    fn answer_conflict(&mut self, q: &serf::Query, pending: &PendingQuery) {
        let node = String::from_utf8_lossy(&q.payload).into_owned();
        if node == self.local_name {
            return;
        }
        let member = self.members.get(&node).map(|m| serf::Member {
            name: m.member.name.clone(),
            addr: addr_bytes(m.member.addr.ip()),
            port: m.member.addr.port(),
            tags: m.member.tags.clone(),
            status: m.member.status as i64,
            vsn: m.member.vsn,
        });
        let payload = encode_serf(&SerfMessage::ConflictResponse(member));
        let response = self.response_to(q.ltime, q.id, payload);
        if response.payload.len() <= self.config.query_response_size_limit {
            self.send_query_response(pending, response);
        }
    }

    fn deliver_query(&mut self, q: serf::Query, pending: PendingQuery) {
        // Bounded like the query ring: the oldest open query gives way.
        while self.pending_queries.len() >= self.query_buffer.len() {
            self.pending_queries.pop_first();
        }
        let deadline = pending.deadline;
        self.pending_queries.insert((q.ltime, q.id), pending);
        self.emit(SerfEvent::Query(QueryEvent {
            ltime: q.ltime,
            id: q.id,
            name: q.name,
            payload: q.payload,
            source_node: q.source_node,
            deadline,
        }));
    }

    /// Answers a query from a `SerfEvent::Query`, once, before its
    /// deadline (serf's `Query.Respond`).
    pub fn respond_query(
        &mut self,
        now: Instant,
        ltime: u64,
        id: u32,
        payload: Vec<u8>,
    ) -> Result<(), SerfError> {
        let unknown = SerfError::UnknownQuery { ltime, id };
        let Some(pending) = self.pending_queries.get(&(ltime, id)) else {
            return Err(unknown);
        };
        if now > pending.deadline {
            self.pending_queries.remove(&(ltime, id));
            return Err(unknown);
        }
        let response = self.response_to(ltime, id, payload);
        let len = encode_serf(&SerfMessage::QueryResponse(response.clone())).len();
        let limit = self.config.query_response_size_limit;
        if len > limit {
            return Err(SerfError::QueryResponseTooLarge { len, limit });
        }
        // Present: looked up above.
        let pending = self.pending_queries.remove(&(ltime, id)).expect("present");
        self.send_query_response(&pending, response);
        self.pump(now);
        Ok(())
    }

    pub(super) fn response_to(&self, ltime: u64, id: u32, payload: Vec<u8>) -> serf::QueryResponse {
        serf::QueryResponse {
            ltime,
            id,
            from: self.local_name.clone(),
            flags: 0,
            payload,
        }
    }

    /// Sends a response straight to the querier and, with a relay factor,
    /// through that many other live members too (`relayResponse`), so one
    /// lost packet doesn't lose the answer.
    pub(super) fn send_query_response(
        &mut self,
        pending: &PendingQuery,
        response: serf::QueryResponse,
    ) {
        let direct = encode_serf(&SerfMessage::QueryResponse(response));
        self.send_to(pending.to, direct.clone());
        let k = usize::from(pending.relay_factor);
        if k == 0 || self.members.len() < k + 1 {
            return;
        }
        let relay = encode_serf(&SerfMessage::Relay(serf::Relay {
            dest_ip: addr_bytes(pending.to.ip()),
            dest_port: i64::from(pending.to.port()),
            dest_zone: String::new(),
            dest_name: pending.source_node.clone(),
            message: direct,
        }));
        if relay.len() > self.config.query_response_size_limit {
            return;
        }
        let candidates: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| {
                m.member.status == MemberStatus::Alive
                    && m.member.vsn[1] >= 5
                    && m.member.name != self.local_name
            })
            .map(|m| m.member.addr)
            .collect();
        let mut chosen = BTreeSet::new();
        for _ in 0..3 * candidates.len() {
            if chosen.len() >= k {
                break;
            }
            chosen.insert(candidates[self.rng.below(candidates.len() as u64) as usize]);
        }
        for to in chosen {
            self.send_to(to, relay.clone());
        }
    }

    /// `shouldProcessQuery`: every filter must admit us.
    fn should_process_query(&mut self, filters: &[Vec<u8>]) -> bool {
        for raw in filters {
            let admitted = match serf::decode_filter(raw) {
                Ok(Filter::Node(names)) => names.contains(&self.local_name),
                Ok(Filter::Tag { tag, expr }) => {
                    let value = self.config.tags.get(&tag).map_or("", String::as_str);
                    match literal_match(&expr, value) {
                        Some(matched) => matched,
                        None => {
                            self.stats.unsupported_filters += 1;
                            false
                        }
                    }
                }
                Err(_) => false,
            };
            if !admitted {
                return false;
            }
        }
        true
    }

    // ----- push/pull state -----

    /// serf's state for a push/pull (`LocalState`).
    pub fn local_push_pull(&self) -> serf::PushPull {
        serf::PushPull {
            ltime: self.clock.time(),
            status_ltimes: self
                .members
                .iter()
                .map(|(name, m)| (name.clone(), m.status_ltime))
                .collect(),
            left_members: self
                .members
                .values()
                .filter(|m| m.member.status == MemberStatus::Left)
                .map(|m| m.member.name.clone())
                .collect(),
            event_ltime: self.event_clock.time(),
            events: self.event_buffer.clone(),
            query_ltime: self.query_clock.time(),
        }
    }

    pub(super) fn local_state_bytes(&self) -> Vec<u8> {
        encode_serf(&SerfMessage::PushPull(self.local_push_pull()))
    }

    /// `MergeRemoteState`: catch the clocks up, apply the peer's left
    /// members as leave intents and everyone else's status times as join
    /// intents, then replay its buffered events (unless this is our own
    /// join and it asked to ignore old events).
    ///
    /// Unlike serf, a left member's leave is checked against the peer's
    /// memberlist record of it (`nodes`, the same push/pull's): a member
    /// that rejoined after the leave the peer knows of is not taken for
    /// leaving (see `Serf::handle_leave_of`). serf applies the leave, which
    /// it dates one past the peer's status time, and a member that rejoins
    /// soon after leaving can stay `leaving` on some nodes for good
    /// (Consul issue 13379).
    pub(super) fn merge_remote_state(
        &mut self,
        now: Instant,
        join: bool,
        buf: &[u8],
        nodes: &BTreeMap<String, (NodeState, u32)>,
    ) {
        let pp = match decode_serf(buf) {
            Ok(SerfMessage::PushPull(pp)) => pp,
            _ => {
                self.stats.bad_remote_states += 1;
                return;
            }
        };
        // Witnessing `t - 1` makes our clock at least `t`, not `t + 1`.
        if pp.ltime > 0 {
            self.clock.witness(pp.ltime - 1);
        }
        if pp.event_ltime > 0 {
            self.event_clock.witness(pp.event_ltime - 1);
        }
        if pp.query_ltime > 0 {
            self.query_clock.witness(pp.query_ltime - 1);
        }
        let left: BTreeSet<&String> = pp.left_members.iter().collect();
        for name in &pp.left_members {
            let status_ltime = pp.status_ltimes.get(name).copied().unwrap_or(0);
            let leave = serf::Leave {
                ltime: status_ltime.saturating_add(1),
                node: name.clone(),
                prune: false,
            };
            let departed = match nodes.get(name) {
                Some((NodeState::Dead | NodeState::Left, incarnation)) => {
                    Departed::At(*incarnation)
                }
                Some(_) => Departed::Unknown,
                // memberlist forgets a dead member after
                // `gossip_to_the_dead_time`; serf keeps it left until its
                // tombstone times out.
                None => Departed::Forgotten,
            };
            self.handle_leave_of(now, &leave, departed);
        }
        for (name, &ltime) in &pp.status_ltimes {
            if !left.contains(name) {
                let node = name.clone();
                self.handle_remote_join_intent(now, &serf::Join { ltime, node });
            }
        }
        if join && self.joins.iter().any(|b| b.ignore_old) {
            self.event_min_time = self.event_min_time.max(pp.event_ltime);
        }
        for events in pp.events.into_iter().flatten() {
            for e in events.events {
                self.handle_user_event(&serf::UserEvent {
                    ltime: events.ltime,
                    name: e.name,
                    payload: e.payload,
                    cc: false,
                });
            }
        }
    }
}

/// Go's unanchored `regexp.MatchString` for the patterns that need no
/// regex engine: a literal, optionally anchored with `^` and/or `$`.
/// `None` for anything using other regex syntax.
pub(super) fn literal_match(expr: &str, value: &str) -> Option<bool> {
    let (start, body) = match expr.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, expr),
    };
    let (end, body) = match body.strip_suffix('$') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ];
    if body.contains(META) {
        return None;
    }
    Some(match (start, end) {
        (true, true) => value == body,
        (true, false) => value.starts_with(body),
        (false, true) => value.ends_with(body),
        (false, false) => value.contains(body),
    })
}

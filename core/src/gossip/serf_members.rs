//! serf's member table (`serf.go`): memberlist's join/update/leave
//! notices become serf statuses, join/leave intents (ordered by the member
//! clock) move members between alive and leaving, and failed and left
//! members are reaped after their timeouts.
//!
//! An intent carries the Lamport time its sender stamped it with; a member
//! remembers the time of the last intent applied (`status_ltime`), so a
//! stale intent arriving late through gossip or push/pull changes nothing.
//! An intent about a member memberlist hasn't reported yet is kept in
//! `recent_intents` and applied when the member appears.

use super::message::NodeState;
use super::serf;
use super::serf_state::{Intent, IntentKind, MemberState, Serf};
use super::serf_types::{MemberStatus, SerfEvent, SerfMember, SerfState};
use super::swim::Member;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What the peer whose push/pull lists a member as left knows of it in
/// memberlist: which life of the member left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Departed {
    /// No such record (a gossiped leave intent), or the peer's memberlist
    /// has it alive: serf's rule applies.
    Unknown,
    /// Dead or left at this incarnation: a later one has come back since.
    At(u32),
    /// The peer's memberlist no longer has it: dead for longer than its
    /// `gossip_to_the_dead_time`, so a member alive now has come back.
    Forgotten,
}

impl Departed {
    /// A leave with no record of its own (gossiped) is about the life
    /// memberlist shows when it applies, or an earlier one.
    fn or_life(self, incarnation: u32) -> Departed {
        match self {
            Departed::Unknown => Departed::At(incarnation),
            known => known,
        }
    }

    /// Whether a member memberlist has alive at `incarnation` has come
    /// back since this leave.
    fn came_back_at(self, incarnation: u32) -> bool {
        match self {
            Departed::Unknown => false,
            Departed::At(left) => incarnation > left,
            Departed::Forgotten => true,
        }
    }
}

impl Serf {
    // ----- the member table (memberlist's events) -----

    fn decode_tags(&mut self, meta: &[u8]) -> BTreeMap<String, String> {
        serf::decode_tags(meta).unwrap_or_else(|_| {
            self.stats.bad_tags += 1;
            BTreeMap::new()
        })
    }

    /// memberlist says a member is alive, new or back (`handleNodeJoin`).
    pub(super) fn handle_node_join(&mut self, m: &Member) {
        let tags = self.decode_tags(&m.meta);
        let state = match self.members.get_mut(&m.name) {
            Some(state) => {
                state.member.status = MemberStatus::Alive;
                state.leave_time = None;
                state.member.addr = m.addr;
                state.member.tags = tags;
                state
            }
            None => {
                let mut state = MemberState {
                    member: SerfMember {
                        name: m.name.clone(),
                        addr: m.addr,
                        tags,
                        status: MemberStatus::Alive,
                        vsn: m.vsn,
                    },
                    status_ltime: 0,
                    leave_time: None,
                    leave_from: Departed::Unknown,
                };
                // An intent that arrived before memberlist's news; a leave
                // about an earlier life of the member dates it only.
                if let Some(intent) = self.recent_intents.get(&m.name) {
                    state.status_ltime = intent.ltime;
                    let earlier_life = intent.departed.came_back_at(m.incarnation);
                    if intent.kind == IntentKind::Leave && !earlier_life {
                        state.member.status = MemberStatus::Leaving;
                        state.leave_from = intent.departed.or_life(m.incarnation);
                    } else if intent.kind == IntentKind::Leave {
                        self.stats.leaves_of_an_earlier_life += 1;
                    }
                }
                self.members.entry(m.name.clone()).or_insert(state)
            }
        };
        state.member.vsn = m.vsn;
        let member = state.member.clone();
        self.emit(SerfEvent::MemberJoin(member));
    }

    pub(super) fn handle_node_update(&mut self, m: &Member) {
        let tags = self.decode_tags(&m.meta);
        let Some(state) = self.members.get_mut(&m.name) else {
            return;
        };
        state.member.addr = m.addr;
        state.member.tags = tags;
        state.member.vsn = m.vsn;
        let member = state.member.clone();
        self.emit(SerfEvent::MemberUpdate(member));
    }

    /// memberlist declared a member dead or left (`handleNodeLeave`): it
    /// left if it told us it was leaving, else it failed.
    pub(super) fn handle_node_leave(&mut self, now: Instant, m: &Member) {
        let Some(state) = self.members.get_mut(&m.name) else {
            return;
        };
        let graceful = match state.member.status {
            MemberStatus::Leaving => true,
            MemberStatus::Alive => false,
            _ => {
                self.stats.unexpected_leaves += 1;
                return;
            }
        };
        state.member.status = if graceful {
            MemberStatus::Left
        } else {
            MemberStatus::Failed
        };
        state.leave_time = Some(now);
        let member = state.member.clone();
        self.emit(if graceful {
            SerfEvent::MemberLeave(member)
        } else {
            SerfEvent::MemberFailed(member)
        });
    }

    // ----- intents -----

    /// Remembers an intent about a member we don't know yet; only a newer
    /// one replaces it (`upsertIntent`).
    fn upsert_intent(
        &mut self,
        now: Instant,
        node: &str,
        kind: IntentKind,
        ltime: u64,
        departed: Departed,
    ) -> bool {
        match self.recent_intents.get(node) {
            Some(known) if ltime <= known.ltime => false,
            _ => {
                let intent = Intent {
                    kind,
                    ltime,
                    seen: now,
                    departed,
                };
                self.recent_intents.insert(node.to_owned(), intent);
                true
            }
        }
    }

    /// A join intent from a peer (gossiped, or a status time in its
    /// push/pull). Unlike serf, one about ourselves newer than our own
    /// status time is answered with a fresh join: a peer holds a status of
    /// ours we did not announce, which may be the leave of an earlier life
    /// of ours (a push/pull does not say which); until our join is newer,
    /// nodes that took that leave keep us `leaving`. serf only refutes
    /// leaves about itself that reach it as leaves.
    pub(super) fn handle_remote_join_intent(&mut self, now: Instant, msg: &serf::Join) -> bool {
        let own = (msg.node == self.local_name && self.state == SerfState::Alive)
            .then(|| self.members.get(&msg.node).map_or(0, |s| s.status_ltime));
        let news = self.handle_join_intent(now, msg);
        if own.is_some_and(|ours| msg.ltime > ours) {
            self.stats.refuted_status_times += 1;
            self.broadcast_join(now, self.clock.time());
        }
        news
    }

    /// Whether memberlist has `node` alive in a later life than the one
    /// `departed` says left.
    fn came_back(&self, node: &str, departed: Departed) -> bool {
        self.list.member(node).is_some_and(|m| {
            matches!(m.state, NodeState::Alive | NodeState::Suspect)
                && departed.came_back_at(m.incarnation)
        })
    }

    /// `handleNodeJoinIntent`; true when the intent is news worth
    /// re-gossiping.
    ///
    /// Unlike serf, a `leaving` member that memberlist has alive in a later
    /// life than the one whose leave made it leaving (a peer's record, or
    /// the life memberlist showed when a gossiped leave arrived) is alive
    /// again, even if the join's time is not newer: a member that left and
    /// came back before this node saw it go (or that announced its old
    /// incarnation first after a restart) would otherwise stay `leaving`
    /// for good. Push/pulls carry every member's status time as a join, so
    /// this is looked at again every push/pull. The price: a member
    /// refuting a suspicion while its own leave is still being gossiped
    /// is taken back too, and recorded failed rather than left when it
    /// goes.
    pub(super) fn handle_join_intent(&mut self, now: Instant, msg: &serf::Join) -> bool {
        self.clock.witness(msg.ltime);
        let leaving_from = self
            .members
            .get(&msg.node)
            .filter(|state| state.member.status == MemberStatus::Leaving)
            .map(|state| state.leave_from);
        if leaving_from.is_some_and(|departed| self.came_back(&msg.node, departed)) {
            self.stats.leaves_of_an_earlier_life += 1;
            if let Some(state) = self.members.get_mut(&msg.node) {
                state.member.status = MemberStatus::Alive;
                state.leave_from = Departed::Unknown;
            }
        }
        let Some(state) = self.members.get_mut(&msg.node) else {
            return self.upsert_intent(
                now,
                &msg.node,
                IntentKind::Join,
                msg.ltime,
                Departed::Unknown,
            );
        };
        if msg.ltime <= state.status_ltime {
            self.stats.stale_intents += 1;
            return false;
        }
        state.status_ltime = msg.ltime;
        if state.member.status == MemberStatus::Leaving {
            state.member.status = MemberStatus::Alive;
        }
        true
    }

    /// `handleNodeLeaveIntent`; true when the intent is news worth
    /// re-gossiping. A leave about ourselves while alive is old news we
    /// refute with a fresh join intent.
    pub(super) fn handle_leave_intent(&mut self, now: Instant, msg: &serf::Leave) -> bool {
        self.handle_leave_of(now, msg, Departed::Unknown)
    }

    /// A leave intent; `departed`, for one learnt from a peer's push/pull,
    /// is the peer's memberlist record of the member. A member memberlist
    /// has alive after that record came back since the leave: it does not
    /// apply (we still refute one about ourselves).
    pub(super) fn handle_leave_of(
        &mut self,
        now: Instant,
        msg: &serf::Leave,
        departed: Departed,
    ) -> bool {
        self.clock.witness(msg.ltime);
        let life = self.list.member(&msg.node).map(|m| m.incarnation);
        if msg.node != self.local_name && self.came_back(&msg.node, departed) {
            self.stats.leaves_of_an_earlier_life += 1;
            return false;
        }
        let Some(state) = self.members.get_mut(&msg.node) else {
            return self.upsert_intent(now, &msg.node, IntentKind::Leave, msg.ltime, departed);
        };
        if msg.ltime <= state.status_ltime {
            self.stats.stale_intents += 1;
            return false;
        }
        if msg.node == self.local_name && self.state == SerfState::Alive {
            self.stats.refuted_leave_intents += 1;
            self.broadcast_join(now, self.clock.time());
            return false;
        }
        state.status_ltime = msg.ltime;
        match state.member.status {
            MemberStatus::Alive => {
                state.member.status = MemberStatus::Leaving;
                state.leave_from = match life {
                    Some(incarnation) => departed.or_life(incarnation),
                    None => departed,
                };
            }
            MemberStatus::Failed => {
                state.member.status = MemberStatus::Left;
                let member = state.member.clone();
                self.emit(SerfEvent::MemberLeave(member));
            }
            MemberStatus::Leaving | MemberStatus::Left => {}
            MemberStatus::None => return false,
        }
        if msg.prune {
            self.prune(now, &msg.node);
        }
        true
    }

    /// Erases a force-left member; one still leaving first gets the time
    /// its own leave needs to spread (`handlePrune`).
    fn prune(&mut self, now: Instant, node: &str) {
        let Some(state) = self.members.get(node) else {
            return;
        };
        if state.member.status == MemberStatus::Leaving {
            let delay = self.config.broadcast_timeout.0 + self.config.leave_propagate_delay.0;
            self.prunes.insert(node.to_owned(), now + Duration(delay));
        } else {
            self.erase_member(node);
        }
    }

    /// Forgets a member and tells the owner (`eraseNode`).
    pub(super) fn erase_member(&mut self, node: &str) {
        if node == self.local_name {
            return;
        }
        if let Some(state) = self.members.remove(node) {
            self.emit(SerfEvent::MemberReap(state.member));
        }
    }

    // ----- reaping and reconnecting -----

    /// Forgets failed members after `reconnect_timeout`, left ones after
    /// `tombstone_timeout`, and stale intents (`handleReap`).
    pub(super) fn reap(&mut self, now: Instant) {
        let (reconnect, tombstone) = (self.config.reconnect_timeout, self.config.tombstone_timeout);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.member.name != self.local_name)
            .filter(|m| {
                let timeout = match m.member.status {
                    MemberStatus::Failed => reconnect,
                    MemberStatus::Left => tombstone,
                    _ => return false,
                };
                m.leave_time
                    .is_some_and(|t| now.saturating_duration_since(t) > timeout)
            })
            .map(|m| m.member.name.clone())
            .collect();
        for name in expired {
            self.erase_member(&name);
        }
        let intent_timeout = self.config.recent_intent_timeout;
        self.recent_intents
            .retain(|_, i| now.saturating_duration_since(i.seen) <= intent_timeout);
    }

    /// Tries to rejoin one failed member, more eagerly the larger the
    /// failed share of the cluster (`reconnect`): a partition heals even
    /// when no push/pull crosses it.
    pub(super) fn reconnect(&mut self, now: Instant) {
        if self.state != SerfState::Alive {
            return;
        }
        let failed: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Failed)
            .map(|m| m.member.addr)
            .collect();
        if failed.is_empty() {
            return;
        }
        let left = self
            .members
            .values()
            .filter(|m| m.member.status == MemberStatus::Left)
            .count();
        let alive = (self.members.len() - failed.len() - left).max(1) as u64;
        // Probability failed/alive, drawn in integers.
        if self.rng.below(alive) >= failed.len() as u64 {
            return;
        }
        let to = failed[self.rng.below(failed.len() as u64) as usize];
        self.stats.reconnect_attempts += 1;
        self.list.join(now, &[to]);
    }
}

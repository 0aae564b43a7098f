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

use super::serf;
use super::serf_state::{Intent, IntentKind, MemberState, Serf};
use super::serf_types::{MemberStatus, SerfEvent, SerfMember, SerfState};
use super::swim::Member;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::net::SocketAddr;

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
                };
                // An intent that arrived before memberlist's news.
                if let Some(intent) = self.recent_intents.get(&m.name) {
                    state.status_ltime = intent.ltime;
                    if intent.kind == IntentKind::Leave {
                        state.member.status = MemberStatus::Leaving;
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
    fn upsert_intent(&mut self, now: Instant, node: &str, kind: IntentKind, ltime: u64) -> bool {
        match self.recent_intents.get(node) {
            Some(known) if ltime <= known.ltime => false,
            _ => {
                let seen = now;
                self.recent_intents
                    .insert(node.to_owned(), Intent { kind, ltime, seen });
                true
            }
        }
    }

    /// `handleNodeJoinIntent`; true when the intent is news worth
    /// re-gossiping.
    pub(super) fn handle_join_intent(&mut self, now: Instant, msg: &serf::Join) -> bool {
        self.clock.witness(msg.ltime);
        let Some(state) = self.members.get_mut(&msg.node) else {
            return self.upsert_intent(now, &msg.node, IntentKind::Join, msg.ltime);
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
        self.clock.witness(msg.ltime);
        let Some(state) = self.members.get_mut(&msg.node) else {
            return self.upsert_intent(now, &msg.node, IntentKind::Leave, msg.ltime);
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
            MemberStatus::Alive => state.member.status = MemberStatus::Leaving,
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

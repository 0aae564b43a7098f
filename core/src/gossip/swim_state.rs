//! The member table's rules: what an alive, suspect or dead message does to
//! it (memberlist's `aliveNode`, `suspectNode`, `deadNode`, `refute`,
//! `mergeState`, `verifyProtocol`).
//!
//! Incarnation numbers order the news about one member. Only the member
//! itself raises its incarnation (to refute an accusation or announce new
//! metadata), so:
//! - alive wins over what we know only with a strictly higher incarnation;
//! - suspect and dead apply at the same or a higher incarnation;
//! - news about ourselves that says we are failing is refuted with an
//!   incarnation above the accusation, and costs us Lifeguard health.

use super::config::suspicion_timeout;
use super::message::{socket_addr, Alive, Dead, Message, NodeState, PushNodeState, Suspect, Vsn};
use super::suspicion::Suspicion;
use super::swim::{Member, MemberEvent, Memberlist};
use crate::time::Instant;

/// memberlist treats a missing version vector as "unknown" and accepts it.
const NO_VSN: Vsn = [0; 6];

impl Memberlist {
    /// A new incarnation of ourselves, applied and broadcast (memberlist's
    /// `setAlive` at start and `UpdateNode` later).
    pub(super) fn announce_self(&mut self, now: Instant) {
        self.incarnation += 1;
        let alive = self.local_alive();
        self.alive_node(now, &alive, true, None);
    }

    fn local_alive(&self) -> Alive {
        Alive {
            incarnation: self.incarnation,
            node: self.local.name.clone(),
            addr: super::message::addr_bytes(self.local.addr.ip()),
            port: self.local.addr.port(),
            meta: self.local.meta.clone(),
            vsn: self.local.vsn,
        }
    }

    /// memberlist's `aliveNode`. `bootstrap` is true when we announce
    /// ourselves; otherwise news about us is checked and refuted.
    pub(super) fn alive_node(
        &mut self,
        now: Instant,
        alive: &Alive,
        bootstrap: bool,
        notify: Option<u64>,
    ) {
        let is_local = alive.node == self.local.name;
        if self.left && is_local {
            // A leave is final; an alive about us still in flight must not
            // bring us back.
            return;
        }
        let [pmin, pmax, ..] = alive.vsn;
        if alive.vsn != NO_VSN && (pmin == 0 || pmax == 0 || pmin > pmax) {
            self.stats.bad_protocol_versions += 1;
            return;
        }
        let port = if alive.port == 0 {
            self.local.addr.port()
        } else {
            alive.port
        };
        let Some(addr) = socket_addr(&alive.addr, port) else {
            self.stats.bad_addresses += 1;
            return;
        };
        if alive.node.is_empty() {
            self.stats.bad_addresses += 1;
            return;
        }
        let mut takes_over_name = false;
        match self.members.get(&alive.node) {
            None => self.insert_member(now, alive, addr),
            Some(known) if known.addr != addr => {
                let reclaim = self.config.dead_node_reclaim_time;
                let reclaimable = reclaim.as_nanos() > 0
                    && now.saturating_duration_since(known.state_change) > reclaim;
                let replaceable = known.state == NodeState::Left
                    || (known.state == NodeState::Dead && reclaimable);
                if !replaceable {
                    // Two live nodes claim one name (possibly ours).
                    self.stats.address_conflicts += 1;
                    return;
                }
                takes_over_name = true;
            }
            Some(_) => {}
        }
        // Present: inserted or found above.
        let known = &self.members[&alive.node];
        if is_local {
            if alive.incarnation < known.incarnation {
                self.stats.stale_incarnation_messages += 1;
                return;
            }
        } else if alive.incarnation <= known.incarnation && !takes_over_name {
            self.stats.stale_incarnation_messages += 1;
            return;
        }
        self.suspicions.remove(&alive.node);
        let (old_state, old_meta) = (known.state, known.meta.clone());

        if !bootstrap && is_local {
            // Same incarnation and same content is just our own echo.
            if alive.incarnation == known.incarnation
                && alive.meta == known.meta
                && (alive.vsn == known.vsn || alive.vsn == NO_VSN)
            {
                return;
            }
            self.refute(alive.incarnation);
        } else {
            self.broadcasts.queue(
                Some(alive.node.clone()),
                Message::Alive(alive.clone()),
                notify,
            );
            // Present: checked above.
            let member = self.members.get_mut(&alive.node).expect("member present");
            if alive.vsn != NO_VSN {
                member.vsn = alive.vsn;
            }
            member.incarnation = alive.incarnation;
            member.meta = alive.meta.clone();
            member.addr = addr;
            if member.state != NodeState::Alive {
                member.state = NodeState::Alive;
                member.state_change = now;
            }
        }
        let member = self.members[&alive.node].clone();
        if matches!(old_state, NodeState::Dead | NodeState::Left) {
            self.emit(MemberEvent::Join(member));
        } else if old_meta != member.meta {
            self.emit(MemberEvent::Update(member));
        }
    }

    /// Adds a member we never heard of, as dead at incarnation 0 (so the
    /// alive that follows counts as a join), at a random spot of the probe
    /// order: appending would let a new member wait a whole pass.
    fn insert_member(&mut self, now: Instant, alive: &Alive, addr: std::net::SocketAddr) {
        let member = Member {
            name: alive.node.clone(),
            addr,
            meta: alive.meta.clone(),
            vsn: alive.vsn,
            incarnation: 0,
            state: NodeState::Dead,
            state_change: now,
        };
        self.members.insert(alive.node.clone(), member);
        let n = self.probe_order.len();
        let offset = if n == 0 {
            0
        } else {
            self.rng.below(n as u64) as usize
        };
        self.probe_order.push(alive.node.clone());
        self.probe_order.swap(offset, n);
    }

    /// memberlist's `suspectNode`.
    pub(super) fn suspect_node(&mut self, now: Instant, suspect: &Suspect) {
        let Some(known) = self.members.get(&suspect.node) else {
            self.stats.unknown_member_messages += 1;
            return;
        };
        if suspect.incarnation < known.incarnation {
            self.stats.stale_incarnation_messages += 1;
            if suspect.node == self.local.name {
                self.answer_stale_accusation();
            }
            return;
        }
        if let Some(timer) = self.suspicions.get_mut(&suspect.node) {
            // An independent accusation shortens the timer; news is re-gossiped
            // so confirmations keep flowing.
            if timer.confirm(&suspect.from) {
                self.broadcasts.queue(
                    Some(suspect.node.clone()),
                    Message::Suspect(suspect.clone()),
                    None,
                );
            }
            return;
        }
        if known.state != NodeState::Alive {
            return;
        }
        if suspect.node == self.local.name {
            self.refute(suspect.incarnation);
            return;
        }
        self.broadcasts.queue(
            Some(suspect.node.clone()),
            Message::Suspect(suspect.clone()),
            None,
        );
        self.stats.suspicions_started += 1;
        // Present: looked up above.
        let member = self.members.get_mut(&suspect.node).expect("member present");
        member.incarnation = suspect.incarnation;
        member.state = NodeState::Suspect;
        member.state_change = now;

        // Expect SuspicionMult - 2 confirmations so the nominal timeout is
        // hit two probe intervals early; none if the cluster is too small
        // to give them (n minus us and the suspect).
        let n = self.members.len();
        let mut k = self.config.suspicion_mult.saturating_sub(2);
        if n < k + 2 {
            k = 0;
        }
        let min = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval);
        let max = min.saturating_mul(self.config.suspicion_max_timeout_mult as u64);
        let timer = Suspicion::new(now, &suspect.from, k as u32, min, max);
        self.suspicions.insert(suspect.node.clone(), timer);
    }

    /// Fires due suspicion timers: a suspect that didn't refute is dead.
    pub(super) fn expire_suspicions(&mut self, now: Instant) {
        let due: Vec<(String, Instant)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(name, s)| (name.clone(), s.start()))
            .collect();
        for (name, started) in due {
            self.suspicions.remove(&name);
            let Some(member) = self.members.get(&name) else {
                continue;
            };
            if member.state != NodeState::Suspect || member.state_change != started {
                continue;
            }
            self.stats.suspicion_timeouts += 1;
            let dead = Dead {
                incarnation: member.incarnation,
                node: name,
                from: self.local.name.clone(),
            };
            self.dead_node(now, &dead, None);
        }
    }

    /// memberlist's `deadNode`. `dead.from == dead.node` is a graceful leave.
    pub(super) fn dead_node(&mut self, now: Instant, dead: &Dead, notify: Option<u64>) {
        let Some(known) = self.members.get(&dead.node) else {
            self.stats.unknown_member_messages += 1;
            return;
        };
        if dead.incarnation < known.incarnation {
            self.stats.stale_incarnation_messages += 1;
            if dead.node == self.local.name {
                self.answer_stale_accusation();
            }
            return;
        }
        self.suspicions.remove(&dead.node);
        if known.is_dead_or_left() {
            return;
        }
        if dead.node == self.local.name && !self.left {
            self.refute(dead.incarnation);
            return;
        }
        self.broadcasts
            .queue(Some(dead.node.clone()), Message::Dead(dead.clone()), notify);
        // Present: looked up above.
        let member = self.members.get_mut(&dead.node).expect("member present");
        member.incarnation = dead.incarnation;
        member.state = if dead.node == dead.from {
            NodeState::Left
        } else {
            NodeState::Dead
        };
        member.state_change = now;
        let member = member.clone();
        if dead.node == self.local.name {
            self.incarnation = member.incarnation;
        }
        self.emit(MemberEvent::Leave(member));
    }

    /// An accusation about an earlier incarnation of ours: the accuser
    /// missed the alive that refuted it, and would hold its suspicion (then
    /// our death) until a push/pull brought it. memberlist ignores it;
    /// tribune gossips its current alive again (no new incarnation: nodes
    /// that have it take it as old news).
    fn answer_stale_accusation(&mut self) {
        if self.left {
            return;
        }
        self.stats.stale_accusations_answered += 1;
        let alive = self.local_alive();
        self.broadcasts
            .queue(Some(self.local.name.clone()), Message::Alive(alive), None);
    }

    /// Answers an accusation about us with an alive above it; being accused
    /// is a sign we may be the slow one, so health drops (Lifeguard).
    pub(super) fn refute(&mut self, accused_incarnation: u32) {
        let mut incarnation = self.incarnation.wrapping_add(1);
        if accused_incarnation >= incarnation {
            incarnation = accused_incarnation.wrapping_add(1);
        }
        self.incarnation = incarnation;
        self.stats.refutations += 1;
        self.awareness.apply_delta(1);
        let local = self.local.name.clone();
        // We are always in our own table.
        let me = self.members.get_mut(&local).expect("local member present");
        me.incarnation = incarnation;
        let alive = self.local_alive();
        self.broadcasts
            .queue(Some(local), Message::Alive(alive), None);
    }

    /// memberlist's `mergeState`: a remote's view, applied through the same
    /// rules as gossip. A remote's dead becomes our suspicion (we check for
    /// ourselves before declaring anyone dead); its left stays left.
    pub(super) fn merge_state(&mut self, now: Instant, remote: &[PushNodeState]) {
        for node in remote {
            match node.state {
                NodeState::Alive => {
                    let alive = Alive {
                        incarnation: node.incarnation,
                        node: node.name.clone(),
                        addr: node.addr.clone(),
                        port: node.port,
                        meta: node.meta.clone(),
                        vsn: node.vsn,
                    };
                    self.alive_node(now, &alive, false, None);
                }
                NodeState::Left => {
                    let dead = Dead {
                        incarnation: node.incarnation,
                        node: node.name.clone(),
                        from: node.name.clone(),
                    };
                    self.dead_node(now, &dead, None);
                }
                NodeState::Dead | NodeState::Suspect => {
                    let suspect = Suspect {
                        incarnation: node.incarnation,
                        node: node.name.clone(),
                        from: self.local.name.clone(),
                    };
                    self.suspect_node(now, &suspect);
                }
            }
        }
    }

    /// memberlist's `verifyProtocol`: every alive member, theirs and ours,
    /// must speak a protocol and delegate version inside the range all of
    /// them understand.
    pub(super) fn protocol_compatible(&self, remote: &[PushNodeState]) -> bool {
        let remote_alive = remote
            .iter()
            .filter(|n| n.state == NodeState::Alive && n.vsn != NO_VSN)
            .map(|n| n.vsn);
        let local_alive = self
            .members
            .values()
            .filter(|m| m.state == NodeState::Alive && m.vsn != NO_VSN)
            .map(|m| m.vsn);
        let (mut max_pmin, mut min_pmax, mut max_dmin, mut min_dmax) = (0u8, u8::MAX, 0u8, u8::MAX);
        for vsn in remote_alive.chain(local_alive) {
            max_pmin = max_pmin.max(vsn[0]);
            min_pmax = min_pmax.min(vsn[1]);
            max_dmin = max_dmin.max(vsn[3]);
            min_dmax = min_dmax.min(vsn[4]);
        }
        let fits = |vsn: &Vsn| {
            *vsn == NO_VSN
                || ((max_pmin..=min_pmax).contains(&vsn[2])
                    && (max_dmin..=min_dmax).contains(&vsn[5]))
        };
        remote.iter().all(|n| fits(&n.vsn)) && self.members.values().all(|m| fits(&m.vsn))
    }
}

//! Leader-side decisions that depend on time, kept out of apply.
//!
//! Consul decides these on the leader too (`session_ttl.go`, the state
//! store's lock-delay table), because server clocks differ and apply must
//! replay identically. Here:
//! - lock-delay: after a session is invalidated, its keys refuse `acquire`
//!   until `now + lock_delay`; checked in [`Leader::prepare`];
//! - session TTL: a session with a TTL expires at `now + 2 × TTL` (the TTL is
//!   a lower bound, as in Consul) unless renewed; expiry becomes a proposed
//!   `SessionDestroy`, proposed again after [`SESSION_EXPIRY_RETRY`]
//!   (doubling up to [`SESSION_EXPIRY_RETRY_MAX`]) until an apply removes
//!   the session (a proposal can fail while this server
//!   still leads, such as when its lease lapsed during a partition; Consul
//!   retries six times, backing off from 10 s, then gives up and leaves
//!   the session, and its locks, alive until the next leader);
//! - session IDs come from the leader's seeded RNG;
//! - tombstones of deleted keys are reaped once older than the tombstone
//!   TTL (a proposed `ReapTombstones`, see `crate::tombstone_gc`).
//!
//! Driving contract: `prepare` before proposing, `on_applied` after each
//! apply, `handle_timeout(now)` when `poll_timeout` is due, then drain `poll`.

use crate::command::{Command, CommandResult, KvVerb, TxnError, TxnOutcome};
use crate::fsm::{Effects, Fsm};
use crate::ids::SessionId;
use crate::limits::{SESSION_TTL_MULTIPLIER, TOMBSTONE_GRANULARITY, TOMBSTONE_TTL};
use crate::rng::Rng;
use crate::session::Session;
use crate::time::{Duration, Instant};
use crate::tombstone_gc::TombstoneGc;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How long after proposing a session's expiry the leader first proposes
/// it again, while the session is still in the store; each further retry
/// waits twice as long, up to [`SESSION_EXPIRY_RETRY_MAX`].
pub const SESSION_EXPIRY_RETRY: Duration = Duration::from_secs(1);
pub const SESSION_EXPIRY_RETRY_MAX: Duration = Duration::from_secs(64);

/// Something the leader wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Propose(Command),
}

#[derive(Debug)]
pub struct Leader {
    rng: Rng,
    lock_delays: BTreeMap<String, Instant>,
    session_deadline: BTreeMap<SessionId, Instant>,
    expiry_queue: BTreeSet<(Instant, SessionId)>,
    /// Expiries proposed so far for sessions still in the store.
    expiry_attempts: BTreeMap<SessionId, u32>,
    tombstones: TombstoneGc,
    outputs: VecDeque<Output>,
}

impl Leader {
    /// Takes leadership over `fsm`: every session with a TTL gets a fresh
    /// timer from `now` (Consul resets TTLs on leader change), and the
    /// store's tombstones are due for reaping one tombstone TTL from `now`.
    pub fn new(now: Instant, rng_seed: u64, fsm: &Fsm) -> Leader {
        let mut leader = Leader {
            rng: Rng::from_seed(rng_seed),
            lock_delays: BTreeMap::new(),
            session_deadline: BTreeMap::new(),
            expiry_queue: BTreeSet::new(),
            expiry_attempts: BTreeMap::new(),
            tombstones: TombstoneGc::new(TOMBSTONE_TTL, TOMBSTONE_GRANULARITY),
            outputs: VecDeque::new(),
        };
        for session in fsm.sessions.by_id.values() {
            leader.arm(now, session.id, session.ttl);
        }
        if let Some(index) = fsm.kv.newest_tombstone() {
            leader.tombstones.hint(now, index);
        }
        leader
    }

    fn arm(&mut self, now: Instant, id: SessionId, ttl: Duration) {
        self.disarm(id);
        self.expiry_attempts.remove(&id);
        if ttl.as_nanos() == 0 {
            return;
        }
        self.arm_at(now + ttl.saturating_mul(SESSION_TTL_MULTIPLIER), id);
    }

    fn arm_at(&mut self, deadline: Instant, id: SessionId) {
        self.session_deadline.insert(id, deadline);
        self.expiry_queue.insert((deadline, id));
    }

    fn disarm(&mut self, id: SessionId) {
        if let Some(deadline) = self.session_deadline.remove(&id) {
            self.expiry_queue.remove(&(deadline, id));
        }
    }

    fn lock_delayed(&self, now: Instant, key: &str) -> bool {
        self.lock_delays.get(key).is_some_and(|until| now < *until)
    }

    /// Checks a write before it is proposed and fills in what only the
    /// leader may choose. `Err` carries the answer to give without proposing.
    pub fn prepare(
        &mut self,
        now: Instant,
        fsm: &Fsm,
        command: &mut Command,
    ) -> Result<(), CommandResult> {
        match command {
            Command::Kv(op) if op.verb == KvVerb::Lock && self.lock_delayed(now, &op.key) => {
                Err(CommandResult::Bool(false))
            }
            Command::Txn(ops) => {
                let errors: Vec<TxnError> = ops
                    .iter()
                    .enumerate()
                    .filter(|(_, op)| op.verb == KvVerb::Lock && self.lock_delayed(now, &op.key))
                    .map(|(op_index, op)| TxnError {
                        op_index,
                        what: format!("failed to lock key {:?}, lock-delay is in effect", op.key),
                    })
                    .collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(CommandResult::Txn(TxnOutcome::RolledBack(errors)))
                }
            }
            Command::SessionCreate(session) => {
                session.id = self.fresh_session_id(fsm);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn fresh_session_id(&mut self, fsm: &Fsm) -> SessionId {
        loop {
            let id = self.rng.uuid();
            if fsm.sessions.get(id).is_none() {
                return id;
            }
        }
    }

    /// Updates timers from what an apply did.
    pub fn on_applied(&mut self, now: Instant, effects: &Effects) {
        for (key, delay) in &effects.lock_delays {
            let until = now + *delay;
            let slot = self.lock_delays.entry(key.clone()).or_insert(until);
            *slot = (*slot).max(until);
        }
        for (id, ttl) in &effects.sessions_created {
            self.arm(now, *id, *ttl);
        }
        for id in &effects.sessions_removed {
            self.disarm(*id);
            self.expiry_attempts.remove(id);
        }
        if let Some(index) = effects.tombstoned {
            self.tombstones.hint(now, index);
        }
    }

    /// Resets a session's TTL timer; `None` if the session does not exist.
    pub fn renew(&mut self, now: Instant, fsm: &Fsm, id: SessionId) -> Option<Session> {
        let session = fsm.sessions.get(id)?.clone();
        self.arm(now, id, session.ttl);
        Some(session)
    }

    /// Expires sessions whose deadline passed (each is proposed again,
    /// backing off from [`SESSION_EXPIRY_RETRY`], until an apply removes
    /// it), reaps
    /// tombstones that are old enough and forgets stale lock-delays.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.expiry_queue.first() {
            if deadline > now {
                break;
            }
            self.disarm(id);
            let attempts = self.expiry_attempts.entry(id).or_insert(0);
            let backoff = SESSION_EXPIRY_RETRY
                .saturating_mul(1 << (*attempts).min(6))
                .min(SESSION_EXPIRY_RETRY_MAX);
            *attempts += 1;
            self.arm_at(now + backoff, id);
            self.outputs
                .push_back(Output::Propose(Command::SessionDestroy { id }));
        }
        if let Some(index) = self.tombstones.expire(now) {
            self.outputs
                .push_back(Output::Propose(Command::ReapTombstones { index }));
        }
        self.lock_delays.retain(|_, until| now < *until);
    }

    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let session = self.expiry_queue.first().map(|(deadline, _)| *deadline);
        match (session, self.tombstones.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn check_invariants(&self) {
        assert_eq!(self.session_deadline.len(), self.expiry_queue.len());
        for (deadline, id) in &self.expiry_queue {
            assert_eq!(self.session_deadline.get(id), Some(deadline));
        }
        for id in self.expiry_attempts.keys() {
            assert!(self.session_deadline.contains_key(id));
        }
    }
}

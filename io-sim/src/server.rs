//! A simulated server's store and its leader duties: core's `Fsm` and
//! core's leader machine (`tribune_core::server::Leader`), driven the way
//! the daemon's `state::Node` drives them.
//!
//! - **apply**: the Raft state machine applies each committed command to
//!   the `Fsm`; when this server holds leader duties, the apply's effects
//!   arm and disarm session TTL timers and lock-delays
//!   (`Leader::on_applied`), on this node's clock.
//! - **duties** ([`run_duties`]): a task on the node follows openraft's
//!   metrics; when the node becomes leader it takes the duties over with
//!   `Leader::new` (every TTL session gets a fresh timer, as in Consul),
//!   and when it stops leading it drops them. While leading it fires due
//!   timers (`handle_timeout`) and proposes what the leader machine asks
//!   for (a `SessionDestroy` for each expired session), as the daemon's
//!   timer task does.
//! - **prepare** and **renew**: a client write goes through
//!   `Leader::prepare` (lock-delay, fresh session IDs) before Raft, and a
//!   session renewal resets its timer on the server that holds the duties,
//!   as `PUT /v1/session/renew` does on the daemon's leader.
//!
//! Time is the node's own clock (skew and drift, [`crate::clock`]), the
//! one openraft's timers run on there.

use crate::clock::{NodeClock, SimInstant};
use crate::trace::Trace;
use crate::types::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tribune::raft::Store;
use tribune_core::command::{Command, CommandResult};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::ids::SessionId;
use tribune_core::rng::Rng;
use tribune_core::server::{Leader, Output};
use tribune_core::session::Session;
use tribune_core::time::Instant;

/// How often the duties task looks at leadership and due timers, on the
/// node's clock. Session expiry is late by at most this much.
pub const DUTY_TICK: Duration = Duration::from_millis(50);

/// Why a server did not take a client request to its leader machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotLeading {
    /// The server does not hold leader duties (a follower, or a leader
    /// whose duties task has not taken over yet).
    NotLeader,
}

struct Inner {
    fsm: Fsm,
    effects: Effects,
    /// Present while this server holds leader duties.
    leader: Option<Leader>,
    rng: Rng,
}

/// A server's replicated store and, while it leads, its leader machine.
pub struct ServerStore {
    inner: Mutex<Inner>,
    /// Broken on purpose (the teeth test): a new leader's machine starts
    /// from an empty store, so sessions created under an earlier leader
    /// never get a TTL timer.
    forget_sessions_on_takeover: bool,
    /// Broken on purpose (the teeth test): a transaction applies its first
    /// operation only, and answers as if it applied them all.
    partial_txns: bool,
}

impl ServerStore {
    pub fn new(
        rng_seed: u64,
        forget_sessions_on_takeover: bool,
        partial_txns: bool,
    ) -> ServerStore {
        ServerStore {
            inner: Mutex::new(Inner {
                fsm: Fsm::default(),
                effects: Effects::default(),
                leader: None,
                rng: Rng::from_seed(rng_seed),
            }),
            forget_sessions_on_takeover,
            partial_txns,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Applies change the store only as a whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn read<T>(&self, f: impl FnOnce(&Fsm) -> T) -> T {
        f(&self.lock().fsm)
    }

    /// Whether this server holds leader duties.
    pub fn has_duties(&self) -> bool {
        self.lock().leader.is_some()
    }

    /// `Leader::prepare` at `now` (the node's clock): `Ok(Err(answer))`
    /// when the leader answers without proposing.
    pub fn prepare(
        &self,
        now: Instant,
        command: &mut Command,
    ) -> Result<Result<(), CommandResult>, NotLeading> {
        let mut guard = self.lock();
        let Inner { leader, fsm, .. } = &mut *guard;
        let leader = leader.as_mut().ok_or(NotLeading::NotLeader)?;
        Ok(leader.prepare(now, fsm, command))
    }

    /// Resets session `id`'s TTL timer at `now`: the session, or `None`
    /// if it no longer exists.
    pub fn renew(&self, now: Instant, id: SessionId) -> Result<Option<Session>, NotLeading> {
        let mut guard = self.lock();
        let Inner { leader, fsm, .. } = &mut *guard;
        let leader = leader.as_mut().ok_or(NotLeading::NotLeader)?;
        Ok(leader.renew(now, fsm, id))
    }

    /// Takes leader duties over (or drops them); true if that changed.
    fn set_leading(&self, now: Instant, leading: bool) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match (leading, inner.leader.is_some()) {
            (true, false) => {
                inner.leader = Some(self.take_over(now, inner));
                true
            }
            (false, true) => {
                inner.leader = None;
                true
            }
            _ => false,
        }
    }

    fn take_over(&self, now: Instant, inner: &mut Inner) -> Leader {
        let seed = inner.rng.next_u64();
        if self.forget_sessions_on_takeover {
            Leader::new(now, seed, &Fsm::default())
        } else {
            Leader::new(now, seed, &inner.fsm)
        }
    }

    /// Fires due timers; what the leader machine wants proposed.
    fn due(&self, now: Instant) -> Vec<Command> {
        let mut guard = self.lock();
        let Some(leader) = guard.leader.as_mut() else {
            return Vec::new();
        };
        if leader.poll_timeout().is_some_and(|at| at <= now) {
            leader.handle_timeout(now);
        }
        leader.check_invariants();
        let mut proposals = Vec::new();
        while let Some(Output::Propose(command)) = leader.poll() {
            proposals.push(command);
        }
        proposals
    }
}

/// The node's clock reading as core's `Instant` (inside a node's task).
fn node_now() -> Instant {
    Instant(<SimInstant as openraft_rt::Instant>::now().as_nanos())
}

/// What `clock` reads at the current virtual time, as core's `Instant`
/// (for calls into a node's store from outside the node).
pub fn now_on(clock: Option<NodeClock>) -> Instant {
    let elapsed = madsim::time::TimeHandle::current().elapsed();
    let virtual_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    Instant(clock.map_or(virtual_ns, |c| c.local_ns(virtual_ns)))
}

impl Store for ServerStore {
    fn apply(&self, index: u64, command: &Command) -> CommandResult {
        let now = node_now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.effects.clear();
        let result = match command {
            Command::Txn(ops) if self.partial_txns && ops.len() > 1 => {
                // The answer of the whole transaction, the effect of its
                // first operation.
                let answer = inner
                    .fsm
                    .clone()
                    .apply(index, command, &mut Effects::default());
                let first = Command::Txn(ops[..1].to_vec());
                let _ = inner.fsm.apply(index, &first, &mut inner.effects);
                answer
            }
            _ => inner.fsm.apply(index, command, &mut inner.effects),
        };
        if let Some(leader) = inner.leader.as_mut() {
            leader.on_applied(now, &inner.effects);
        }
        result
    }

    fn applied_index(&self) -> u64 {
        self.lock().fsm.last_applied
    }

    fn snapshot(&self) -> Vec<u8> {
        self.lock().fsm.snapshot()
    }

    fn restore(&self, fsm: Fsm) {
        let now = node_now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.fsm = fsm;
        // A replaced store re-arms every timer, as the daemon's
        // `store_replaced` does.
        if inner.leader.is_some() {
            inner.leader = Some(self.take_over(now, inner));
        }
    }
}

/// How often a leader reconciles its gossip members into the catalog
/// (Consul: on every member event and every 60 s), on its clock.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// The leader duties of server `id`, until the node dies: every
/// [`DUTY_TICK`] of its clock, take over or drop the duties as openraft's
/// role says, fire due timers and propose what they produce; with gossip
/// (`members`, this server's member list), every [`RECONCILE_EVERY`]
/// propose what makes the catalog agree with it (core's `reconcile`:
/// `serfHealth` passing or critical, left members deregistered), as the
/// daemon's leader does.
pub async fn run_duties(
    id: u64,
    raft: Raft,
    store: Arc<ServerStore>,
    trace: Trace,
    expiries: Arc<AtomicU64>,
    members: Option<crate::gossip::MemberView>,
) {
    let metrics = raft.metrics();
    let mut next_reconcile = node_now();
    loop {
        madsim::time::sleep(crate::clock::virtual_duration(DUTY_TICK)).await;
        let (leading, term) = {
            let m = metrics.borrow_watched();
            (
                m.state == ServerState::Leader && m.current_leader == Some(id),
                m.current_term,
            )
        };
        let now = node_now();
        if store.set_leading(now, leading) {
            let what = if leading {
                let sessions = store.read(|fsm| fsm.sessions.by_id.len());
                format!("takes leader duties in term {term} ({sessions} sessions)")
            } else {
                "drops leader duties".to_owned()
            };
            trace.record(id, what);
        }
        let mut proposals = store.due(now);
        if let Some(members) = members.as_ref().filter(|_| store.has_duties()) {
            if now >= next_reconcile {
                next_reconcile = now
                    + tribune_core::time::Duration::from_nanos(RECONCILE_EVERY.as_nanos() as u64);
                let members = members.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let local = crate::gossip::name(id);
                // Not before this server's own gossip runs: an empty list
                // would reap every node.
                let running = members.iter().any(|m| {
                    m.name == local && m.status == tribune_core::gossip::MemberStatus::Alive
                });
                if running {
                    proposals.extend(store.read(|fsm| {
                        tribune_core::reconcile::reconcile(
                            &members,
                            &fsm.catalog,
                            crate::gossip::DATACENTER,
                            &local,
                        )
                    }));
                }
            }
        }
        for command in proposals {
            if matches!(command, Command::SessionDestroy { .. }) {
                expiries.fetch_add(1, SeqCst);
            }
            trace.record(id, format!("leader proposes {command}"));
            // Proposed without waiting, as the daemon's proposal task
            // does; if this server loses leadership first, the next
            // leader re-arms the timer from its own clock.
            let (raft, trace) = (raft.clone(), trace.clone());
            madsim::task::spawn(crate::clock::inherit(async move {
                let what = command.to_string();
                let outcome = match raft.client_write(command).await {
                    Ok(reply) => format!("{:?}", reply.data),
                    Err(e) => e.to_string(),
                };
                trace.record(id, format!("{what}: {outcome}"));
            }));
        }
    }
}

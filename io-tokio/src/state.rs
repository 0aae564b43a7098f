//! The node's shared state and its single write path.
//!
//! `-dev` is one server with an in-memory log: a write is prepared by the
//! leader, appended (given the next index), committed at once, and applied.
//! The steps are kept apart (`propose` → `commit` → `apply`) so that Raft can
//! take the middle without the HTTP layer changing: handlers only call
//! [`Node::write`] and [`Node::read`].
//!
//! Blocking queries register a waiter in core's `Watches`; an apply that
//! touches a watched key fires a oneshot here.

use crate::clock;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot, Notify};
use tribune_core::agent::{AgentOutput, LocalAgent};
use tribune_core::catalog::CheckStatus;
use tribune_core::checks::RunRequest;
use tribune_core::command::{Command, CommandResult};
use tribune_core::dns::cache::ServiceCache;
use tribune_core::dns::{Answer, DnsConfig, Question};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::rng::Rng;
use tribune_core::server::{Leader, Output};
use tribune_core::time::Instant;
use tribune_core::watch::{WaiterId, WatchTarget, Watches};

/// Facts about this agent that handlers show.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_name: String,
    pub node_id: String,
    pub datacenter: String,
    pub bind_addr: String,
    pub server_port: u16,
    pub serf_lan_port: u16,
    pub http_addr: String,
    /// The `tribune agent` arguments, re-read on reload.
    pub args: Vec<String>,
}

impl Identity {
    pub fn leader_addr(&self) -> String {
        format!("{}:{}", self.bind_addr, self.server_port)
    }
}

pub struct Inner {
    pub fsm: Fsm,
    pub leader: Leader,
    pub agent: LocalAgent,
    watches: Watches,
    waiters: BTreeMap<WaiterId, oneshot::Sender<()>>,
    last_log_index: u64,
    effects: Effects,
    pub rng: Rng,
    /// Where probe runs go (the check runners); `None` until they start,
    /// and runs requested before are queued here.
    runs: Option<mpsc::UnboundedSender<RunRequest>>,
    queued_runs: Vec<RunRequest>,
}

pub struct Node {
    /// Writes (applies, agent changes, timers) take it exclusively; reads
    /// (HTTP reads, DNS answers) share it, so the DNS threads answer in
    /// parallel.
    inner: RwLock<Inner>,
    /// Wakes the timer loop when deadlines may have moved earlier.
    timers_changed: Notify,
    pub identity: Identity,
    /// User events this agent has seen (not replicated state).
    pub events: crate::events::Events,
    /// Bumped when the whole store is replaced (a snapshot restore), so
    /// readers that cache by table index (the DNS threads) start afresh:
    /// a restored store may repeat indexes with other contents.
    generation: std::sync::atomic::AtomicU64,
}

/// A write that could not be carried out (beyond a command's own result).
#[derive(Debug)]
pub enum WriteError {
    /// The log refused the entry (reserved for Raft: no leader, disk).
    NotCommitted(String),
}

impl Inner {
    /// propose → commit → apply, for the one-server in-memory log.
    fn write(&mut self, now: Instant, mut command: Command) -> CommandResult {
        if let Err(answer) = self.leader.prepare(now, &self.fsm, &mut command) {
            return answer;
        }
        let index = self.append(&command);
        self.apply(now, index, &command)
    }

    /// Appends to the in-memory log; the entry is committed on return.
    fn append(&mut self, _command: &Command) -> u64 {
        self.last_log_index += 1;
        self.last_log_index
    }

    fn apply(&mut self, now: Instant, index: u64, command: &Command) -> CommandResult {
        self.effects.clear();
        let result = self.fsm.apply(index, command, &mut self.effects);
        self.leader.on_applied(now, &self.effects);
        for id in self.watches.fire(&self.effects.touched) {
            if let Some(waiter) = self.waiters.remove(&id) {
                // The receiver may be gone (client left): nothing to do.
                let _ = waiter.send(());
            }
        }
        result
    }

    /// Proposes what the leader and the local agent queued.
    fn drain_outputs(&mut self, now: Instant) {
        loop {
            if let Some(Output::Propose(command)) = self.leader.poll() {
                self.write(now, command);
                continue;
            }
            match self.agent.poll() {
                Some(AgentOutput::Propose(command)) => {
                    let result = self.write(now, command);
                    if let CommandResult::Failed(e) = result {
                        crate::log::warn(&format!("agent: catalog sync failed: {e}"));
                    }
                    continue;
                }
                Some(AgentOutput::Run(request)) => {
                    self.start_run(request);
                    continue;
                }
                None => {}
            }
            break;
        }
    }

    fn start_run(&mut self, request: RunRequest) {
        match &self.runs {
            Some(runs) => {
                if let Err(unsent) = runs.send(request) {
                    // The runners are gone (shutdown): the check stays in
                    // flight, which only matters to a process that is ending.
                    crate::log::debug(&format!("checks: runner gone for {}", unsent.0.check_id));
                }
            }
            None => self.queued_runs.push(request),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.leader.poll_timeout(), self.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Node {
    pub fn new(identity: Identity, agent: LocalAgent, seed: u64) -> Arc<Node> {
        let fsm = Fsm::default();
        let mut rng = Rng::from_seed(seed);
        let leader = Leader::new(clock::now(), rng.next_u64(), &fsm);
        let node = Arc::new(Node {
            inner: RwLock::new(Inner {
                fsm,
                leader,
                agent,
                watches: Watches::default(),
                waiters: BTreeMap::new(),
                last_log_index: 0,
                effects: Effects::default(),
                rng,
                runs: None,
                queued_runs: Vec::new(),
            }),
            timers_changed: Notify::new(),
            identity,
            events: crate::events::Events::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        let server_port = node.identity.server_port;
        node.with_agent(|agent| agent.register_node(Some(server_port)));
        node
    }

    fn lock(&self) -> RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock is a bug that already crashed a
        // request; the state itself is only changed by whole applies.
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_shared(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replicates and applies a command.
    pub async fn write(&self, command: Command) -> Result<CommandResult, WriteError> {
        let arms_timers = matches!(
            command,
            Command::SessionCreate(_) | Command::SessionDestroy { .. }
        );
        let result = self.lock().write(clock::now(), command);
        if arms_timers {
            self.timers_changed.notify_one();
        }
        Ok(result)
    }

    /// Runs `f` against the applied state.
    pub fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.lock_shared())
    }

    /// Changes the local agent's state, then proposes what it queued.
    pub fn with_agent<T>(&self, f: impl FnOnce(&mut LocalAgent) -> T) -> T {
        let now = clock::now();
        let mut inner = self.lock();
        let out = f(&mut inner.agent);
        inner.drain_outputs(now);
        drop(inner);
        self.timers_changed.notify_one();
        out
    }

    /// Sends probe runs to `runs` from now on (and those queued so far).
    pub fn set_check_runner(&self, runs: mpsc::UnboundedSender<RunRequest>) {
        let mut inner = self.lock();
        for request in std::mem::take(&mut inner.queued_runs) {
            let _ = runs.send(request);
        }
        inner.runs = Some(runs);
    }

    /// A probe's result, back into core.
    pub fn check_result(&self, request: &RunRequest, status: CheckStatus, output: String) {
        let now = clock::now();
        self.with_agent(|agent| {
            agent.on_result(now, &request.check_id, request.run, status, output);
        });
    }

    /// Renews a session's TTL on the leader.
    pub fn renew_session(
        &self,
        id: tribune_core::ids::SessionId,
    ) -> Option<tribune_core::session::Session> {
        let now = clock::now();
        let mut inner = self.lock();
        let Inner { leader, fsm, .. } = &mut *inner;
        let session = leader.renew(now, fsm, id);
        drop(inner);
        self.timers_changed.notify_one();
        session
    }

    /// A fresh random UUID from the node's seeded RNG.
    pub fn uuid(&self) -> tribune_core::ids::Uuid {
        self.lock().rng.uuid()
    }

    /// A value in `0..bound` from the node's seeded RNG (blocking jitter).
    pub fn random_below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        self.lock().rng.below(bound)
    }

    /// A generator seeded from the node's RNG, for a thread that draws
    /// often (a DNS thread's shuffles) without taking the lock to do so.
    pub fn fork_rng(&self) -> Rng {
        Rng::from_seed(self.lock().rng.next_u64())
    }

    /// Answers a DNS question from the applied state (Consul's DNS reads
    /// allow stale data, so the local FSM is the source); the shuffle draws
    /// from the caller's `rng` and service instances come from its
    /// `cache`. A shared lock: answers run in parallel with each other and
    /// with HTTP reads, never with an apply.
    pub fn dns_answer(
        &self,
        config: &DnsConfig,
        question: &Question,
        serial: u32,
        rng: &mut Rng,
        cache: &mut ServiceCache,
        cache_generation: &mut u64,
    ) -> Answer {
        let inner = self.lock_shared();
        // Checked under the lock a restore holds while it bumps the
        // generation, so a cache never answers for another store.
        let generation = self.generation();
        if *cache_generation != generation {
            *cache = ServiceCache::default();
            *cache_generation = generation;
        }
        tribune_core::dns::answer::answer_cached(&inner.fsm, config, question, serial, rng, cache)
    }

    /// Which store the state is: changes only when a snapshot is restored.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the whole store with a restored snapshot (`PUT
    /// /v1/snapshot`). Session timers are re-armed from the restored
    /// sessions, every blocking query wakes and answers from the new store,
    /// cached DNS answers are dropped, and the agent's own node is repaired
    /// at once (anti-entropy), as a restored catalog may not know it.
    /// Later writes continue above both logs' last index.
    pub fn restore(&self, fsm: Fsm) {
        let now = clock::now();
        let mut inner = self.lock();
        let seed = inner.rng.next_u64();
        inner.leader = Leader::new(now, seed, &fsm);
        inner.last_log_index = inner.last_log_index.max(fsm.last_applied);
        inner.fsm = fsm;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let waiting: Vec<WaiterId> = inner.waiters.keys().copied().collect();
        for id in waiting {
            inner.watches.cancel(id);
            if let Some(waiter) = inner.waiters.remove(&id) {
                let _ = waiter.send(());
            }
        }
        let repairs = tribune_core::anti_entropy::diff(&inner.agent, &inner.fsm.catalog);
        for command in repairs {
            if let CommandResult::Failed(e) = inner.write(now, command) {
                crate::log::warn(&format!("snapshot: re-registering this node failed: {e}"));
            }
        }
        drop(inner);
        self.timers_changed.notify_one();
    }

    /// Registers a waiter; `None` when the waiter bound is reached (the
    /// caller then answers at once).
    pub fn watch(&self, targets: Vec<WatchTarget>) -> Option<(WaiterId, oneshot::Receiver<()>)> {
        let mut inner = self.lock();
        let id = inner.watches.register(targets).ok()?;
        let (tx, rx) = oneshot::channel();
        inner.waiters.insert(id, tx);
        Some((id, rx))
    }

    pub fn unwatch(&self, id: WaiterId) {
        let mut inner = self.lock();
        inner.watches.cancel(id);
        inner.waiters.remove(&id);
    }

    /// Fires due timers (session TTLs, TTL checks) forever.
    pub async fn run_timers(self: Arc<Node>) {
        loop {
            let deadline = self.lock().next_deadline();
            match deadline {
                Some(at) => {
                    let sleep = tokio::time::sleep_until(clock::to_std(at).into());
                    tokio::select! {
                        _ = sleep => {}
                        _ = self.timers_changed.notified() => continue,
                    }
                }
                None => {
                    self.timers_changed.notified().await;
                    continue;
                }
            }
            let now = clock::now();
            let mut inner = self.lock();
            inner.leader.handle_timeout(now);
            inner.agent.handle_timeout(now);
            inner.drain_outputs(now);
        }
    }
}

//! A simulated cluster of tribune servers.
//!
//! Each server is a madsim node at `10.0.0.<id>` whose init future builds
//! everything a daemon's Raft has: io-tokio's `LogStore` over the node's
//! [`Disk`], io-tokio's `StateMachine` over a fresh [`ServerStore`] (core's
//! `Fsm`, and its leader machine while the server leads) with its
//! snapshot file on the same disk (a restart installs the snapshot, then
//! replays the log behind it, as the daemon does), the simulated
//! [`Network`], and `Raft::new`, all inside the node so that a kill drops
//! every task openraft spawned. The disks belong to the [`Cluster`], so a
//! restarted node finds what its disk kept.
//!
//! The driver (the test) runs on madsim's main node and talks to servers
//! in-process, like a local client: [`Cluster::write`] calls
//! `client_write` on the chosen server; [`Cluster::read`] runs on the
//! server itself and confirms leadership with a round of calls to the
//! voters over the simulated network, as io-tokio's `read_index` does, then
//! reads the server's store once it applied the read index.
//!
//! While running, each node's metrics watcher records the trace and what
//! the safety checkers need ([`Observations`]).

use crate::clock::{self, NodeClock};
use crate::disk::{Disk, DiskConfig};
use crate::net::{self, Network, Request, Response};
use crate::server::{self as duties, ServerStore};
use crate::trace::Trace;
use crate::types::{LogId, Raft, C};
use futures_util::stream::{FuturesUnordered, StreamExt};
use madsim::runtime::Handle;
use openraft::async_runtime::WatchReceiver;
use openraft::entry::RaftEntry;
use openraft::error::{ClientWriteError, RaftError};
use openraft::type_config::alias::SnapshotOf;
use openraft::ServerState;
use siphasher::sip::SipHasher13;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tribune::raft::{ServerNode, StateMachine};
use tribune_core::command::{Command, CommandResult};

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Leader confirmed by a quorum of voters, then read after the read
    /// index is applied (io-tokio's `read_index`).
    Linearizable,
    /// Broken on purpose (the teeth test): the chosen server's local store,
    /// no leadership check.
    LocalStale,
    /// openraft's own `ensure_linearizable(ReadPolicy::ReadIndex)`, then
    /// the store: not what the daemon does (its quorum check rests on
    /// openraft's replication clock, see io-tokio's `read_index.rs`); for
    /// soaks that judge openraft's read path.
    OpenraftReadIndex,
    /// openraft's `ReadPolicy::LeaseRead`.
    OpenraftLeaseRead,
    /// The daemon's `default` consistency mode (io-tokio's
    /// `state.rs::read_index`): under openraft's lease, the larger of its
    /// read log id and the last log index; without a lease, the quorum
    /// round of [`ReadMode::Linearizable`].
    DaemonDefault,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub size: u64,
    pub disk: DiskConfig,
    pub read_mode: ReadMode,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// openraft's `allow_log_reversion`: off in the daemon (openraft then
    /// panics when a follower's log went back); the broken-disk teeth test
    /// turns it on so that the simulator's checkers, not openraft's
    /// assertion, must notice the lost writes.
    pub allow_log_reversion: bool,
    /// Each server's clock (skew and drift); absent: virtual time.
    pub clocks: BTreeMap<u64, NodeClock>,
    /// The probability that a request between servers is delivered twice.
    pub duplicate_rate: f64,
    /// Build a snapshot every this many applied entries (`None`: never,
    /// and the log is kept whole).
    pub snapshot_every: Option<u64>,
    /// Entries kept in the log behind a snapshot (openraft's
    /// `max_in_snapshot_log_to_keep`): followers lagging further behind
    /// get the snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Broken on purpose (the teeth test): a new leader does not re-arm
    /// the TTL timers of sessions created under earlier leaders.
    pub forget_sessions_on_takeover: bool,
    /// Servers also run gossip (`crate::gossip`), joining each other.
    pub gossip: bool,
    /// Spare servers (ids `size + 1 ..`): started with an empty disk but
    /// outside the Raft cluster until [`Cluster::replace`] brings one in
    /// for a server lost for good.
    pub spares: u64,
    /// Client agents (with gossip on): nodes that run gossip only, with
    /// Consul's client tags, joining the servers; the leader registers
    /// them in the catalog from its member list.
    pub agents: u64,
    /// Broken on purpose (the teeth test): transactions apply their first
    /// operation only.
    pub partial_txns: bool,
    /// Broken on purpose (the teeth test): client agents send a write that
    /// brought no answer to the next server, and servers to the leader
    /// again, against core's `route::Call`.
    pub resend_unanswered_writes: bool,
}

/// One observation of a server's replicated state, for `replica_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSample {
    pub node: u64,
    pub applied_index: u64,
    pub state_hash: u64,
}

/// What the nodes saw, for the safety checkers.
#[derive(Default)]
pub struct Observations {
    /// (term, node) for every time a node saw itself leader.
    pub leaders: Vec<(u64, u64)>,
    /// (node, incarnation, term, voted for, committed) of every vote a
    /// node showed; the incarnation counts the node's crashes.
    pub votes: Vec<(u64, u64, u64, u64, bool)>,
    /// (node, log id) of every entry a node applied, read back from its
    /// disk.
    pub applied: Vec<(u64, LogId)>,
    pub samples: Vec<StoreSample>,
}

/// What a server answers a client write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied(CommandResult),
    /// Refused before it was appended (not the leader, node down): it
    /// never takes effect.
    Refused(String),
    /// Timed out or failed after it may have been appended.
    Unknown(String),
}

/// A key as read: its value and modify index, `None` if absent.
pub type ReadValue = Option<(Vec<u8>, u64)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Read(ReadValue),
    /// Not served (not the leader, no quorum, timed out): a read has no
    /// effect, so this is a plain failure.
    Failed(String),
}

#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) raft: Raft,
    pub(crate) store: Arc<ServerStore>,
    network: Network,
}

/// A simulated process: its madsim node, whether it runs, whether it is
/// paused. Each change answers whether it changed anything.
struct Process {
    node: madsim::runtime::NodeHandle,
    up: AtomicBool,
    paused: AtomicBool,
}

impl Process {
    fn new(node: madsim::runtime::NodeHandle) -> Process {
        Process {
            node,
            up: AtomicBool::new(true),
            paused: AtomicBool::new(false),
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(SeqCst)
    }

    fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    fn kill(&self, handle: &Handle) -> bool {
        if !self.up.swap(false, SeqCst) {
            return false;
        }
        handle.kill(self.node.id());
        self.paused.store(false, SeqCst);
        true
    }

    fn restart(&self, handle: &Handle) -> bool {
        if self.up.swap(true, SeqCst) {
            return false;
        }
        handle.restart(self.node.id());
        true
    }

    fn pause(&self, handle: &Handle) -> bool {
        if !self.is_up() || self.paused.swap(true, SeqCst) {
            return false;
        }
        handle.pause(self.node.id());
        true
    }

    fn resume(&self, handle: &Handle) -> bool {
        if !self.paused.swap(false, SeqCst) {
            return false;
        }
        handle.resume(self.node.id());
        true
    }
}

struct Slot {
    process: Process,
    disk: Disk,
    live: Arc<Mutex<Option<Live>>>,
    /// Why the current incarnation failed to start, if it did.
    start_failure: Arc<Mutex<Option<String>>>,
    /// What the node's gossip member list shows (empty while down).
    members: crate::gossip::MemberView,
    /// Part of the cluster: the initial servers, and a spare once a
    /// replacement brings it in.
    member: AtomicBool,
    /// Lost for good (its disk with it): replaced, never restarted.
    retired: AtomicBool,
}

/// A client agent: gossip, nothing on disk.
struct AgentSlot {
    process: Process,
    members: crate::gossip::MemberView,
    control: crate::gossip::Control,
    /// The servers it sends clients' requests to (core's router), made
    /// at its first request; a restart starts without.
    servers: Arc<Mutex<Option<tribune_core::route::Servers<u64>>>>,
}

pub struct Cluster {
    handle: Handle,
    config: ClusterConfig,
    slots: BTreeMap<u64, Slot>,
    agents: BTreeMap<u64, AgentSlot>,
    trace: Trace,
    observations: Arc<Mutex<Observations>>,
    expiries: Arc<AtomicU64>,
    gossip_failures: Arc<AtomicU64>,
    /// Requests through client agents: answered, refused (nothing done),
    /// without an answer.
    agent_requests: [AtomicU64; 3],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the trace names node `id`: `n<id>` for a server, the agent's
/// name for a client agent.
fn node_label(id: u64) -> String {
    if id > crate::gossip::AGENT_BASE {
        crate::gossip::name(id)
    } else {
        format!("n{id}")
    }
}

fn server_node(id: u64) -> ServerNode {
    ServerNode::new(format!("server-{id}"), net::addr(id))
}

/// Creates client agent `id`'s node: its gossip joins every server.
fn start_agent(
    handle: &Handle,
    config: &ClusterConfig,
    id: u64,
    trace: &Trace,
    failures: &Arc<AtomicU64>,
) -> AgentSlot {
    let members = crate::gossip::MemberView::default();
    let control = crate::gossip::Control::default();
    let peers: Vec<_> = (1..=config.size).map(crate::gossip::addr).collect();
    let node_clock = config.clocks.get(&id).copied();
    let init = {
        let (members, control, trace, failures) = (
            Arc::clone(&members),
            control.clone(),
            trace.clone(),
            Arc::clone(failures),
        );
        move || {
            use madsim::rand::Rng;
            trace.record(id, "start");
            let setup = crate::gossip::Setup {
                id,
                config: crate::gossip::client_config(),
                peers: peers.clone(),
                view: Arc::clone(&members),
                control: control.clone(),
                trace: trace.clone(),
                failures: Arc::clone(&failures),
            };
            clock::with_clock(
                node_clock,
                crate::gossip::run(setup, madsim::rand::thread_rng().gen()),
            )
        }
    };
    let node = handle
        .create_node()
        .name(crate::gossip::name(id))
        .ip(net::ip(id))
        .init(init)
        .build();
    AgentSlot {
        process: Process::new(node),
        members,
        control,
        servers: Arc::default(),
    }
}

/// How long a leader waits for a round of leadership confirmations.
fn round_timeout(config: &ClusterConfig) -> Duration {
    Duration::from_millis(2 * config.election_timeout_max_ms)
}

fn raft_config(config: &ClusterConfig) -> Arc<openraft::Config> {
    let raft = openraft::Config {
        cluster_name: "tribune-sim".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        snapshot_policy: match config.snapshot_every {
            Some(n) => openraft::SnapshotPolicy::LogsSinceLast(n),
            None => openraft::SnapshotPolicy::Never,
        },
        max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
        purge_batch_size: 1,
        allow_log_reversion: Some(config.allow_log_reversion),
        ..openraft::Config::default()
    };
    Arc::new(raft.validate().expect("valid raft config"))
}

impl Cluster {
    /// Creates the servers (not yet a Raft cluster: see
    /// [`Cluster::initialize`]). Call inside a madsim runtime.
    pub fn new(config: ClusterConfig, trace: Trace) -> Cluster {
        let handle = Handle::current();
        let observations = Arc::new(Mutex::new(Observations::default()));
        let expiries = Arc::new(AtomicU64::new(0));
        let gossip_failures = Arc::new(AtomicU64::new(0));
        let settings = NodeSettings {
            raft: raft_config(&config),
            forget_sessions_on_takeover: config.forget_sessions_on_takeover,
            partial_txns: config.partial_txns,
            expiries: Arc::clone(&expiries),
            gossip: config
                .gossip
                .then(|| (1..=config.size + config.spares).collect()),
            gossip_failures: Arc::clone(&gossip_failures),
            serve_clients: config.agents > 0,
            resend_unanswered_writes: config.resend_unanswered_writes,
            read_mode: config.read_mode,
            round_timeout: round_timeout(&config),
        };
        let mut slots = BTreeMap::new();
        for id in 1..=config.size + config.spares {
            let disk = Disk::new(config.disk.clone());
            let node_clock = config.clocks.get(&id).copied();
            let network = Network {
                duplicate_rate: config.duplicate_rate,
            };
            let live: Arc<Mutex<Option<Live>>> = Arc::default();
            let start_failure: Arc<Mutex<Option<String>>> = Arc::default();
            let members = crate::gossip::MemberView::default();
            let init = {
                let failure = Arc::clone(&start_failure);
                let members = Arc::clone(&members);
                let (disk, live, trace, observations, settings) = (
                    disk.clone(),
                    Arc::clone(&live),
                    trace.clone(),
                    Arc::clone(&observations),
                    settings.clone(),
                );
                move || {
                    clock::with_clock(
                        node_clock,
                        run_node(
                            id,
                            disk.clone(),
                            network.clone(),
                            Incarnation {
                                live: Arc::clone(&live),
                                start_failure: Arc::clone(&failure),
                                members: Arc::clone(&members),
                            },
                            trace.clone(),
                            Arc::clone(&observations),
                            settings.clone(),
                        ),
                    )
                }
            };
            let node = handle
                .create_node()
                .name(format!("server-{id}"))
                .ip(net::ip(id))
                .init(init)
                .build();
            slots.insert(
                id,
                Slot {
                    process: Process::new(node),
                    disk,
                    live,
                    start_failure,
                    members,
                    member: AtomicBool::new(id <= config.size),
                    retired: AtomicBool::new(false),
                },
            );
        }
        let agents = (1..=config.agents)
            .map(crate::gossip::agent_id)
            .map(|id| {
                (
                    id,
                    start_agent(&handle, &config, id, &trace, &gossip_failures),
                )
            })
            .collect();
        Cluster {
            handle,
            config,
            slots,
            agents,
            trace,
            observations,
            expiries,
            gossip_failures,
            agent_requests: Default::default(),
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The servers in the cluster now: the initial ones and spares
    /// brought in, without those lost for good.
    pub fn ids(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| s.member.load(SeqCst) && !s.retired.load(SeqCst))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every server slot, spares and retired servers included (for what
    /// their disks saw).
    pub fn all_ids(&self) -> Vec<u64> {
        self.slots.keys().copied().collect()
    }

    pub fn is_retired(&self, id: u64) -> bool {
        self.slots[&id].retired.load(SeqCst)
    }

    /// A spare server not brought in yet, if any.
    pub fn spare(&self) -> Option<u64> {
        self.slots
            .iter()
            .find(|(_, s)| !s.member.load(SeqCst))
            .map(|(id, _)| *id)
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn observations(&self) -> MutexGuard<'_, Observations> {
        lock(&self.observations)
    }

    pub fn disk(&self, id: u64) -> &Disk {
        &self.slots[&id].disk
    }

    /// madsim's id of node `id` (a server or a client agent).
    pub fn madsim_id(&self, id: u64) -> madsim::task::NodeId {
        match self.slots.get(&id) {
            Some(slot) => slot.process.node.id(),
            None => self.agents[&id].process.node.id(),
        }
    }

    /// The client agents' node ids (`gossip::agent_id`).
    pub fn agent_ids(&self) -> Vec<u64> {
        self.agents.keys().copied().collect()
    }

    pub fn is_agent_up(&self, id: u64) -> bool {
        self.agents[&id].process.is_up()
    }

    /// Kills client agent `id` (its process: gossip stops answering).
    pub fn kill_agent(&self, id: u64) {
        let agent = &self.agents[&id];
        if agent.process.kill(&self.handle) {
            lock(&agent.members).clear();
            self.trace
                .record(0, format!("kill {}", crate::gossip::name(id)));
        }
    }

    /// Starts a killed client agent again; it joins the servers anew.
    pub fn restart_agent(&self, id: u64) {
        if self.agents[&id].process.restart(&self.handle) {
            *lock(&self.agents[&id].servers) = None;
            self.trace
                .record(0, format!("restart {}", crate::gossip::name(id)));
        }
    }

    /// Client agent `id` leaves the pool gracefully (`consul leave`): its
    /// leave is gossiped and its gossip stops; the process stays until
    /// [`Cluster::kill_agent`]. False if its gossip does not run.
    pub fn leave_agent(&self, id: u64) -> bool {
        let agent = &self.agents[&id];
        if !agent.process.is_up() || agent.process.is_paused() {
            return false;
        }
        let asked = agent.control.leave();
        if asked {
            self.trace
                .record(0, format!("leave {}", crate::gossip::name(id)));
        }
        asked
    }

    /// A client write through client agent `agent` (see
    /// [`crate::client`]): the agent sends it to a server over the
    /// network, which forwards it to the leader.
    pub async fn agent_write(&self, agent: u64, command: Command) -> WriteOutcome {
        use crate::client::{AgentError, ClientAnswer, ClientRequest};
        match self
            .through_agent(agent, ClientRequest::Write(command))
            .await
        {
            Ok(ClientAnswer::Written(result)) => WriteOutcome::Applied(result),
            Ok(ClientAnswer::NoLeader) => WriteOutcome::Refused("No cluster leader".into()),
            Ok(ClientAnswer::Failed(why)) | Err(AgentError::Unknown(why)) => {
                WriteOutcome::Unknown(why)
            }
            Ok(other @ (ClientAnswer::Read(_) | ClientAnswer::Renewed(_))) => {
                WriteOutcome::Unknown(format!("a write answered {other:?}"))
            }
            Err(AgentError::NoServers) => WriteOutcome::Refused(crate::client::NO_SERVERS.into()),
            Err(AgentError::Down(why)) => WriteOutcome::Refused(why),
        }
    }

    /// A client read of `key` through client agent `agent`, served by the
    /// leader in the cluster's read mode.
    pub async fn agent_read(&self, agent: u64, key: &str) -> ReadOutcome {
        match self.agent_read_entry(agent, key).await {
            Ok(entry) => ReadOutcome::Read(entry.map(|e| (e.value.to_vec(), e.modify_index))),
            Err(why) => ReadOutcome::Failed(why),
        }
    }

    /// `key`'s whole entry (its lock index and holder too), read as
    /// [`Cluster::agent_read`] does.
    pub async fn agent_read_entry(
        &self,
        agent: u64,
        key: &str,
    ) -> Result<Option<tribune_core::kv::KvEntry>, String> {
        use crate::client::{ClientAnswer, ClientRequest};
        match self
            .through_agent(agent, ClientRequest::Read(key.into()))
            .await
        {
            Ok(ClientAnswer::Read(entry)) => Ok(entry),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Renews `session` through client agent `agent` (the leader resets
    /// its timer), as [`Cluster::renew_session`] does on a server.
    pub async fn agent_renew(
        &self,
        agent: u64,
        session: tribune_core::ids::SessionId,
    ) -> Result<Option<tribune_core::session::Session>, String> {
        use crate::client::{ClientAnswer, ClientRequest};
        match self
            .through_agent(agent, ClientRequest::Renew(session))
            .await
        {
            Ok(ClientAnswer::Renewed(renewed)) => Ok(renewed),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// Runs a client's request on agent `agent`'s node. An agent that is
    /// down (killed, or stopped after leaving) refuses the connection
    /// (nothing is done); one killed while the request is on its way
    /// leaves its outcome unknown.
    async fn through_agent(
        &self,
        agent: u64,
        request: crate::client::ClientRequest,
    ) -> Result<crate::client::ClientAnswer, crate::client::AgentError> {
        use crate::client::{AgentError, ClientAnswer};
        let answer = self.run_on_agent(agent, request).await;
        let counter = match &answer {
            Ok(ClientAnswer::Written(_) | ClientAnswer::Read(_) | ClientAnswer::Renewed(_)) => 0,
            Ok(ClientAnswer::NoLeader) | Err(AgentError::NoServers | AgentError::Down(_)) => 1,
            Ok(ClientAnswer::Failed(_)) | Err(AgentError::Unknown(_)) => 2,
        };
        self.agent_requests[counter].fetch_add(1, SeqCst);
        answer
    }

    /// Whether client agent `id` takes requests: its process runs and it
    /// has not left (Consul's agent exits once it left).
    pub fn agent_serves(&self, id: u64) -> bool {
        let slot = &self.agents[&id];
        slot.process.is_up() && slot.control.is_running()
    }

    async fn run_on_agent(
        &self,
        agent: u64,
        request: crate::client::ClientRequest,
    ) -> Result<crate::client::ClientAnswer, crate::client::AgentError> {
        use crate::client::AgentError;
        let slot = &self.agents[&agent];
        if !self.agent_serves(agent) {
            return Err(AgentError::Down(format!("agent {agent} is down")));
        }
        let Some(node) = self.handle.get_node(slot.process.node.id()) else {
            return Err(AgentError::Down(format!("agent {agent} is unknown")));
        };
        let (servers, members) = (Arc::clone(&slot.servers), Arc::clone(&slot.members));
        let node_clock = self.config.clocks.get(&agent).copied();
        let resend = self.config.resend_unanswered_writes;
        let task = node.spawn(clock::with_clock(node_clock, async move {
            crate::client::from_agent(&servers, &members, request, resend).await
        }));
        // Killed, or stopped after its leave: madsim cancels the node's
        // tasks, and the client sees its connection break.
        match task.await {
            Ok(answer) => answer,
            Err(e) => Err(AgentError::Unknown(format!("agent {agent}: {e}"))),
        }
    }

    /// Requests through client agents so far: (answered, refused with
    /// nothing done, left without an answer).
    pub fn agent_requests(&self) -> (u64, u64, u64) {
        let [answered, refused, unanswered] = &self.agent_requests;
        (
            answered.load(SeqCst),
            refused.load(SeqCst),
            unanswered.load(SeqCst),
        )
    }

    /// Server or client agent `id`'s process.
    fn process(&self, id: u64) -> &Process {
        match self.slots.get(&id) {
            Some(slot) => &slot.process,
            None => &self.agents[&id].process,
        }
    }

    fn live(&self, id: u64) -> Option<Live> {
        let slot = self.slots.get(&id)?;
        if !slot.process.is_up() {
            return None;
        }
        lock(&slot.live).clone()
    }

    /// Waits until every server built its Raft, then makes the initial
    /// ones one cluster (`initialize` on server 1 with all of them as
    /// voters); spares wait outside.
    pub async fn initialize(&self) {
        loop {
            if self.slots.keys().all(|id| self.live(*id).is_some()) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(1)).await;
        }
        let members: BTreeMap<u64, ServerNode> = self
            .ids()
            .into_iter()
            .map(|id| (id, server_node(id)))
            .collect();
        let first = self.live(1).expect("server 1 is up");
        first
            .raft
            .initialize(members)
            .await
            .expect("a fresh cluster initializes");
        self.trace.record(0, "initialize");
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.slots[&id].process.is_up()
    }

    /// Whether server or client agent `id` is paused.
    pub fn is_paused(&self, id: u64) -> bool {
        self.process(id).is_paused()
    }

    /// Kills `id` (every task it runs) and crashes its disk.
    pub fn kill(&self, id: u64) {
        let slot = &self.slots[&id];
        if !slot.process.kill(&self.handle) {
            return;
        }
        *lock(&slot.live) = None;
        lock(&slot.members).clear();
        slot.disk.crash(|bound| {
            use madsim::rand::Rng;
            madsim::rand::thread_rng().gen_range(0..bound.max(1))
        });
        self.trace.record(0, format!("kill n{id}"));
    }

    /// Why `id`'s Raft core stopped, if it stopped on a fault (a storage
    /// error, such as a read that failed its checksum). The daemon exits
    /// then; the simulation's supervisor kills and restarts the node.
    pub fn stopped_by_fault(&self, id: u64) -> Option<String> {
        let slot = self.slots.get(&id)?;
        if !slot.process.is_up() {
            return None;
        }
        if let Some(failure) = lock(&slot.start_failure).clone() {
            return Some(failure);
        }
        let live = self.live(id)?;
        let metrics = live.raft.metrics();
        let fault = tribune::raft::stopped_by_fault(&metrics.borrow_watched());
        fault
    }

    /// Restarts a killed node from its disk (not one lost for good).
    pub fn restart(&self, id: u64) {
        let slot = &self.slots[&id];
        if slot.retired.load(SeqCst) || !slot.process.restart(&self.handle) {
            return;
        }
        // The new incarnation has not run yet: nothing else writes this.
        *lock(&slot.start_failure) = None;
        self.trace.record(0, format!("restart n{id}"));
    }

    /// Stops running server or client agent `id`'s tasks (a long GC
    /// pause); time goes on.
    pub fn pause(&self, id: u64) {
        if self.process(id).pause(&self.handle) {
            self.trace.record(0, format!("pause {}", node_label(id)));
        }
    }

    pub fn resume(&self, id: u64) {
        if self.process(id).resume(&self.handle) {
            self.trace.record(0, format!("resume {}", node_label(id)));
        }
    }

    /// The server that believes it leads in the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.slots
            .keys()
            .filter(|id| !self.is_paused(**id))
            .filter_map(|id| {
                let live = self.live(*id)?;
                let metrics = live.raft.metrics();
                let m = metrics.borrow_watched();
                (m.state == ServerState::Leader).then_some((m.current_term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// `(applied index, last log index)` of a running server.
    pub fn progress(&self, id: u64) -> Option<(u64, u64)> {
        let live = self.live(id)?;
        let metrics = live.raft.metrics();
        let m = metrics.borrow_watched();
        Some((
            m.last_applied.as_ref().map_or(0, |l| l.index),
            m.last_log_index.unwrap_or(0),
        ))
    }

    /// A running server's store: applied index and state hash.
    pub fn store_state(&self, id: u64) -> Option<StoreSample> {
        let live = self.live(id)?;
        Some(sample(id, &live.store))
    }

    /// Reads a running server's store as it is (no barrier).
    pub fn store_fsm<T>(
        &self,
        id: u64,
        read: impl FnOnce(&tribune_core::fsm::Fsm) -> T,
    ) -> Option<T> {
        let live = self.live(id)?;
        Some(live.store.read(read))
    }

    /// Whether a running server's store has `key`: its value.
    pub fn local_value(&self, id: u64, key: &str) -> Option<ReadValue> {
        let live = self.live(id)?;
        Some(read_key(&live.store, key))
    }

    /// A client write through server `id`, waiting at most `timeout`.
    /// Like the daemon's leader, the server first passes the command
    /// through its leader machine (`Leader::prepare`: lock-delay, fresh
    /// session IDs); a server without leader duties refuses it.
    pub async fn write(&self, id: u64, command: Command, timeout: Duration) -> WriteOutcome {
        let Some(live) = self.live(id) else {
            return WriteOutcome::Refused(format!("server {id} is down"));
        };
        write_on(&live, self.now_on(id), command, timeout).await
    }

    /// Server `id`'s clock reading now.
    fn now_on(&self, id: u64) -> tribune_core::time::Instant {
        duties::now_on(self.config.clocks.get(&id).copied())
    }

    /// Renews `session` on server `id`, as `PUT /v1/session/renew` does on
    /// the daemon's leader: the session if it still exists, `None` if not;
    /// `Err` when the server is down, paused (after `timeout`) or holds no
    /// leader duties. A deposed leader that does not know it yet still
    /// answers, as in Consul.
    pub async fn renew_session(
        &self,
        id: u64,
        session: tribune_core::ids::SessionId,
        timeout: Duration,
    ) -> Result<Option<tribune_core::session::Session>, String> {
        let Some(live) = self.live(id) else {
            return Err(format!("server {id} is down"));
        };
        if self.is_paused(id) {
            madsim::time::sleep(timeout).await;
            return Err(format!("timed out after {timeout:?}"));
        }
        live.store
            .renew(self.now_on(id), session)
            .map_err(|_| "not the leader (no leader duties)".to_owned())
    }

    /// What node `id`'s gossip member list shows (a server's or a client
    /// agent's); `None` while it is down.
    pub fn members(&self, id: u64) -> Option<Vec<(String, tribune_core::gossip::MemberStatus)>> {
        let view = match self.agents.get(&id) {
            Some(agent) => {
                if !agent.process.is_up() {
                    return None;
                }
                &agent.members
            }
            None => {
                self.live(id)?;
                &self.slots[&id].members
            }
        };
        let members = lock(view);
        Some(members.iter().map(|m| (m.name.clone(), m.status)).collect())
    }

    /// Members that some server's gossip declared failed, over all
    /// servers and the whole run.
    pub fn gossip_failures(&self) -> u64 {
        self.gossip_failures.load(SeqCst)
    }

    /// Sessions that leader duties expired (proposed `SessionDestroy`
    /// for), over all servers.
    pub fn sessions_expired(&self) -> u64 {
        self.expiries.load(SeqCst)
    }

    /// Server `old` is lost for good (killed, its disk with it, never
    /// restarted) and spare server `new` takes its place, as an operator
    /// (or Consul's autopilot) replaces a dead server: from now on
    /// [`Cluster::ids`] has `new` and not `old`. The membership follows
    /// with [`Cluster::replace_voter`].
    pub fn retire(&self, old: u64, new: u64) {
        self.kill(old);
        self.slots[&old].retired.store(true, SeqCst);
        self.slots[&new].member.store(true, SeqCst);
        self.trace.record(0, format!("replace n{old} by n{new}"));
    }

    /// Through the leader at `leader`, retired server `old`'s replacement
    /// `new` joins as a learner, catches up, and the voters become the
    /// current ones without `old`, with `new` (`old` leaves the
    /// membership). `Err` if the leader could not do it within `timeout`
    /// (the liveness phase finishes the change with
    /// [`Cluster::set_voters`]).
    pub async fn replace_voter(
        &self,
        leader: u64,
        old: u64,
        new: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let Some(voters) = self.voters(leader) else {
            return Err(format!("server {leader} is down"));
        };
        let voters: BTreeSet<u64> = voters
            .into_iter()
            .filter(|id| *id != old)
            .chain([new])
            .collect();
        let change = self.set_voters(leader, voters, timeout).await;
        if let Err(e) = &change {
            self.trace
                .record(0, format!("replace n{old} by n{new} via n{leader}: {e}"));
        }
        change
    }

    /// Makes `voters` the voters and the only members through the leader
    /// at `id`: servers not yet members join as learners first (waiting
    /// until they catch up), and everyone else leaves the membership.
    pub async fn set_voters(
        &self,
        id: u64,
        voters: BTreeSet<u64>,
        timeout: Duration,
    ) -> Result<(), String> {
        let Some(live) = self.live(id) else {
            return Err(format!("server {id} is down"));
        };
        let nodes: BTreeSet<u64> = {
            let metrics = live.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        let change = async {
            for &new in voters.difference(&nodes) {
                live.raft
                    .add_learner(new, server_node(new), true)
                    .await
                    .map_err(|e| format!("add learner n{new}: {e}"))?;
            }
            let change = openraft::ChangeMembers::ReplaceAllVoters(voters.clone());
            live.raft
                .change_membership(change, false)
                .await
                .map_err(|e| e.to_string())?;
            let leftover: BTreeSet<u64> = {
                let metrics = live.raft.metrics();
                let m = metrics.borrow_watched();
                let membership = m.membership_config.membership();
                membership
                    .nodes()
                    .map(|(id, _)| *id)
                    .filter(|id| !voters.contains(id))
                    .collect()
            };
            if !leftover.is_empty() {
                live.raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(leftover), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        let what = format!("set voters to {voters:?} (only members) via n{id}");
        self.traced_change(what, timeout, change).await
    }

    /// Runs a membership change for at most `timeout` and traces its
    /// outcome after `what`.
    async fn traced_change(
        &self,
        what: String,
        timeout: Duration,
        change: impl std::future::Future<Output = Result<(), String>>,
    ) -> Result<(), String> {
        let result = match madsim::time::timeout(timeout, change).await {
            Err(_) => Err(format!("timed out after {timeout:?}")),
            Ok(result) => result,
        };
        let outcome = match &result {
            Ok(()) => "done".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        self.trace.record(0, format!("{what}: {outcome}"));
        result
    }

    /// Asks server `id` (the leader) to make `voters` the voting members,
    /// through openraft's joint consensus; the other servers stay in the
    /// cluster as learners (they keep replicating and applying).
    pub async fn change_voters(
        &self,
        id: u64,
        voters: BTreeSet<u64>,
        timeout: Duration,
    ) -> Result<(), String> {
        let Some(live) = self.live(id) else {
            return Err(format!("server {id} is down"));
        };
        let change = async {
            let changed = live.raft.change_membership(voters.clone(), true).await;
            changed.map(|_| ()).map_err(|e| e.to_string())
        };
        let what = format!("change voters to {voters:?} via n{id}");
        self.traced_change(what, timeout, change).await
    }

    /// The voters in server `id`'s effective membership (during a joint
    /// change: both configurations').
    pub fn voters(&self, id: u64) -> Option<BTreeSet<u64>> {
        let live = self.live(id)?;
        let metrics = live.raft.metrics();
        let m = metrics.borrow_watched();
        Some(m.membership_config.membership().voter_ids().collect())
    }

    /// A read of `key` served by server `id` in the cluster's read mode.
    pub async fn read(&self, id: u64, key: &str, timeout: Duration) -> ReadOutcome {
        let key = key.to_owned();
        match self
            .read_with(id, timeout, move |store| read_key(store, &key))
            .await
        {
            Ok(value) => ReadOutcome::Read(value),
            Err(e) => ReadOutcome::Failed(e),
        }
    }

    /// Reads server `id`'s state machine with `read` once the read mode's
    /// barrier passed there (for reads other than a KV key's value).
    pub async fn read_fsm<T: Send + 'static>(
        &self,
        id: u64,
        timeout: Duration,
        read: impl FnOnce(&tribune_core::fsm::Fsm) -> T + Send + 'static,
    ) -> Result<T, String> {
        self.read_with(id, timeout, move |store| store.read(read))
            .await
    }

    /// Runs `read` on server `id`'s store once the read mode's barrier
    /// passed there.
    async fn read_with<T: Send + 'static>(
        &self,
        id: u64,
        timeout: Duration,
        read: impl FnOnce(&ServerStore) -> T + Send + 'static,
    ) -> Result<T, String> {
        let Some(live) = self.live(id) else {
            return Err(format!("server {id} is down"));
        };
        let mode = self.config.read_mode;
        let round_timeout = round_timeout(&self.config);
        // Runs on the server, so its calls to the voters go out from its
        // address (and partitions apply).
        // A fresh handle: the one from `create_node` still points at the
        // node's first incarnation after a restart.
        let Some(node) = self.handle.get_node(self.madsim_id(id)) else {
            return Err(format!("server {id} is unknown"));
        };
        let node_clock = self.config.clocks.get(&id).copied();
        let task = node.spawn(clock::with_clock(node_clock, async move {
            barrier(mode, id, &live, round_timeout)
                .await
                .map(|()| read(&live.store))
        }));
        match madsim::time::timeout(timeout, task).await {
            Err(_) => Err(format!("timed out after {timeout:?}")),
            Ok(Err(e)) => Err(format!("server task ended: {e}")),
            Ok(Ok(outcome)) => outcome,
        }
    }
}

/// A client write on server `id` (running there or not), waiting at most
/// `timeout`: first through the leader machine (`Leader::prepare`), which
/// a server without leader duties refuses, then Raft.
pub(crate) async fn write_on(
    live: &Live,
    now: tribune_core::time::Instant,
    mut command: Command,
    timeout: Duration,
) -> WriteOutcome {
    match live.store.prepare(now, &mut command) {
        Err(duties::NotLeading::NotLeader) => {
            return WriteOutcome::Refused("not the leader (no leader duties)".into())
        }
        Ok(Err(answer)) => return WriteOutcome::Applied(answer),
        Ok(Ok(())) => {}
    }
    match madsim::time::timeout(timeout, live.raft.client_write(command)).await {
        Err(_) => WriteOutcome::Unknown(format!("timed out after {timeout:?}")),
        Ok(Ok(response)) => WriteOutcome::Applied(response.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(e)))) => {
            WriteOutcome::Refused(format!("not the leader: {e}"))
        }
        Ok(Err(e)) => WriteOutcome::Unknown(e.to_string()),
    }
}

/// What server `me` must pass, running on its node, before it reads its
/// store in read mode `mode`.
pub(crate) async fn barrier(
    mode: ReadMode,
    me: u64,
    live: &Live,
    round_timeout: Duration,
) -> Result<(), String> {
    match mode {
        ReadMode::LocalStale => Ok(()),
        ReadMode::Linearizable => linearizable_barrier(me, live, round_timeout).await,
        ReadMode::OpenraftReadIndex => {
            openraft_barrier(live, openraft::ReadPolicy::ReadIndex).await
        }
        ReadMode::OpenraftLeaseRead => {
            openraft_barrier(live, openraft::ReadPolicy::LeaseRead).await
        }
        ReadMode::DaemonDefault => default_barrier(me, live, round_timeout).await,
    }
}

fn read_key(store: &ServerStore, key: &str) -> ReadValue {
    store.read(|fsm| {
        fsm.kv
            .get(key)
            .map(|entry| (entry.value.to_vec(), entry.modify_index))
    })
}

fn sample(node: u64, store: &ServerStore) -> StoreSample {
    store.read(|fsm| {
        let mut hasher = SipHasher13::new_with_keys(1, 2);
        hasher.write(&fsm.snapshot());
        StoreSample {
            node,
            applied_index: fsm.last_applied,
            state_hash: hasher.finish(),
        }
    })
}

/// io-tokio's `read_index`, on the simulated network: note the term and
/// last log index, have a quorum of voters confirm they follow this server
/// in that term (questions sent after the read began), wait until the
/// noted index is applied; then the caller reads.
async fn linearizable_barrier(me: u64, live: &Live, round_timeout: Duration) -> Result<(), String> {
    let metrics = live.raft.metrics();
    let (term, read_index, configs, others) = {
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader || m.current_leader != Some(me) {
            return Err("not the leader".into());
        }
        let membership = m.membership_config.membership();
        let configs: Vec<BTreeSet<u64>> = membership.get_joint_config().clone();
        let others: Vec<u64> = membership.voter_ids().filter(|id| *id != me).collect();
        (
            m.current_term,
            m.last_log_index.unwrap_or(0),
            configs,
            others,
        )
    };
    let is_quorum = |granted: &BTreeSet<u64>| {
        !configs.is_empty()
            && configs
                .iter()
                .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
    };
    let mut granted = BTreeSet::from([me]);
    if !is_quorum(&granted) {
        let mut answers: FuturesUnordered<_> = others
            .iter()
            .map(|&id| async move {
                let question = Request::ConfirmLeader { term, leader: me };
                let duplicate_rate = live.network.duplicate_rate;
                (
                    id,
                    net::call(id, question, round_timeout, duplicate_rate).await,
                )
            })
            .collect();
        let confirmed = madsim::time::timeout(round_timeout, async {
            while let Some((id, answer)) = answers.next().await {
                match answer {
                    Ok(Response::Confirmed(true)) => {
                        granted.insert(id);
                        if is_quorum(&granted) {
                            return true;
                        }
                    }
                    Ok(Response::Confirmed(false)) => return false,
                    _ => {}
                }
            }
            false
        })
        .await;
        if confirmed != Ok(true) {
            return Err("leadership not confirmed".into());
        }
    }
    let mut metrics = metrics;
    let applied = metrics
        .wait_until(|m| {
            m.last_applied
                .as_ref()
                .is_some_and(|l| l.index >= read_index)
        })
        .await;
    if applied.is_err() {
        return Err("server stopped".into());
    }
    Ok(())
}

/// io-tokio's `default` read: openraft's lease read, raised to the last
/// log index (a leader resuming its term after a restart reuses its old
/// no-op entry), else the quorum round.
async fn default_barrier(me: u64, live: &Live, round_timeout: Duration) -> Result<(), String> {
    let last_log_index = {
        let metrics = live.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader || m.current_leader != Some(me) {
            return Err("not the leader".into());
        }
        m.last_log_index.unwrap_or(0)
    };
    let lease = madsim::time::timeout(
        round_timeout,
        live.raft
            .get_read_linearizer(openraft::ReadPolicy::LeaseRead),
    )
    .await;
    let Ok(Ok(linearizer)) = lease else {
        return linearizable_barrier(me, live, round_timeout).await;
    };
    let index = linearizer.read_log_id().index().max(last_log_index);
    let mut metrics = live.raft.metrics();
    let applied = metrics
        .wait_until(|m| m.last_applied.as_ref().is_some_and(|l| l.index >= index))
        .await;
    if applied.is_err() {
        return Err("server stopped".into());
    }
    Ok(())
}

/// openraft's linearizable read; then the caller reads the server's store.
async fn openraft_barrier(live: &Live, policy: openraft::ReadPolicy) -> Result<(), String> {
    match live.raft.ensure_linearizable(policy).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// What every incarnation of every server is built with.
#[derive(Clone)]
struct NodeSettings {
    raft: Arc<openraft::Config>,
    forget_sessions_on_takeover: bool,
    partial_txns: bool,
    /// Session expiries proposed by leader duties, over all servers.
    expiries: Arc<AtomicU64>,
    /// With gossip on: every server's id (each joins the others).
    gossip: Option<Vec<u64>>,
    gossip_failures: Arc<AtomicU64>,
    /// Serve clients' requests over the network (`crate::client`): when
    /// there are client agents to send them (elsewhere the listener's
    /// task would only move madsim's scheduling draws).
    serve_clients: bool,
    resend_unanswered_writes: bool,
    read_mode: ReadMode,
    round_timeout: Duration,
}

/// Where a node's current incarnation reports to its slot: its Raft once
/// started, or why it failed to start.
struct Incarnation {
    live: Arc<Mutex<Option<Live>>>,
    start_failure: Arc<Mutex<Option<String>>>,
    members: crate::gossip::MemberView,
}

async fn run_node(
    id: u64,
    disk: Disk,
    network: Network,
    incarnation: Incarnation,
    trace: Trace,
    observations: Arc<Mutex<Observations>>,
    settings: NodeSettings,
) {
    use madsim::rand::Rng;
    let Incarnation {
        live,
        start_failure,
        members,
    } = incarnation;
    trace.record(id, "start");
    if let Some(servers) = &settings.gossip {
        let peers = servers
            .iter()
            .filter(|other| **other != id)
            .map(|other| crate::gossip::addr(*other))
            .collect();
        let setup = crate::gossip::Setup {
            id,
            config: crate::gossip::sim_config(),
            peers,
            view: Arc::clone(&members),
            control: crate::gossip::Control::default(),
            trace: trace.clone(),
            failures: Arc::clone(&settings.gossip_failures),
        };
        madsim::task::spawn(clock::inherit(crate::gossip::run(
            setup,
            madsim::rand::thread_rng().gen(),
        )));
    }
    let store = Arc::new(ServerStore::new(
        madsim::rand::thread_rng().gen(),
        settings.forget_sessions_on_takeover,
        settings.partial_txns,
    ));
    let state_machine = StateMachine::<C>::with_snapshot_file(store.clone(), disk.snapshot_file())
        .expect("the snapshot on the simulated disk is valid");
    // Starting reads the log (a read may fail its checksum): the daemon
    // then exits with the error, and so does this incarnation, for the
    // supervisor to start another.
    let raft = match Raft::new(
        id,
        settings.raft,
        network.clone(),
        disk.open(),
        state_machine,
    )
    .await
    {
        Ok(raft) => raft,
        Err(e) => {
            trace.record(id, format!("failed to start: {e}"));
            *lock(&start_failure) = Some(e.to_string());
            return;
        }
    };
    let started = Live {
        raft: raft.clone(),
        store: Arc::clone(&store),
        network,
    };
    *lock(&live) = Some(started.clone());
    let clients = Arc::new(crate::client::ServerSide {
        id,
        live: started,
        read_mode: settings.read_mode,
        round_timeout: settings.round_timeout,
        clock: clock::current(),
        resend_unanswered: settings.resend_unanswered_writes,
    });
    madsim::task::spawn(clock::inherit(duties::run_duties(
        id,
        raft.clone(),
        Arc::clone(&store),
        trace.clone(),
        settings.expiries,
        settings.gossip.is_some().then_some(members),
    )));
    madsim::task::spawn(watch(
        id,
        raft.clone(),
        store,
        disk,
        trace.clone(),
        observations,
    ));
    if settings.serve_clients {
        madsim::task::spawn(clock::inherit(crate::client::serve(clients, trace.clone())));
    }
    net::serve(move |request| {
        let raft = raft.clone();
        let trace = trace.clone();
        async move {
            trace.record(id, format!("recv {}", request.kind()));
            handle(id, &raft, request).await
        }
    })
    .await;
}

async fn handle(id: u64, raft: &Raft, request: Request) -> Response {
    match request {
        Request::Append(rpc) => {
            Response::Append(raft.append_entries(rpc).await.map_err(|e| e.to_string()))
        }
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await.map_err(|e| e.to_string())),
        Request::PreVote(rpc) => {
            Response::Vote(raft.pre_vote(rpc).await.map_err(|e| e.to_string()))
        }
        Request::Snapshot { vote, meta, data } => {
            let snapshot = SnapshotOf::<C, bytes::Bytes> {
                meta,
                snapshot: data,
            };
            Response::Snapshot(
                raft.install_full_snapshot(vote, snapshot)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }
        Request::ConfirmLeader { term, leader } => {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            Response::Confirmed(
                m.current_term == term && m.current_leader == Some(leader) && leader != id,
            )
        }
    }
}

/// Follows a node's metrics: traces every change, and records leaders,
/// applied entries and store samples.
async fn watch(
    id: u64,
    raft: Raft,
    store: Arc<ServerStore>,
    disk: Disk,
    trace: Trace,
    observations: Arc<Mutex<Observations>>,
) {
    let mut metrics = raft.metrics();
    let incarnation = disk.crashes();
    let mut last = None;
    let mut recorded_applied: Option<u64> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (
                m.state,
                m.current_term,
                m.current_leader,
                m.last_log_index,
                m.local_committed,
                m.last_applied,
                (
                    m.vote.leader_id.term,
                    m.vote.leader_id.node_id,
                    m.vote.committed,
                ),
            )
        };
        let fault = tribune::raft::stopped_by_fault(&metrics.borrow_watched());
        if let Some(fault) = fault {
            trace.record(id, format!("stopped on a fault: {fault}"));
            return;
        }
        if last.as_ref() != Some(&now) {
            let (state, term, leader, last_log, committed, applied, vote) = now;
            trace.record(
                id,
                format!(
                    "{state:?} term={term} leader={leader:?} last_log={last_log:?} committed={} applied={}",
                    committed.as_ref().map_or("-".into(), |l| l.to_string()),
                    applied.as_ref().map_or("-".into(), |l| l.to_string()),
                ),
            );
            let mut obs = lock(&observations);
            if state == ServerState::Leader {
                obs.leaders.push((term, id));
            }
            obs.votes.push((id, incarnation, vote.0, vote.1, vote.2));
            if let Some(applied) = &applied {
                let from = recorded_applied.map_or(0, |i| i + 1);
                if applied.index + 1 > from {
                    for entry in disk.entries(from, applied.index + 1) {
                        obs.applied.push((id, entry.log_id()));
                    }
                    recorded_applied = Some(applied.index);
                    obs.samples.push(sample(id, &store));
                }
            }
            last = Some(now);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

//! The node's shared state and its single write path.
//!
//! `-dev` is one server with an in-memory log: a write is prepared by the
//! leader, appended (given the next index), committed at once, and applied.
//! A server in a cluster hands the middle to Raft (`crate::cluster`): the
//! leader prepares and proposes, followers forward, and Raft's state
//! machine applies committed entries here through [`Store`]. Handlers only
//! call [`Node::write`], [`Node::read_barrier`] and [`Node::read`], the
//! same in both modes.
//!
//! Blocking queries register a waiter in core's `Watches`; an apply that
//! touches a watched key fires a oneshot here.

use crate::clock;
use crate::cluster::{Cluster, ClusterError, LeaderIs, RPC_HOLD_TIMEOUT};
use crate::raft::rpc::{ServerReply, ServerRequest};
use crate::raft::rpc_server::BoxFuture;
use crate::raft::{ForwardError, ForwardReply, Store, WriteHandler};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{mpsc, oneshot, Notify};
use tribune_core::agent::{AgentOutput, LocalAgent};
use tribune_core::api::query::Consistency;
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

/// How often a leader waiting for a commit checks that it still leads.
const LEADERSHIP_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// A server (or `-dev`), not a client agent.
    pub server: bool,
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
    /// This node leads: its `leader` timers may propose (always in `-dev`).
    leading: bool,
    /// In a cluster, what the agent and the leader's timers want written
    /// goes here (to [`Node::run_proposals`]) instead of being applied.
    proposals: Option<mpsc::UnboundedSender<Proposal>>,
    /// Bumped when the whole store is replaced (a snapshot restore), so
    /// readers that cache by table index (the DNS threads) start afresh:
    /// a restored store may repeat indexes with other contents.
    generation: u64,
}

/// A write the node itself wants (catalog sync, session expiry).
pub struct Proposal {
    command: Command,
    /// Retried until there is a leader (the agent's own registrations);
    /// a leader's timer output is not: the next leader re-arms its timers.
    retry: bool,
}

pub struct Node {
    /// The `Arc` this node lives in (for requests served on its behalf).
    me: std::sync::Weak<Node>,
    /// Writes (applies, agent changes, timers) take it exclusively; reads
    /// (HTTP reads, DNS answers) share it, so the DNS threads answer in
    /// parallel.
    inner: RwLock<Inner>,
    /// Wakes the timer loop when deadlines may have moved earlier.
    timers_changed: Notify,
    pub identity: Identity,
    /// User events this agent has seen (not replicated state).
    pub events: crate::events::Events,
    /// Set when the node is a server in a Raft cluster.
    cluster: OnceLock<Arc<Cluster>>,
    /// Set when the agent runs the serf LAN pool.
    gossip: OnceLock<crate::gossip::Gossip>,
    /// Set on a server: the WAN pool of every datacenter's servers.
    wan: OnceLock<crate::gossip::Gossip>,
    /// Set on a client agent: the servers it sends cluster requests to.
    upstream: OnceLock<Arc<crate::upstream::Upstream>>,
    replicated: bool,
}

/// A write that could not be carried out (beyond a command's own result).
#[derive(Debug)]
pub enum WriteError {
    /// The log refused the entry, or the outcome is unknown.
    NotCommitted(String),
    /// No leader within the hold timeout (Consul's "No cluster leader").
    NoLeader,
    /// A client agent knows no server that answers ("No known Consul
    /// servers").
    NoServers,
}

impl From<ClusterError> for WriteError {
    fn from(e: ClusterError) -> WriteError {
        match e {
            ClusterError::NoLeader => WriteError::NoLeader,
            ClusterError::Failed(why) => WriteError::NotCommitted(why),
        }
    }
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

    /// The last apply may have moved a timer earlier (a session created or
    /// removed, a tombstone to reap, a new store): the timer loop must look
    /// again.
    fn timers_moved(&self) -> bool {
        !self.effects.sessions_created.is_empty()
            || !self.effects.sessions_removed.is_empty()
            || self.effects.store_replaced
            || self.effects.tombstoned.is_some()
    }

    /// Appends to the in-memory log; the entry is committed on return.
    fn append(&mut self, _command: &Command) -> u64 {
        self.last_log_index += 1;
        self.last_log_index
    }

    fn apply(&mut self, now: Instant, index: u64, command: &Command) -> CommandResult {
        self.effects.clear();
        let result = self.fsm.apply(index, command, &mut self.effects);
        if self.effects.store_replaced {
            self.store_replaced(now);
            return result;
        }
        self.leader.on_applied(now, &self.effects);
        for id in self.watches.fire(&self.effects.touched) {
            if let Some(waiter) = self.waiters.remove(&id) {
                // The receiver may be gone (client left): nothing to do.
                let _ = waiter.send(());
            }
        }
        result
    }

    /// After the whole store was replaced (a restore committed, or a Raft
    /// snapshot was installed): session timers are re-armed from the new
    /// sessions, cached DNS answers are dropped, every blocking query wakes
    /// and answers from the new store, and the agent's own node is
    /// repaired at once (anti-entropy), as the new catalog may not know it.
    fn store_replaced(&mut self, now: Instant) {
        let seed = self.rng.next_u64();
        self.leader = Leader::new(now, seed, &self.fsm);
        self.generation += 1;
        let waiting: Vec<WaiterId> = self.waiters.keys().copied().collect();
        for id in waiting {
            self.watches.cancel(id);
            if let Some(waiter) = self.waiters.remove(&id) {
                let _ = waiter.send(());
            }
        }
        let repairs = tribune_core::anti_entropy::diff(&self.agent, &self.fsm.catalog);
        for command in repairs {
            self.propose(now, command, true);
        }
    }

    /// Writes `command` at once (`-dev`) or queues it for Raft.
    fn propose(&mut self, now: Instant, command: Command, retry: bool) {
        match &self.proposals {
            Some(proposals) => {
                // The proposer is gone only while the process ends.
                let _ = proposals.send(Proposal { command, retry });
            }
            None => {
                if let CommandResult::Failed(e) = self.write(now, command) {
                    crate::log::warn(&format!("agent: catalog sync failed: {e}"));
                }
            }
        }
    }

    /// Proposes what the leader and the local agent queued.
    fn drain_outputs(&mut self, now: Instant) {
        loop {
            if let Some(Output::Propose(command)) = self.leader.poll() {
                // A follower's leader state only tracks; it never proposes.
                if self.leading {
                    self.propose(now, command, false);
                }
                continue;
            }
            match self.agent.poll() {
                Some(AgentOutput::Propose(command)) => {
                    self.propose(now, command, true);
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
    /// A `-dev` node: one server, the in-memory log.
    pub fn new(identity: Identity, agent: LocalAgent, seed: u64) -> Arc<Node> {
        Node::build(identity, agent, seed, None)
    }

    /// A server whose writes go through Raft once [`Node::attach`]ed; what
    /// the node itself proposes arrives on the receiver, for
    /// [`Node::run_proposals`].
    pub fn new_replicated(
        identity: Identity,
        agent: LocalAgent,
        seed: u64,
    ) -> (Arc<Node>, mpsc::UnboundedReceiver<Proposal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Node::build(identity, agent, seed, Some(tx)), rx)
    }

    fn build(
        identity: Identity,
        agent: LocalAgent,
        seed: u64,
        proposals: Option<mpsc::UnboundedSender<Proposal>>,
    ) -> Arc<Node> {
        let replicated = proposals.is_some();
        let fsm = Fsm::default();
        let mut rng = Rng::from_seed(seed);
        let leader = Leader::new(clock::now(), rng.next_u64(), &fsm);
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
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
                leading: !replicated,
                proposals,
                generation: 0,
            }),
            timers_changed: Notify::new(),
            identity,
            events: crate::events::Events::default(),
            cluster: OnceLock::new(),
            gossip: OnceLock::new(),
            wan: OnceLock::new(),
            upstream: OnceLock::new(),
            replicated,
        });
        let server_port = node.identity.server.then_some(node.identity.server_port);
        // In a gossip pool the leader owns the node's `serfHealth`; the
        // dev agent has no pool and reports its own.
        match replicated {
            true => node.with_agent(|agent| agent.register_node_in_pool(server_port)),
            false => node.with_agent(|agent| agent.register_node(server_port)),
        }
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

    /// Connects the node to its Raft cluster (once).
    pub fn attach(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Connects the node to its gossip pool (once).
    pub fn attach_gossip(&self, gossip: crate::gossip::Gossip) {
        let _ = self.gossip.set(gossip);
    }

    pub fn gossip(&self) -> Option<&crate::gossip::Gossip> {
        self.gossip.get()
    }

    /// Connects a server to the WAN pool (once).
    pub fn attach_wan(&self, gossip: crate::gossip::Gossip) {
        let _ = self.wan.set(gossip);
    }

    /// The WAN pool (servers only).
    pub fn wan(&self) -> Option<&crate::gossip::Gossip> {
        self.wan.get()
    }

    /// This node as an `Arc` (always, while anything can call it).
    fn me(&self) -> Result<Arc<Node>, ForwardError> {
        self.me
            .upgrade()
            .ok_or_else(|| ForwardError::Failed("agent shutting down".into()))
    }

    /// Makes this node a client agent of the servers `upstream` finds.
    pub fn attach_upstream(&self, upstream: Arc<crate::upstream::Upstream>) {
        let _ = self.upstream.set(upstream);
    }

    /// The servers of a client agent (`None` on servers and `-dev`).
    pub fn upstream(&self) -> Option<&Arc<crate::upstream::Upstream>> {
        self.upstream.get()
    }

    /// A client agent's request to a server.
    pub async fn to_server(
        &self,
        request: &ServerRequest,
        read_only: bool,
        deadline: std::time::Duration,
    ) -> Result<ServerReply, WriteError> {
        use crate::upstream::UpstreamError;
        let Some(upstream) = self.upstream.get() else {
            return Err(WriteError::NotCommitted("not a client agent".into()));
        };
        upstream
            .call(request, read_only, deadline)
            .await
            .map_err(|e| match e {
                UpstreamError::NoServers => WriteError::NoServers,
                UpstreamError::Refused(ForwardError::NotLeader { .. }) => WriteError::NoLeader,
                UpstreamError::Refused(ForwardError::Failed(why)) | UpstreamError::Failed(why) => {
                    WriteError::NotCommitted(why)
                }
            })
    }

    /// A server's request to a server of another datacenter, found in the
    /// WAN pool. `None`: no server of `datacenter` is known ("No path to
    /// datacenter").
    pub async fn to_datacenter(
        &self,
        datacenter: &str,
        request: &ServerRequest,
        read_only: bool,
        deadline: std::time::Duration,
    ) -> Option<Result<ServerReply, WriteError>> {
        use crate::raft::rpc::{decode_body, encode_body};
        let (wan, cluster) = (self.wan.get()?, self.cluster.get()?);
        let servers = crate::upstream::servers_of(&wan.members().await, datacenter);
        if servers.is_empty() {
            return None;
        }
        use tribune_core::route::{Call, Step};
        let body = encode_body(request);
        let call = Call::from_client(clock::now(), read_only);
        let mut last_error = String::new();
        for server in servers {
            // Another server is tried only when nothing was sent, or for a
            // read (core's `route::Call`): a write sent and not answered
            // may have been applied there.
            let kind = tribune_core::rpc_frame::FrameKind::Request;
            let reply = cluster
                .client
                .try_call(server, kind, &body, deadline, deadline)
                .await;
            let (miss, why) = match reply {
                Ok(bytes) => {
                    let answer = decode_body::<Result<ServerReply, ForwardError>>(&bytes)
                        .map_err(|e| WriteError::NotCommitted(format!("server {server}: {e}")));
                    return Some(answer.and_then(|a| {
                        a.map_err(|e| match e {
                            ForwardError::NotLeader { .. } => WriteError::NoLeader,
                            ForwardError::Failed(why) => WriteError::NotCommitted(why),
                        })
                    }));
                }
                Err((miss, e)) => (miss, e.to_string()),
            };
            cluster.client.forget(server);
            last_error = format!("server {server} of {datacenter}: {why}");
            if call.missed(miss) != Step::Next {
                return Some(Err(WriteError::NotCommitted(format!(
                    "rpc error talking to server {server} of {datacenter}: {why}"
                ))));
            }
        }
        Some(Err(WriteError::NotCommitted(last_error)))
    }

    /// What the catalog holds for this agent's node, for anti-entropy: the
    /// local store on a server, a server's answer on a client.
    pub async fn own_catalog(&self) -> Result<tribune_core::catalog::Catalog, WriteError> {
        if self.upstream.get().is_none() {
            return Ok(self.read(|inner| inner.fsm.catalog.node_slice(&self.identity.node_name)));
        }
        let request = ServerRequest::NodeCatalog {
            node: self.identity.node_name.clone(),
        };
        let timeout =
            std::time::Duration::from_nanos(tribune_core::limits::RPC_CALL_TIMEOUT.as_nanos());
        match self.to_server(&request, true, timeout).await? {
            ServerReply::Catalog(catalog) => Ok(catalog),
            other => Err(WriteError::NotCommitted(format!(
                "unexpected answer to a catalog read: {other:?}"
            ))),
        }
    }

    /// Replicates and applies a command.
    pub async fn write(&self, command: Command) -> Result<CommandResult, WriteError> {
        if self.upstream.get().is_some() {
            let timeout =
                std::time::Duration::from_nanos(tribune_core::limits::RPC_CALL_TIMEOUT.as_nanos())
                    + RPC_HOLD_TIMEOUT;
            return match self
                .to_server(&ServerRequest::ClientWrite(command), false, timeout)
                .await?
            {
                ServerReply::Written(result) => Ok(result),
                other => Err(WriteError::NotCommitted(format!(
                    "unexpected answer to a write: {other:?}"
                ))),
            };
        }
        if !self.replicated {
            let (result, arms_timers) = {
                let mut inner = self.lock();
                let result = inner.write(clock::now(), command);
                (result, inner.timers_moved())
            };
            if arms_timers {
                self.timers_changed.notify_one();
            }
            return Ok(result);
        }
        let call = tribune_core::route::Call::to_leader(clock::now(), false);
        loop {
            let attempt = match self.cluster.get() {
                None => Ok(None),
                Some(cluster) => match cluster.leader() {
                    LeaderIs::Me => match self.write_as_leader(cluster, command.clone()).await {
                        Ok(reply) => Ok(Some(reply)),
                        Err(ForwardError::NotLeader { .. }) => Ok(None),
                        Err(ForwardError::Failed(why)) => Err(ClusterError::Failed(why)),
                    },
                    LeaderIs::Other { addr, .. } => cluster.forward_write(addr, &command).await,
                    LeaderIs::Unknown => Ok(None),
                },
            };
            // No answer yet: no leader, or it was not reached (nothing sent).
            if let Some(reply) = attempt? {
                return Ok(reply.result);
            }
            match call.exhausted(clock::now()) {
                tribune_core::route::Step::Wait(pause) => tokio::time::sleep(pause.to_std()).await,
                _ => return Err(WriteError::NoLeader),
            }
        }
    }

    /// The leader's half of a write: `prepare` (lock-delay, session IDs),
    /// then Raft.
    async fn write_as_leader(
        &self,
        cluster: &Cluster,
        mut command: Command,
    ) -> Result<ForwardReply, ForwardError> {
        if let Some(disk) = cluster.disk.get() {
            disk.check().map_err(ForwardError::Failed)?;
        }
        {
            let now = clock::now();
            let mut inner = self.lock();
            if !inner.leading {
                return Err(ForwardError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                });
            }
            let Inner { leader, fsm, .. } = &mut *inner;
            if let Err(result) = leader.prepare(now, fsm, &mut command) {
                return Ok(ForwardReply {
                    index: fsm.last_applied,
                    result,
                });
            }
        }
        // Wait for the commit while this server still leads with a quorum
        // behind it; a leader cut off from the quorum would wait forever.
        // The entry may still commit later under a new leader, so the
        // outcome is unknown and not retried: Consul's ErrLeadershipLost.
        let write = crate::raft::rpc_server::client_write(&cluster.raft, command);
        tokio::pin!(write);
        loop {
            tokio::select! {
                reply = &mut write => return reply,
                () = tokio::time::sleep(LEADERSHIP_CHECK) => {
                    if cluster.leader() != LeaderIs::Me {
                        return Err(ForwardError::Failed(
                            "leadership lost while committing log".into(),
                        ));
                    }
                }
            }
        }
    }

    /// Waits until a read in `consistency` mode may be served from this
    /// node's store: `stale` at once; `default` once this node applied
    /// what the leader had applied under its lease; `consistent` once it
    /// applied a read index the leader confirmed with a quorum.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), WriteError> {
        let Some(cluster) = self.cluster.get() else {
            return match self.replicated {
                true if consistency != Consistency::Stale => Err(WriteError::NoLeader),
                _ => Ok(()),
            };
        };
        let linearizable = match consistency {
            Consistency::Stale => return Ok(()),
            Consistency::Default => false,
            Consistency::Consistent => true,
        };
        let reply = cluster
            .to_leader(ServerRequest::ReadIndex { linearizable }, |request| {
                self.serve_request(request)
            })
            .await?;
        let ServerReply::ReadIndex(index) = reply else {
            return Err(WriteError::NotCommitted(format!(
                "unexpected answer to a read index: {reply:?}"
            )));
        };
        cluster
            .raft
            .wait(Some(RPC_HOLD_TIMEOUT))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| WriteError::NotCommitted(format!("waiting to apply {index}: {e}")))
    }

    /// The leader's read index: its last log index, once leadership is
    /// confirmed by a quorum (`consistent`, [`crate::read_index`]) or
    /// under its lease (`default`, falling back to a quorum round when the
    /// lease lapsed).
    async fn read_index(&self, linearizable: bool) -> Result<ServerReply, ForwardError> {
        use openraft::raft::ReadPolicy;
        let Some(cluster) = self.cluster.get() else {
            return Err(ForwardError::Failed("not in a cluster".into()));
        };
        let term = crate::read_index::leading_term(cluster)?;
        // Every write acknowledged before this read began is committed, so
        // it is in the leader's log by now (leader completeness): waiting
        // for the last log index, taken before leadership is confirmed,
        // covers it. openraft's read log id alone does not after a restart:
        // a leader that resumes its term from the persisted vote reuses its
        // old no-op entry and starts without knowing the commit index, so
        // it would answer from a store missing acknowledged writes (found
        // by tests/cluster.rs, SIGKILL of every server).
        let last_log_index = cluster.last_log_index();
        if !linearizable {
            if let Ok(Ok(linearizer)) = tokio::time::timeout(
                RPC_HOLD_TIMEOUT,
                cluster.raft.get_read_linearizer(ReadPolicy::LeaseRead),
            )
            .await
            {
                let index = linearizer.read_log_id().index().max(last_log_index);
                return Ok(ServerReply::ReadIndex(index));
            }
        }
        cluster.leader_check.confirm(cluster, term).await?;
        Ok(ServerReply::ReadIndex(last_log_index))
    }

    /// Answers a server request as this node (the leader's side of
    /// forwarding, and the join exchange).
    fn serve_request(
        &self,
        request: ServerRequest,
    ) -> BoxFuture<'_, Result<ServerReply, ForwardError>> {
        Box::pin(async move {
            let Some(cluster) = self.cluster.get() else {
                return Err(ForwardError::Failed("server starting".into()));
            };
            match request {
                ServerRequest::Hello(info) => cluster.hello(info),
                ServerRequest::RenewSession(id) => self.renew_as_leader(id),
                ServerRequest::ReadIndex { linearizable } => self.read_index(linearizable).await,
                ServerRequest::ConfirmLeader { term, leader } => Ok(ServerReply::LeaderConfirmed(
                    crate::read_index::follows(cluster, term, leader),
                )),
                ServerRequest::AddServer(info) => match cluster.leader() {
                    LeaderIs::Me => cluster.add_server(info).await,
                    // A joining server knows no leader yet: pass it on.
                    LeaderIs::Other { addr, .. } => {
                        match cluster.call(addr, &ServerRequest::AddServer(info)).await {
                            Ok(answer) => answer,
                            Err(e) => Err(ForwardError::Failed(format!("leader at {addr}: {e}"))),
                        }
                    }
                    LeaderIs::Unknown => Err(not_leader()),
                },
                ServerRequest::RemoveServer { id } => match cluster.leader() {
                    LeaderIs::Me => cluster.remove_server(id).await,
                    _ => Err(not_leader()),
                },
                ServerRequest::ClientWrite(command) => match self.write(command).await {
                    Ok(result) => Ok(ServerReply::Written(result)),
                    Err(WriteError::NoLeader | WriteError::NoServers) => Err(not_leader()),
                    Err(WriteError::NotCommitted(why)) => Err(ForwardError::Failed(why)),
                },
                ServerRequest::Http(call) => Ok(ServerReply::Http(
                    crate::http::serve_forwarded(self.me()?, call).await,
                )),
                ServerRequest::Dns { config, question } => {
                    let mut rng = self.fork_rng();
                    let serial = crate::dns::unix_seconds();
                    let inner = self.lock_shared();
                    let answer = tribune_core::dns::answer::answer_cached(
                        &inner.fsm,
                        &config,
                        &question,
                        serial,
                        &mut rng,
                        &mut tribune_core::dns::cache::ServiceCache::default(),
                    );
                    Ok(ServerReply::Dns(Box::new(answer)))
                }
                ServerRequest::NodeCatalog { node } => {
                    match self.read_barrier(Consistency::Default).await {
                        Ok(()) => Ok(ServerReply::Catalog(
                            self.read(|inner| inner.fsm.catalog.node_slice(&node)),
                        )),
                        Err(WriteError::NotCommitted(why)) => Err(ForwardError::Failed(why)),
                        Err(_) => Err(not_leader()),
                    }
                }
            }
        })
    }

    /// Sends `request` to the leader (or serves it here when leading).
    pub async fn to_leader(&self, request: ServerRequest) -> Result<ServerReply, WriteError> {
        let Some(cluster) = self.cluster.get() else {
            return Err(WriteError::NoLeader);
        };
        Ok(cluster
            .to_leader(request, |request| self.serve_request(request))
            .await?)
    }

    fn renew_as_leader(
        &self,
        id: tribune_core::ids::SessionId,
    ) -> Result<ServerReply, ForwardError> {
        let now = clock::now();
        let mut inner = self.lock();
        if !inner.leading {
            return Err(not_leader());
        }
        let Inner { leader, fsm, .. } = &mut *inner;
        let session = leader.renew(now, fsm, id);
        drop(inner);
        self.timers_changed.notify_one();
        Ok(ServerReply::Session(session))
    }

    /// This node leads (its timers and reconciliation may propose).
    pub fn is_leading(&self) -> bool {
        self.lock_shared().leading
    }

    /// Leadership changed: a new leader takes over the session timers with
    /// fresh TTLs (as Consul does); a former leader stops proposing.
    pub fn set_leading(&self, leading: bool) {
        let now = clock::now();
        let mut inner = self.lock();
        if leading && !inner.leading {
            let seed = inner.rng.next_u64();
            inner.leader = Leader::new(now, seed, &inner.fsm);
        }
        inner.leading = leading;
        drop(inner);
        self.timers_changed.notify_one();
    }

    /// `X-Consul-KnownLeader` and `X-Consul-LastContact` for a read.
    pub fn leader_contact(&self) -> (bool, u64) {
        match self.cluster.get() {
            Some(cluster) => cluster.contact(),
            None => (!self.replicated, 0),
        }
    }

    /// Writes what the node itself proposes, in order (a server's catalog
    /// sync and the leader's session expiries).
    pub async fn run_proposals(self: Arc<Node>, mut proposals: mpsc::UnboundedReceiver<Proposal>) {
        while let Some(proposal) = proposals.recv().await {
            loop {
                match self.write(proposal.command.clone()).await {
                    Ok(CommandResult::Failed(e)) => {
                        crate::log::warn(&format!("agent: write failed: {e}"));
                    }
                    Ok(_) => {}
                    Err(WriteError::NoLeader) if proposal.retry => continue,
                    Err(e) => crate::log::warn(&format!("agent: write failed: {e:?}")),
                }
                break;
            }
        }
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
    pub async fn renew_session(
        &self,
        id: tribune_core::ids::SessionId,
    ) -> Result<Option<tribune_core::session::Session>, WriteError> {
        if !self.replicated {
            return match self.renew_as_leader(id) {
                Ok(ServerReply::Session(session)) => Ok(session),
                other => Err(WriteError::NotCommitted(format!("{other:?}"))),
            };
        }
        match self.to_leader(ServerRequest::RenewSession(id)).await? {
            ServerReply::Session(session) => Ok(session),
            other => Err(WriteError::NotCommitted(format!(
                "unexpected answer to a renewal: {other:?}"
            ))),
        }
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
        if let Some(upstream) = self.upstream.get() {
            return self.dns_answer_from_server(upstream, config, question);
        }
        let inner = self.lock_shared();
        // Read under the lock a restore holds while it bumps the
        // generation, so a cache never answers for another store.
        let generation = inner.generation;
        if *cache_generation != generation {
            *cache = ServiceCache::default();
            *cache_generation = generation;
        }
        tribune_core::dns::answer::answer_cached(&inner.fsm, config, question, serial, rng, cache)
    }

    /// A client agent's DNS answer: the question goes to a server, which
    /// answers from its store with this agent's DNS configuration; with no
    /// server, SERVFAIL (as Consul's client agents answer when their RPC
    /// fails).
    fn dns_answer_from_server(
        &self,
        upstream: &crate::upstream::Upstream,
        config: &DnsConfig,
        question: &Question,
    ) -> Answer {
        let request = ServerRequest::Dns {
            config: Box::new(config.clone()),
            question: question.clone(),
        };
        let timeout =
            std::time::Duration::from_nanos(tribune_core::limits::RPC_CALL_TIMEOUT.as_nanos());
        match upstream.block_on(self.to_server(&request, true, timeout)) {
            Ok(ServerReply::Dns(answer)) => *answer,
            Ok(other) => {
                crate::log::warn(&format!(
                    "dns: unexpected answer from the server: {other:?}"
                ));
                Answer::rcode(tribune_core::dns::Rcode::ServFail)
            }
            Err(e) => {
                crate::log::warn(&format!("dns: asking a server: {e:?}"));
                Answer::rcode(tribune_core::dns::Rcode::ServFail)
            }
        }
    }

    /// Which store the state is: changes only when a snapshot is restored.
    pub fn generation(&self) -> u64 {
        self.lock_shared().generation
    }

    /// Replaces the whole store with an installed Raft snapshot, with the
    /// effects of `Inner::store_replaced`. Later writes continue above
    /// both logs' last index. (`PUT /v1/snapshot` goes through the log
    /// instead: see `tribune_core::restore`.)
    pub fn restore(&self, fsm: Fsm) {
        let now = clock::now();
        let mut inner = self.lock();
        inner.last_log_index = inner.last_log_index.max(fsm.last_applied);
        inner.fsm = fsm;
        inner.store_replaced(now);
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

fn not_leader() -> ForwardError {
    ForwardError::NotLeader {
        leader_id: None,
        leader_addr: None,
    }
}

/// Raft's state machine applies committed entries to the node's store.
impl Store for Node {
    fn apply(&self, index: u64, command: &Command) -> CommandResult {
        let now = clock::now();
        let mut inner = self.lock();
        let result = inner.apply(now, index, command);
        inner.last_log_index = index;
        let arms_timers = inner.timers_moved();
        drop(inner);
        if arms_timers {
            self.timers_changed.notify_one();
        }
        result
    }

    fn applied_index(&self) -> u64 {
        self.lock_shared().fsm.last_applied
    }

    fn snapshot(&self) -> Vec<u8> {
        self.lock_shared().fsm.snapshot()
    }

    fn restore(&self, fsm: Fsm) {
        Node::restore(self, fsm);
    }
}

/// The leader's side of what other servers ask.
impl WriteHandler for Node {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<ForwardReply, ForwardError>> {
        Box::pin(async move {
            match self.cluster.get() {
                Some(cluster) => self.write_as_leader(cluster, command).await,
                None => Err(not_leader()),
            }
        })
    }

    fn request(&self, request: ServerRequest) -> BoxFuture<'_, Result<ServerReply, ForwardError>> {
        self.serve_request(request)
    }

    fn leader_contact(&self) {
        if let Some(cluster) = self.cluster.get() {
            cluster.record_contact();
        }
    }
}

//! A server in a Raft cluster: formation, leader tracking, forwarding of
//! writes and reads, and membership changes.
//!
//! ```text
//!  HTTP write ──Node::write──> leader?  yes: Leader::prepare → raft.client_write
//!                                       no:  Forward frame ──> leader's WriteHandler (same path)
//!                                       none: hold and retry up to RPC_HOLD_TIMEOUT, then "No cluster leader"
//!  HTTP read ───read_barrier──> stale: none · default: leader lease · consistent: read index (quorum)
//!                               a follower asks the leader for the index, waits until it applied it,
//!                               then answers from its own store
//! ```
//!
//! Formation (until gossip carries server discovery): every server serves
//! a join exchange ([`ServerRequest::Hello`]) on its serf LAN port and
//! greets its `-retry-join` addresses each second, learning every server
//! the other knows. A server started with `-bootstrap-expect=N` that knows
//! exactly N servers of its datacenter, none of them part of a cluster
//! yet, initializes Raft with those N; all N do the same with the same
//! set, which Raft accepts. A server that meets a formed cluster asks it to
//! add it as a voter.

use crate::gossip::Gossip;
use crate::raft::network::ForwardCallError;
use crate::raft::rpc::{ServerInfo, ServerReply, ServerRequest};
use crate::raft::{forward, ForwardError, ForwardReply, Raft, RpcClient, RpcError, ServerNode};
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tribune_core::command::Command;
use tribune_core::formation::{next_step, Formation};
use tribune_core::limits::RPC_CALL_TIMEOUT;
use tribune_core::rpc_frame::FrameKind;

/// How long a request waits for a leader before it fails (Consul's
/// `rpc_hold_timeout`, core's `route::HOLD_TIMEOUT`).
pub const RPC_HOLD_TIMEOUT: Duration =
    Duration::from_nanos(tribune_core::route::HOLD_TIMEOUT.as_nanos());

/// Between two attempts while there is no leader.
const HOLD_RETRY: Duration = Duration::from_millis(50);

/// How many election timeouts (`election_timeout_max`) a leader may go
/// without a quorum's acknowledgement before it counts as no leader: 4.8 s
/// by default, four times the silence after which followers elect.
const QUORUM_LOST_TIMEOUTS: u64 = 6;

/// Between two rounds of the join exchange.
const JOIN_RETRY: Duration = Duration::from_secs(1);

/// A term and the log index of the configuration a leader leads with.
type Leading = (u64, Option<u64>);

/// Who leads, as this server last heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderIs {
    Me,
    Other { id: u64, addr: SocketAddr },
    Unknown,
}

/// One server of the configuration, for `list-peers` and
/// `/v1/operator/raft/configuration`.
#[derive(Clone, Debug)]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub addr: SocketAddr,
    pub leader: bool,
    pub voter: bool,
}

/// Why a request to the cluster failed.
#[derive(Debug)]
pub enum ClusterError {
    /// No leader within the hold timeout.
    NoLeader,
    /// The leader refused or the call failed in a way that is not safe to
    /// retry (the write may have been applied).
    Failed(String),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterError::NoLeader => f.write_str("No cluster leader"),
            ClusterError::Failed(why) => f.write_str(why),
        }
    }
}

pub struct Cluster {
    pub me: ServerInfo,
    pub raft: Raft,
    pub client: std::sync::Arc<RpcClient>,
    /// Servers met through the join exchange, by Raft id.
    known: Mutex<BTreeMap<u64, ServerInfo>>,
    /// When a leader's AppendEntries was last accepted.
    last_contact: Mutex<Option<std::time::Instant>>,
    /// The term and configuration (its log index) this server last led
    /// with, and when it first saw itself leading them: a new leader, or
    /// one whose voters just changed, gets an election timeout from then
    /// for a quorum to acknowledge it before it counts as having lost it.
    leading_since: Mutex<Option<(Leading, openraft::TokioInstant)>>,
    bootstrap_expect: Option<u32>,
    /// Leadership confirmations for linearizable reads.
    pub leader_check: crate::read_index::LeaderCheck,
    /// The file system under the Raft state, checked before proposing.
    pub disk: std::sync::OnceLock<crate::disk_space::DiskSpace>,
    /// The Raft log's counters (fsyncs and records), set by the agent.
    pub wal_stats: std::sync::OnceLock<crate::storage::WalStatsHandle>,
}

/// Raft's id for a node ID (a UUID): its first 64 bits.
pub fn raft_id(node_id: &str) -> Option<u64> {
    let hex: String = node_id.chars().filter(|c| *c != '-').take(16).collect();
    u64::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 16)
}

impl Cluster {
    pub fn new(
        me: ServerInfo,
        raft: Raft,
        client: std::sync::Arc<RpcClient>,
        bootstrap_expect: Option<u32>,
    ) -> Cluster {
        let known = BTreeMap::from([(me.id, me.clone())]);
        Cluster {
            me,
            raft,
            client,
            known: Mutex::new(known),
            last_contact: Mutex::new(None),
            leading_since: Mutex::new(None),
            bootstrap_expect,
            leader_check: crate::read_index::LeaderCheck::default(),
            disk: std::sync::OnceLock::new(),
            wal_stats: std::sync::OnceLock::new(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ServerInfo>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leader(&self) -> LeaderIs {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            Some(id) if id == self.me.id && m.state == ServerState::Leader => {
                match self.quorum_lost(&m) {
                    false => LeaderIs::Me,
                    true => LeaderIs::Unknown,
                }
            }
            Some(id) if id != self.me.id => match m.membership_config.get_node(&id) {
                Some(node) => LeaderIs::Other {
                    id,
                    addr: node.rpc_addr,
                },
                None => LeaderIs::Unknown,
            },
            _ => LeaderIs::Unknown,
        }
    }

    /// Whether this leader has gone longer than [`QUORUM_LOST_TIMEOUTS`]
    /// election timeouts without a quorum acknowledging it (Consul's leader
    /// steps down then, hashicorp/raft's `checkLeaderLease`; several
    /// timeouts rather than one, because followers busy with large entries
    /// or snapshots acknowledge late while this leader is still the only
    /// one, and failing its writes then would turn a slow commit into an
    /// unknown outcome). openraft keeps such a leader
    /// leading until a higher term reaches it, so its writes would wait
    /// for a commit that cannot come; counting it as no leader instead
    /// sends them to "No cluster leader" after the hold, as in Consul, and
    /// `/v1/status/leader` answers "". Once a quorum acknowledges it again
    /// it leads as before.
    fn quorum_lost(&self, m: &openraft::RaftMetrics<crate::raft::TypeConfig>) -> bool {
        if m.membership_config.voter_ids().count() <= 1 {
            return false;
        }
        let lease =
            Duration::from_millis(self.raft.config().election_timeout_max * QUORUM_LOST_TIMEOUTS);
        use openraft::Instant as _;
        let now = openraft::TokioInstant::now();
        let since = {
            let mut leading = self.leading_since.lock().unwrap_or_else(|p| p.into_inner());
            let key = (
                m.current_term,
                m.membership_config.log_id().map(|id| id.index),
            );
            match *leading {
                Some((led, since)) if led == key => since,
                _ => {
                    *leading = Some((key, now));
                    now
                }
            }
        };
        let acked = m.last_quorum_acked.as_deref().copied().unwrap_or(since);
        now.saturating_duration_since(acked.max(since)) > lease
    }

    /// The leader's server RPC address, if one is known.
    pub fn leader_addr(&self) -> Option<SocketAddr> {
        match self.leader() {
            LeaderIs::Me => Some(self.me.rpc_addr),
            LeaderIs::Other { addr, .. } => Some(addr),
            LeaderIs::Unknown => None,
        }
    }

    /// `X-Consul-KnownLeader` and `X-Consul-LastContact` (milliseconds
    /// since the leader was last heard from; 0 on the leader).
    pub fn contact(&self) -> (bool, u64) {
        match self.leader() {
            LeaderIs::Me => (true, 0),
            other => {
                let since = self
                    .last_contact
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
                (other != LeaderIs::Unknown, since.unwrap_or(0))
            }
        }
    }

    pub fn record_contact(&self) {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
    }

    /// The configuration as this server knows it (committed or not), and
    /// the index of the entry that set it.
    pub fn configuration(&self) -> (Vec<Peer>, u64) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let stored = &m.membership_config;
        let voters: BTreeSet<u64> = stored.voter_ids().collect();
        let peers = stored
            .nodes()
            .map(|(id, node)| Peer {
                id: *id,
                name: node.name.clone(),
                addr: node.rpc_addr,
                leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
            })
            .collect();
        (peers, stored.log_id().as_ref().map_or(0, |id| id.index))
    }

    /// `Stats.raft` of `/v1/agent/self`, as strings like Consul's.
    pub fn stats(&self) -> BTreeMap<&'static str, String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let index = |id: &Option<openraft::LogId<_>>| id.as_ref().map_or(0, |i| i.index);
        let mut stats = BTreeMap::from([
            ("state", format!("{:?}", m.state)),
            ("term", m.current_term.to_string()),
            ("last_log_index", m.last_log_index.unwrap_or(0).to_string()),
            ("commit_index", index(&m.local_committed).to_string()),
            ("applied_index", index(&m.last_applied).to_string()),
            ("last_snapshot_index", index(&m.snapshot).to_string()),
            (
                "num_peers",
                m.membership_config
                    .voter_ids()
                    .count()
                    .saturating_sub(1)
                    .to_string(),
            ),
        ]);
        if let Some(wal) = self.wal_stats.get() {
            let s = wal.stats();
            stats.insert("wal_fsyncs", s.batches.to_string());
            stats.insert("wal_records", s.records.to_string());
            let per = if s.batches == 0 {
                0.0
            } else {
                s.records as f64 / s.batches as f64
            };
            stats.insert("wal_records_per_fsync", format!("{per:.2}"));
        }
        stats
    }

    /// The index of this server's last log entry.
    pub fn last_log_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow_watched()
            .last_log_index
            .unwrap_or(0)
    }

    /// Calls `request` on the server at `addr`.
    pub async fn call(
        &self,
        addr: SocketAddr,
        request: &ServerRequest,
    ) -> Result<Result<ServerReply, ForwardError>, RpcError> {
        let reply = self
            .client
            .call(
                addr,
                FrameKind::Request,
                &crate::raft::rpc::encode_body(request),
                Duration::from_nanos(RPC_CALL_TIMEOUT.as_nanos()),
            )
            .await?;
        crate::raft::rpc::decode_body(&reply)
    }

    /// Sends `request` to the leader, holding while there is none. `local`
    /// answers it when this server leads. Every request sent this way
    /// (read indexes, renewals, removals) does the same however often it
    /// arrives, so one that brought no answer is sent again (core's
    /// `route::Call`).
    pub async fn to_leader<F, Fut>(
        &self,
        request: ServerRequest,
        local: F,
    ) -> Result<ServerReply, ClusterError>
    where
        F: Fn(ServerRequest) -> Fut,
        Fut: std::future::Future<Output = Result<ServerReply, ForwardError>>,
    {
        use tribune_core::route::{Call, Miss, Step};
        let call = Call::to_leader(crate::clock::now(), true);
        loop {
            let answer = match self.leader() {
                LeaderIs::Me => Ok(local(request.clone()).await),
                LeaderIs::Other { addr, .. } => self.call(addr, &request).await.map_err(|e| {
                    crate::log::debug(&format!("cluster: leader at {addr}: {e}"));
                    Miss::NoAnswer
                }),
                LeaderIs::Unknown => Err(Miss::NotLeader),
            };
            let miss = match answer {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(ForwardError::NotLeader { .. })) => Miss::NotLeader,
                Ok(Err(ForwardError::Failed(why))) => return Err(ClusterError::Failed(why)),
                Err(miss) => miss,
            };
            if let Step::Fail(_) = call.missed(miss) {
                return Err(ClusterError::Failed("no answer from the leader".into()));
            }
            match call.exhausted(crate::clock::now()) {
                Step::Wait(pause) => tokio::time::sleep(pause.to_std()).await,
                _ => return Err(ClusterError::NoLeader),
            }
        }
    }

    /// Forwards a write to the leader at `addr`. `Ok(None)`: try again
    /// (not the leader, or it could not be reached, so nothing was sent).
    pub async fn forward_write(
        &self,
        addr: SocketAddr,
        command: &Command,
    ) -> Result<Option<ForwardReply>, ClusterError> {
        match forward(&self.client, addr, command).await {
            Ok(reply) => Ok(Some(reply)),
            Err(ForwardCallError::Refused(ForwardError::NotLeader { .. })) => Ok(None),
            Err(ForwardCallError::Refused(ForwardError::Failed(why))) => {
                Err(ClusterError::Failed(why))
            }
            // Nothing reached the leader: connecting failed.
            Err(ForwardCallError::Rpc(RpcError::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                Ok(None)
            }
            Err(ForwardCallError::Rpc(e)) => Err(ClusterError::Failed(format!(
                "rpc error forwarding to the leader: {e}"
            ))),
        }
    }

    /// The join exchange, receiving side.
    pub fn hello(&self, from: ServerInfo) -> Result<ServerReply, ForwardError> {
        if from.datacenter != self.me.datacenter {
            return Err(ForwardError::Failed(format!(
                "server {} is in datacenter {:?}, this one is in {:?}",
                from.name, from.datacenter, self.me.datacenter
            )));
        }
        let mut known = self.known();
        known.insert(from.id, from);
        Ok(ServerReply::Hello {
            known: known.values().cloned().collect(),
            initialized: self.is_member(),
        })
    }

    /// This server is a voter of a formed cluster (a learner still being
    /// promoted is not yet).
    pub fn is_member(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let voter = m.membership_config.voter_ids().any(|id| id == self.me.id);
        voter
    }

    /// Adds a server as a voter (on the leader).
    pub async fn add_server(&self, info: ServerInfo) -> Result<ServerReply, ForwardError> {
        if info.datacenter != self.me.datacenter {
            return Err(ForwardError::Failed(format!(
                "server {} is in datacenter {:?}, the cluster is in {:?}",
                info.name, info.datacenter, self.me.datacenter
            )));
        }
        let (peers, _) = self.configuration();
        if peers
            .iter()
            .any(|p| p.id == info.id && p.addr == info.rpc_addr && p.voter)
        {
            return Ok(ServerReply::Done);
        }
        // As Consul's leader does (`joinConsulServer`): a server at this
        // address under another ID (it lost its data directory and came
        // back with a new node ID), or this ID at another address (it
        // moved), is taken out first, so that the stale entry does not stay
        // a voter that never answers.
        let stale: BTreeSet<u64> = peers
            .iter()
            .filter(|p| p.id != self.me.id && (p.addr == info.rpc_addr) != (p.id == info.id))
            .map(|p| p.id)
            .collect();
        if !stale.is_empty() {
            let change = ChangeMembers::RemoveVoters(stale.clone());
            self.while_in_progress(|| self.raft.change_membership(change.clone(), false))
                .await?;
            crate::log::info(&format!(
                "cluster: removed {} before adding server {} ({}): same address or ID",
                stale
                    .iter()
                    .map(|id| format!("{id:016x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                info.name,
                info.rpc_addr
            ));
        }
        let node = ServerNode::new(info.name.clone(), info.rpc_addr);
        // A learner first, caught up before it counts in the quorum.
        self.while_in_progress(|| self.raft.add_learner(info.id, node.clone(), true))
            .await?;
        let voters = ChangeMembers::AddVoterIds(BTreeSet::from([info.id]));
        self.while_in_progress(|| self.raft.change_membership(voters.clone(), false))
            .await?;
        crate::log::info(&format!(
            "cluster: added server {} ({})",
            info.name, info.rpc_addr
        ));
        Ok(ServerReply::Done)
    }

    /// Runs a membership change, again while another one is still in
    /// progress (e.g. the bootstrap configuration not yet committed right
    /// after the cluster formed), up to the hold timeout.
    async fn while_in_progress<F, Fut>(&self, change: F) -> Result<(), ForwardError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
                openraft::error::RaftError<
                    crate::raft::TypeConfig,
                    openraft::error::ClientWriteError<crate::raft::TypeConfig>,
                >,
            >,
        >,
    {
        use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
        let hold_until = tokio::time::Instant::now() + RPC_HOLD_TIMEOUT;
        loop {
            let result = change().await;
            let in_progress = matches!(
                &result,
                Err(RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))
                ))
            );
            if !in_progress || tokio::time::Instant::now() >= hold_until {
                return crate::raft::rpc_server::client_result(result).map(|_| ());
            }
            tokio::time::sleep(HOLD_RETRY).await;
        }
    }

    /// Removes a server from the configuration (on the leader).
    pub async fn remove_server(&self, id: u64) -> Result<ServerReply, ForwardError> {
        let (peers, _) = self.configuration();
        if !peers.iter().any(|p| p.id == id) {
            return Err(ForwardError::Failed(format!(
                "id {id:016x} was not found in the Raft configuration"
            )));
        }
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        self.while_in_progress(|| self.raft.change_membership(change.clone(), false))
            .await?;
        crate::log::info(&format!("cluster: removed server {id:016x}"));
        Ok(ServerReply::Done)
    }

    /// Greets `addrs`, and the servers of its datacenter that `gossip`
    /// shows, until this server is part of a cluster: bootstraps one with
    /// `-bootstrap-expect`, or asks a formed one to add it. A server that
    /// only joined the LAN pool (`tribune join`) is found this way too.
    pub async fn form(self: std::sync::Arc<Self>, addrs: Vec<String>, gossip: Option<Gossip>) {
        let mut told_mismatch = false;
        loop {
            if self.is_member() {
                return;
            }
            let mut targets: Vec<(String, SocketAddr)> = Vec::new();
            for addr in &addrs {
                match resolve(addr, self.me.lan_addr.port()).await {
                    Some(target) => targets.push((addr.clone(), target)),
                    None => {
                        crate::log::warn(&format!("cluster: cannot resolve join address {addr:?}"))
                    }
                }
            }
            if let Some(gossip) = &gossip {
                let members = gossip.members().await;
                let dc = &self.me.datacenter;
                for (member, _) in tribune_core::reconcile::alive_servers(&members, dc) {
                    if member.name != self.me.name
                        && !targets.iter().any(|(_, t)| *t == member.addr)
                    {
                        targets.push((member.name.clone(), member.addr));
                    }
                }
            }
            // Join targets that are part of a formed cluster.
            let mut members_met: Vec<SocketAddr> = Vec::new();
            for (addr, target) in &targets {
                let target = *target;
                match self
                    .call(target, &ServerRequest::Hello(self.me.clone()))
                    .await
                {
                    Ok(Ok(ServerReply::Hello { known, initialized })) => {
                        let mut mine = self.known();
                        for info in known {
                            if info.datacenter == self.me.datacenter {
                                mine.insert(info.id, info);
                            }
                        }
                        if initialized {
                            members_met.push(target);
                        }
                    }
                    Ok(Ok(other)) => {
                        crate::log::warn(&format!("cluster: {addr}: unexpected answer {other:?}"))
                    }
                    Ok(Err(e)) => crate::log::warn(&format!("cluster: join {addr} refused: {e}")),
                    Err(e) => crate::log::debug(&format!("cluster: join {addr}: {e}")),
                }
            }
            let known: Vec<ServerInfo> = self.known().values().cloned().collect();
            match next_step(self.bootstrap_expect, known.len(), !members_met.is_empty()) {
                Formation::Join => self.ask_to_join(&members_met).await,
                Formation::BootstrapAlone => self.bootstrap(std::slice::from_ref(&self.me)).await,
                Formation::BootstrapAll { more_than_expected } => {
                    if more_than_expected && !told_mismatch {
                        told_mismatch = true;
                        crate::log::warn(&format!(
                            "cluster: {} servers know each other, bootstrap_expect is {:?}; \
                             bootstrapping with all of them",
                            known.len(),
                            self.bootstrap_expect
                        ));
                    }
                    self.bootstrap(&known).await
                }
                Formation::Wait => {}
            }
            tokio::time::sleep(JOIN_RETRY).await;
        }
    }

    /// Not in the configuration yet, this server knows no leader: a member
    /// of the formed cluster forwards the request to its leader.
    async fn ask_to_join(&self, members_met: &[SocketAddr]) {
        let request = ServerRequest::AddServer(self.me.clone());
        for target in members_met {
            match self.call(*target, &request).await {
                Ok(Ok(_)) => {
                    crate::log::info(&format!("cluster: joined through {target}"));
                    return;
                }
                Ok(Err(e)) => {
                    crate::log::warn(&format!("cluster: asking {target} to be added: {e}"))
                }
                Err(e) => crate::log::debug(&format!("cluster: asking {target} to be added: {e}")),
            }
        }
    }

    async fn bootstrap(&self, servers: &[ServerInfo]) {
        let members: BTreeMap<u64, ServerNode> = servers
            .iter()
            .map(|s| (s.id, ServerNode::new(s.name.clone(), s.rpc_addr)))
            .collect();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        match self.raft.initialize(members).await {
            Ok(()) => crate::log::info(&format!(
                "cluster: bootstrapping with {} servers: {}",
                servers.len(),
                names.join(", ")
            )),
            Err(e) => crate::log::debug(&format!("cluster: not bootstrapping: {e}")),
        }
    }
}

/// `host[:port]` with the LAN port as the default, resolved.
async fn resolve(addr: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some(sa);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, default_port));
    }
    let with_port = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    tokio::net::lookup_host(with_port).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_come_from_node_ids() {
        assert_eq!(
            raft_id("0123abcd-4567-89ef-0000-000000000000"),
            Some(0x0123_abcd_4567_89ef)
        );
        assert_eq!(raft_id("not-a-uuid"), None);
        assert_eq!(raft_id("0123"), None);
    }
}

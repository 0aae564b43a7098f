//! The nemesis: partitions, kills, pauses and voter changes at every
//! step, and the service manager that restarts servers stopped on a fault.

use io_sim::Cluster;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::params::*;
use crate::workload::*;

/// Faults the nemesis has in place.
#[derive(Default)]
pub(crate) struct Nemesis {
    clogged: BTreeSet<(u64, u64)>,
    paused_until: BTreeMap<u64, u64>,
    down_until: BTreeMap<u64, u64>,
    /// Client agents stopped (killed, or gone after a graceful leave) and
    /// paused, until when.
    agents_down_until: BTreeMap<u64, u64>,
    agents_paused_until: BTreeMap<u64, u64>,
    /// A server was lost for good and the spare brought in; the flag
    /// says when its membership change is done.
    pub(crate) replaced: bool,
    replacement_done: Arc<AtomicBool>,
    /// The server whose disk rotted, until it is replaced.
    rotten: Option<u64>,
    pub(crate) counts: BTreeMap<&'static str, u64>,
}

impl Nemesis {
    fn clog(&mut self, cluster: &Cluster, a: u64, b: u64) {
        if a != b && self.clogged.insert((a, b)) {
            madsim::net::NetSim::current().clog_link(cluster.madsim_id(a), cluster.madsim_id(b));
        }
    }

    fn heal_network(&mut self, cluster: &Cluster) {
        let net = madsim::net::NetSim::current();
        for (a, b) in std::mem::take(&mut self.clogged) {
            net.unclog_link(cluster.madsim_id(a), cluster.madsim_id(b));
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    pub(crate) fn step(&mut self, cluster: &Arc<Cluster>, params: &Params) {
        let now = now_ns();
        let ids = cluster.ids();
        self.supervise(cluster, now);
        for (id, until) in self.paused_until.clone() {
            if until <= now {
                cluster.resume(id);
                self.paused_until.remove(&id);
            }
        }
        for (id, until) in self.down_until.clone() {
            if until <= now {
                cluster.restart(id);
                self.down_until.remove(&id);
            }
        }
        self.agent_step(cluster, params, now);
        let dice = rand_below(100);
        let minority = (params.size - 1) / 2;
        // A lost server counts until its replacement votes.
        let replacing = self.replaced && !self.replacement_done.load(Ordering::SeqCst);
        let impaired =
            (self.paused_until.len() + self.down_until.len()) as u64 + u64::from(replacing);
        if impaired < minority.max(1) && rand_below(100) < params.replace_pct {
            // Decided first, so that the seed's draws do not depend on the
            // outcome.
            if rand_below(2) == 0 {
                self.replace(cluster, &ids);
            } else {
                self.rot(cluster, &ids);
            }
        }
        if dice < params.partition_pct {
            self.heal_network(cluster);
            match rand_below(5) {
                0 => {
                    // Random halves.
                    let mut shuffled = ids.clone();
                    for i in (1..shuffled.len()).rev() {
                        shuffled.swap(i, rand_below(i as u64 + 1) as usize);
                    }
                    let cut = 1 + rand_below(params.size / 2) as usize;
                    let (left, right) = shuffled.split_at(cut);
                    for &a in left {
                        for &b in right {
                            self.clog(cluster, a, b);
                            self.clog(cluster, b, a);
                        }
                    }
                    self.count("partition-halves");
                }
                1 | 2 => {
                    // Isolate the leader (or any node without one).
                    let victim = cluster
                        .leader()
                        .unwrap_or_else(|| ids[rand_below(ids.len() as u64) as usize]);
                    for &other in &ids {
                        self.clog(cluster, victim, other);
                        self.clog(cluster, other, victim);
                    }
                    self.count("isolate-leader");
                }
                3 => {
                    let victim = ids[rand_below(ids.len() as u64) as usize];
                    for &other in &ids {
                        self.clog(cluster, victim, other);
                        self.clog(cluster, other, victim);
                    }
                    self.count("isolate-one");
                }
                _ => {
                    let a = ids[rand_below(ids.len() as u64) as usize];
                    let b = ids[rand_below(ids.len() as u64) as usize];
                    self.clog(cluster, a, b);
                    self.count("one-way-link");
                }
            }
        } else if dice < params.partition_pct + 15 {
            self.heal_network(cluster);
            self.count("heal");
        } else if dice < params.partition_pct + 15 + params.kill_pct {
            if impaired < minority.max(1) {
                let victim = if rand_below(2) == 0 {
                    cluster.leader()
                } else {
                    None
                }
                .unwrap_or_else(|| ids[rand_below(ids.len() as u64) as usize]);
                if cluster.is_up(victim) && !self.paused_until.contains_key(&victim) {
                    cluster.kill(victim);
                    let down = 50 + rand_below(1_500);
                    self.down_until.insert(victim, now + down * 1_000_000);
                    self.count("kill");
                }
            }
        } else if dice < params.partition_pct + 15 + params.kill_pct + params.pause_pct {
            if impaired < minority.max(1) {
                let victim = ids[rand_below(ids.len() as u64) as usize];
                if cluster.is_up(victim) && !self.paused_until.contains_key(&victim) {
                    cluster.pause(victim);
                    let pause = 100 + rand_below(2_000);
                    self.paused_until.insert(victim, now + pause * 1_000_000);
                    self.count("pause");
                }
            }
        } else if dice
            < params.partition_pct + 15 + params.kill_pct + params.pause_pct + params.membership_pct
        {
            // A random non-empty subset of the servers votes from now
            // on; the rest stay as learners. Proposed in the background
            // (it may wait on partitions); openraft refuses a change
            // while another is in progress.
            if let Some(leader) = cluster.leader() {
                let voters: BTreeSet<u64> = loop {
                    let subset: BTreeSet<u64> =
                        ids.iter().copied().filter(|_| rand_below(2) == 0).collect();
                    if !subset.is_empty() {
                        break subset;
                    }
                };
                let cluster = Arc::clone(cluster);
                madsim::task::spawn(async move {
                    let _ = cluster.change_voters(leader, voters, WRITE_TIMEOUT).await;
                });
                self.count("change-voters");
            }
        }
    }

    /// A server (any running one, the leader too) is lost for good, disk
    /// and all, and the spare takes its place.
    fn replace(&mut self, cluster: &Arc<Cluster>, ids: &[u64]) {
        let victim = ids[rand_below(ids.len() as u64) as usize];
        // The spare is kept for the server with bit rot.
        if self.rotten.is_some()
            || !others_know_the_cluster(cluster, victim)
            || !cluster.is_up(victim)
            || cluster.is_paused(victim)
            || self.paused_until.contains_key(&victim)
        {
            return;
        }
        if self.bring_in_spare(cluster, victim) {
            self.count("replace-server");
        }
    }

    /// Bit rot on a running server's disk (only while the spare is free,
    /// which is kept for it): the server stops when it reads the damaged
    /// record, and again after each restart, so the service manager hands
    /// it to the operator, who replaces it (`supervise`); one that has not
    /// stopped yet is replaced when the faults heal.
    fn rot(&mut self, cluster: &Arc<Cluster>, ids: &[u64]) {
        let victim = ids[rand_below(ids.len() as u64) as usize];
        if self.rotten.is_some()
            || cluster.spare().is_none()
            || !others_know_the_cluster(cluster, victim)
            || !cluster.is_up(victim)
            || self.paused_until.contains_key(&victim)
        {
            return;
        }
        if let Some(index) = cluster.disk(victim).rot(rand_below) {
            cluster
                .trace()
                .record(0, format!("bit rot on n{victim}, entry {index}"));
            self.rotten = Some(victim);
            self.count("bit-rot");
        }
    }

    /// The spare takes `victim`'s place through the leader, in the
    /// background (it may wait on partitions; the liveness phase finishes
    /// the membership change if it did not). False without a spare.
    fn bring_in_spare(&mut self, cluster: &Arc<Cluster>, victim: u64) -> bool {
        let Some(spare) = cluster.spare() else {
            return false;
        };
        self.replaced = true;
        self.down_until.remove(&victim);
        self.paused_until.remove(&victim);
        cluster.retire(victim, spare);
        let Some(leader) = cluster.leader() else {
            return true;
        };
        let cluster = Arc::clone(cluster);
        let done = Arc::clone(&self.replacement_done);
        madsim::task::spawn(async move {
            let timeout = 4 * WRITE_TIMEOUT;
            if cluster
                .replace_voter(leader, victim, spare, timeout)
                .await
                .is_ok()
            {
                done.store(true, Ordering::SeqCst);
            }
        });
        true
    }

    /// Client agents: back from earlier faults when due, then with the
    /// seed's rate a new fault on one of them: killed for 0.5..4 s,
    /// isolated from every other node (until the next heal), paused for
    /// 0.2..3 s, or a graceful leave (`consul leave`) and a restart
    /// 1..4 s later.
    fn agent_step(&mut self, cluster: &Cluster, params: &Params, now: u64) {
        for (id, until) in self.agents_paused_until.clone() {
            if until <= now {
                cluster.resume(id);
                self.agents_paused_until.remove(&id);
            }
        }
        for (id, until) in self.agents_down_until.clone() {
            if until <= now {
                cluster.kill_agent(id);
                cluster.restart_agent(id);
                self.agents_down_until.remove(&id);
            }
        }
        let agents = cluster.agent_ids();
        if agents.is_empty() || rand_below(100) >= params.agent_fault_pct {
            return;
        }
        let victim = agents[rand_below(agents.len() as u64) as usize];
        if self.agents_down_until.contains_key(&victim)
            || self.agents_paused_until.contains_key(&victim)
        {
            return;
        }
        let ms = |lo: u64, span: u64| now + (lo + rand_below(span)) * 1_000_000;
        match rand_below(4) {
            0 => {
                cluster.kill_agent(victim);
                self.agents_down_until.insert(victim, ms(500, 3_500));
                self.count("agent-kill");
            }
            1 => {
                let others = cluster.ids().into_iter().chain(agents.iter().copied());
                for other in others {
                    self.clog(cluster, victim, other);
                    self.clog(cluster, other, victim);
                }
                self.count("agent-isolate");
            }
            2 => {
                cluster.pause(victim);
                self.agents_paused_until.insert(victim, ms(200, 2_800));
                self.count("agent-pause");
            }
            _ => {
                if cluster.leave_agent(victim) {
                    self.agents_down_until.insert(victim, ms(1_000, 3_000));
                    self.count("agent-leave");
                }
            }
        }
    }

    /// The service manager: a server whose Raft stopped on a fault
    /// exits (the daemon's policy), and is started again from its disk
    /// a moment later.
    fn supervise(&mut self, cluster: &Arc<Cluster>, now: u64) {
        for id in cluster.ids() {
            if self.down_until.contains_key(&id) || cluster.stopped_by_fault(id).is_none() {
                continue;
            }
            if self.rotten == Some(id) && cluster.disk(id).is_rotten() {
                // It stops on the damaged record after every restart:
                // the operator replaces it.
                self.rotten = None;
                if self.bring_in_spare(cluster, id) {
                    self.count("replace-rotten-server");
                }
                continue;
            }
            cluster.kill(id);
            self.paused_until.remove(&id);
            let down = 100 + rand_below(900);
            self.down_until.insert(id, now + down * 1_000_000);
            self.count("restart-after-fault");
        }
    }

    pub(crate) fn heal_all(&mut self, cluster: &Arc<Cluster>) {
        for id in cluster.all_ids() {
            cluster.disk(id).stop_read_corruption();
        }
        self.supervise(cluster, now_ns());
        // Rot does not heal: a server whose damaged record is still on its
        // disk is replaced before it stops on it again.
        if let Some(id) = self.rotten.take() {
            if cluster.disk(id).is_rotten() && self.bring_in_spare(cluster, id) {
                self.count("replace-rotten-server-at-heal");
            }
        }
        self.heal_network(cluster);
        for id in std::mem::take(&mut self.paused_until).into_keys() {
            cluster.resume(id);
        }
        for id in std::mem::take(&mut self.down_until).into_keys() {
            cluster.restart(id);
        }
        for id in std::mem::take(&mut self.agents_paused_until).into_keys() {
            cluster.resume(id);
        }
        for id in std::mem::take(&mut self.agents_down_until).into_keys() {
            cluster.kill_agent(id);
            cluster.restart_agent(id);
        }
    }
}

/// Whether every server but `victim` has the cluster's first membership
/// on its disk. Until then a server lost for good may take the only copy
/// of it, and the others never learn they are a cluster (an operator
/// would bootstrap again): not a fault the cluster is meant to survive.
fn others_know_the_cluster(cluster: &Cluster, victim: u64) -> bool {
    cluster
        .ids()
        .into_iter()
        .filter(|id| *id != victim)
        .all(|id| {
            let disk = cluster.disk(id);
            disk.last_index().is_some() || disk.purged_through().is_some()
        })
}

//! One seed end to end: the cluster, the safety phase under the nemesis,
//! the liveness phase, and the checks over what was observed.

use io_sim::cluster::StoreSample;
use io_sim::{Cluster, ClusterConfig, Trace, WriteOutcome};
use sim_tests::history::{Event, EventType, Function, History};
use sim_tests::index_monotonic;
use sim_tests::linearizability;
use sim_tests::lock_exclusivity::{self, Exclusivity};
use sim_tests::raft_safety::{self, AppliedEntry, VoteSeen};
use sim_tests::replica_state::{self, ReplicaSample};
use sim_tests::txn_atomicity;
use sim_tests::{membership, node_health};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tribune_core::command::{Command, CommandResult, KvVerb};

use crate::nemesis::*;
use crate::params::*;
use crate::workload::*;

/// What the simulated run hands to the checkers.
pub(crate) struct Outcome {
    pub(crate) history: Vec<Event>,
    /// Transaction read legs' modify indexes (see `Recorded`).
    pub(crate) txn_read_indexes: BTreeMap<(u64, u64), u64>,
    pub(crate) votes: Vec<VoteSeen>,
    pub(crate) applied: Vec<AppliedEntry>,
    pub(crate) samples: Vec<StoreSample>,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) violations: Vec<String>,
}

pub(crate) async fn scenario(params: Params, trace: Trace) -> Outcome {
    let mut violations = Vec::new();
    let config = ClusterConfig {
        size: params.size,
        disk: params.disk.clone(),
        read_mode: params.read_mode,
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        allow_log_reversion: params.allow_log_reversion,
        clocks: params.clocks.clone(),
        duplicate_rate: params.duplicate_rate,
        snapshot_every: params.snapshot_every,
        logs_kept_after_snapshot: params.logs_kept_after_snapshot,
        forget_sessions_on_takeover: params.forget_sessions_on_takeover,
        gossip: params.gossip,
        agents: params.agents,
        spares: u64::from(params.replace_pct > 0),
        partial_txns: params.partial_txns,
        resend_unanswered_writes: params.resend_unanswered_writes,
    };
    let cluster = Arc::new(Cluster::new(config, trace.clone()));
    cluster.initialize().await;

    let history: SharedHistory = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let locks: SharedLocks = Arc::default();
    let lease_clients: Vec<_> = (1..=params.leases)
        .map(|n| {
            madsim::task::spawn(crate::leases::lease_client(
                Arc::clone(&cluster),
                params.clone(),
                n,
                Arc::clone(&locks),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let clients: Vec<_> = (1..=params.clients)
        .map(|process| {
            madsim::task::spawn(client(
                Arc::clone(&cluster),
                params.clone(),
                process,
                Arc::clone(&history),
                Arc::clone(&locks),
                Arc::clone(&stop),
            ))
        })
        .collect();

    // Safety phase.
    let mut nemesis = Nemesis::default();
    let safety_end = now_ns() + (params.safety + params.gossip_time).as_nanos() as u64;
    let mut step = 0;
    while now_ns() < safety_end {
        let (lo, hi) = params.step_ms;
        madsim::time::sleep(Duration::from_millis(lo + rand_below(hi - lo))).await;
        nemesis.step(&cluster, &params);
        step += 1;
        // The state invariants after every step, so that a failure
        // names when it first showed (the end of the run checks again).
        let (votes, applied, samples) = observed(&cluster);
        let found = state_invariants(&votes, &applied, &samples);
        if !found.is_empty() {
            violations.push(format!(
                "first seen after nemesis step {step}, at {:.3}s virtual: {}",
                now_ns() as f64 / 1e9,
                found.join("; ")
            ));
            break;
        }
    }

    // Liveness phase: heal everything, stop the clients.
    nemesis.heal_all(&cluster);
    madsim::net::NetSim::current().update_config(|net| net.packet_loss_rate = 0.0);
    trace.record(0, "heal");
    stop.store(true, Ordering::SeqCst);
    for handle in clients.into_iter().chain(lease_clients) {
        let _ = handle.await;
    }
    let healed_at = now_ns();
    let deadline = healed_at + params.liveness_bound.as_nanos() as u64;
    let final_process = 1_000;
    let mut converged = false;
    let mut wrote = false;
    // Every server votes again, and only they are members (the nemesis
    // may have left a subset voting, or replaced a server).
    let mut all_voters = params.membership_pct == 0 && !nemesis.replaced;
    while now_ns() < deadline {
        madsim::time::sleep(Duration::from_millis(50)).await;
        let Some(leader) = cluster.leader() else {
            continue;
        };
        if !all_voters {
            let all: BTreeSet<u64> = cluster.ids().into_iter().collect();
            all_voters = cluster.set_voters(leader, all, WRITE_TIMEOUT).await.is_ok();
            continue;
        }
        if !wrote {
            let command = kv(KvVerb::Set, "liveness", "done", 0);
            let outcome = cluster.write(leader, command, WRITE_TIMEOUT).await;
            wrote = outcome == WriteOutcome::Applied(CommandResult::Bool(true));
            continue;
        }
        let ids = cluster.ids();
        let progress: Vec<_> = ids.iter().map(|id| cluster.progress(*id)).collect();
        let states: Vec<_> = ids.iter().map(|id| cluster.store_state(*id)).collect();
        let target = progress[0].map(|(_, last)| last);
        let all_applied = progress.iter().all(|p| {
            p.is_some_and(|(applied, last)| Some(applied) == target && Some(last) == target)
        });
        let same_store = states
            .windows(2)
            .all(|w| matches!((w[0], w[1]), (Some(a), Some(b)) if a.state_hash == b.state_hash));
        if all_applied && same_store {
            converged = true;
            break;
        }
    }
    if !wrote || !converged {
        violations.push(format!(
            "liveness: {} within {:?} of virtual time after healing",
            if !all_voters {
                "no leader made every server a voter again"
            } else if wrote {
                "servers did not converge (same log applied, same store)"
            } else {
                "no leader accepted a write"
            },
            params.liveness_bound
        ));
    } else {
        trace.record(0, "converged");
        // Final reads through the leader: what every key holds now.
        for k in 0..params.keys {
            let key = format!("k{k}");
            let mut done = false;
            for _ in 0..20 {
                if read_op(&cluster, Via::Servers, &history, final_process, &key)
                    .await
                    .is_some()
                {
                    done = true;
                    break;
                }
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
            if !done {
                violations.push(format!("liveness: no final read of {key} succeeded"));
            }
        }
        violations.extend(durability(
            &cluster,
            &acked_values(&history.lock().unwrap().events),
        ));
        // Sessions whose clients are gone end by their TTL.
        if let Err(left) = crate::leases::leases_ended(&cluster, deadline).await {
            violations.push(format!(
                "liveness: sessions did not expire within {:?} of virtual time after \
                 healing: {left}",
                params.liveness_bound
            ));
        }
        // Gossip's own bound: a member that missed the broadcasts of a
        // change learns it from a push/pull (every 15 s in memberlist's
        // Local preset), so convergence may take two rounds past the
        // liveness bound.
        let gossip_bound = params.liveness_bound + 2 * gossip_push_pull();
        let gossip_deadline = healed_at + gossip_bound.as_nanos() as u64;
        if params.gossip {
            if let Err(left) = members_converge(&cluster, gossip_deadline).await {
                violations.push(format!(
                    "liveness: gossip members did not converge within {gossip_bound:?} of \
                     virtual time after healing: {left}"
                ));
            } else if let Err(left) = catalog_converges(&cluster, gossip_deadline).await {
                violations.push(format!(
                    "liveness: the catalog did not follow gossip within {gossip_bound:?} of \
                     virtual time after healing: {left}"
                ));
            }
        }
    }
    let (votes, applied, mut samples) = observed(&cluster);
    for id in cluster.ids() {
        samples.extend(cluster.store_state(id));
    }
    let (history, indexes, txn_read_indexes) = {
        let mut recorded = history.lock().unwrap();
        (
            std::mem::take(&mut recorded.events),
            std::mem::take(&mut recorded.indexes),
            std::mem::take(&mut recorded.txn_read_indexes),
        )
    };
    // Reads of present keys; no restores here (generation 0). Deletes
    // are not observed (an absent key carries no index), so a key
    // deleted and written again shows the new write's larger index.
    if let Err(e) = index_monotonic::check(&indexes) {
        violations.push(format!("index monotonicity: {e}"));
    }

    let mut faults = nemesis.counts;
    if !indexes.is_empty() {
        faults.insert("read indexes checked", indexes.len() as u64);
    }
    type DiskCount = fn(&io_sim::Disk) -> u64;
    let disk_counts: [(&str, DiskCount); 2] = [
        ("snapshots saved", io_sim::Disk::snapshots_saved),
        ("corrupted reads caught", io_sim::Disk::reads_corrupted),
    ];
    for (what, count) in disk_counts {
        let total: u64 = cluster
            .all_ids()
            .iter()
            .map(|id| count(cluster.disk(*id)))
            .sum();
        if total > 0 {
            faults.insert(what, total);
        }
    }
    {
        let locks = locks.lock().unwrap();
        violations.extend(locks.anomalies.iter().cloned());
        if let Err(e) = lock_exclusivity::check(&locks.holds, &[], Exclusivity::Strict) {
            violations.push(format!("locks: {e}"));
        }
        if let Err(e) = lock_exclusivity::check(&locks.lease_holds, &[], Exclusivity::Fenced) {
            violations.push(format!("locks (leases): {e}"));
        }
        let counts = [
            ("lock holds", locks.holds.len() as u64),
            ("lease holds", locks.lease_holds.len() as u64),
            ("lease client stalls", locks.stalls),
            ("lease node failures", locks.node_failures),
            ("sessions expired", cluster.sessions_expired()),
            ("gossip members failed", cluster.gossip_failures()),
        ];
        let (answered, refused, unanswered) = cluster.agent_requests();
        let counts = counts.into_iter().chain([
            ("agent requests answered", answered),
            ("agent requests refused", refused),
            ("agent requests unanswered", unanswered),
        ]);
        for (what, n) in counts {
            if n > 0 {
                faults.insert(what, n);
            }
        }
    }
    Outcome {
        history,
        txn_read_indexes,
        votes,
        applied,
        samples,
        faults,
        violations,
    }
}

/// memberlist's push/pull interval in the simulated nodes' preset.
fn gossip_push_pull() -> Duration {
    let interval = io_sim::gossip::sim_config().memberlist.push_pull_interval;
    Duration::from_nanos(interval.as_nanos())
}

/// Every gossiping node: the servers (spares too, not those lost for
/// good) and the client agents.
fn gossip_nodes(cluster: &Cluster) -> Vec<u64> {
    let mut nodes: Vec<u64> = cluster
        .all_ids()
        .into_iter()
        .filter(|id| !cluster.is_retired(*id))
        .collect();
    nodes.extend(cluster.agent_ids());
    nodes
}

/// Polls every node's gossip member list (servers' and client agents')
/// until all list all nodes alive (`membership::check`), or `deadline`
/// (virtual ns) passes: the last disagreement.
pub(crate) async fn members_converge(cluster: &Cluster, deadline: u64) -> Result<(), String> {
    let mut last = String::from("no server was up");
    let nodes = gossip_nodes(cluster);
    while now_ns() < deadline {
        let views: BTreeMap<String, membership::View> = nodes
            .iter()
            .copied()
            .filter_map(|id| {
                let view = cluster.members(id)?;
                let view = view
                    .into_iter()
                    .map(|(name, status)| (name, status.to_string()))
                    .collect();
                Some((io_sim::gossip::name(id), view))
            })
            .collect();
        if views.len() == nodes.len() {
            match membership::check(&views) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        } else {
            last = format!("{} of {} nodes up", views.len(), nodes.len());
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// Once every node is alive in gossip: polls the leader's catalog (a
/// linearizable read) until it agrees with the leader's member list
/// (`node_health`: alive members passing their `serfHealth`, failed ones
/// critical, no other node with one), or `deadline` (virtual ns) passes:
/// the last disagreement.
pub(crate) async fn catalog_converges(cluster: &Cluster, deadline: u64) -> Result<(), String> {
    use tribune_core::agent::SERF_HEALTH_CHECK_ID;
    let mut last = String::from("no leader answered");
    while now_ns() < deadline {
        madsim::time::sleep(Duration::from_millis(100)).await;
        let Some(leader) = cluster.leader() else {
            continue;
        };
        let Some(view) = cluster.members(leader) else {
            continue;
        };
        let members: BTreeMap<String, String> = view
            .into_iter()
            .map(|(name, status)| (name, status.to_string()))
            .collect();
        let read = cluster.read_fsm(leader, READ_TIMEOUT, |fsm| {
            fsm.catalog
                .checks
                .iter()
                .filter(|((_, id), _)| id == SERF_HEALTH_CHECK_ID)
                .map(|((node, _), check)| (node.clone(), check.status.to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        match read.await {
            Ok(health) => match node_health::check(&members, &health) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = format!("leader read failed: {e}"),
        }
    }
    Err(last)
}

/// The transactions of a history: the legs `txn_op` recorded, each by a
/// process of its own (`TXN_PROCESSES + 10 × client + leg`), invoked
/// together.
pub(crate) fn txn_groups(history: &History) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
    for (i, op) in history.operations.iter().enumerate() {
        if op.process >= TXN_PROCESSES {
            let client = (op.process - TXN_PROCESSES) / 10;
            groups.entry((client, op.invoke_time)).or_default().push(i);
        }
    }
    groups.into_values().collect()
}

/// Values of writes and CASes that were acknowledged.
pub(crate) fn acked_values(history: &[Event]) -> Vec<String> {
    let mut pending: BTreeMap<u64, Option<String>> = BTreeMap::new();
    let mut acked = Vec::new();
    for event in history {
        match event.event_type {
            EventType::Invoke => {
                let carries = matches!(event.f, Function::Write | Function::Cas);
                pending.insert(event.process, event.value.clone().filter(|_| carries));
            }
            EventType::Ok => {
                if let Some(Some(value)) = pending.remove(&event.process) {
                    acked.push(value);
                }
            }
            _ => {
                pending.remove(&event.process);
            }
        }
    }
    acked
}

/// What the servers did so far, for the state invariants.
pub(crate) fn observed(cluster: &Cluster) -> (Vec<VoteSeen>, Vec<AppliedEntry>, Vec<StoreSample>) {
    let observations = cluster.observations();
    let votes = observations
        .votes
        .iter()
        .map(
            |&(node, incarnation, term, voted_for, committed)| VoteSeen {
                node,
                incarnation,
                term,
                voted_for,
                committed,
            },
        )
        .collect();
    let applied = observations
        .applied
        .iter()
        .map(|(node, log_id)| AppliedEntry {
            node: *node,
            index: log_id.index(),
            term: log_id.leader_id.term,
            leader: log_id.leader_id.node_id,
        })
        .collect();
    (votes, applied, observations.samples.clone())
}

/// The invariants over what the servers did (the history is judged
/// separately): votes never go back within a run, the same entry is
/// applied at each index everywhere, stores are equal at equal applied
/// index. No per-term election check: tribune's openraft uses advanced
/// leader ids, under which a term may have several leaders (see
/// raft_safety); state-machine safety is what must hold.
pub(crate) fn state_invariants(
    votes: &[VoteSeen],
    applied: &[AppliedEntry],
    samples: &[StoreSample],
) -> Vec<String> {
    let mut violations = Vec::new();
    if let Err(e) = raft_safety::check_votes(votes) {
        violations.push(e.to_string());
    }
    if let Err(e) = raft_safety::check_applied(applied) {
        violations.push(e.to_string());
    }
    let samples: Vec<ReplicaSample> = samples
        .iter()
        .map(|s| ReplicaSample {
            replica: s.node,
            applied_index: s.applied_index,
            state_hash: s.state_hash,
        })
        .collect();
    if let Err(e) = replica_state::check(&samples) {
        violations.push(format!("replica state: {e}"));
    }
    violations
}

/// Every acknowledged write is in every server's log (or among the
/// entries it purged after a snapshot), or behind the snapshot that
/// replaced that part of its log. Written values are unique, so a value
/// names one log entry.
/// The values a log entry writes, as the history records them: KV
/// values (alone or in a transaction) and the tag of a registered
/// service instance.
pub(crate) fn written_values(entry: &io_sim::types::Entry) -> Vec<String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match &entry.payload {
        openraft::EntryPayload::Normal(Command::Kv(op)) => vec![text(&op.value)],
        openraft::EntryPayload::Normal(Command::Txn(ops)) => {
            ops.iter().map(|op| text(&op.value)).collect()
        }
        openraft::EntryPayload::Normal(Command::Register(registration)) => registration
            .service
            .iter()
            .flat_map(|service| service.tags.first().cloned())
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn durability(cluster: &Cluster, acked: &[String]) -> Vec<String> {
    let logs: BTreeMap<u64, BTreeMap<String, u64>> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let values = cluster
                .disk(id)
                .history()
                .iter()
                .flat_map(|entry| {
                    let index = entry.log_id.index;
                    written_values(entry)
                        .into_iter()
                        .map(move |value| (value, index))
                })
                .collect();
            (id, values)
        })
        .collect();
    let mut violations = Vec::new();
    for value in acked {
        let Some(index) = logs.values().find_map(|values| values.get(value).copied()) else {
            violations.push(format!(
                "durability: acknowledged write of {value:?} is in no server's log"
            ));
            continue;
        };
        for (id, values) in &logs {
            let behind_snapshot = cluster
                .disk(*id)
                .purged_through()
                .is_some_and(|purged| index <= purged);
            if !values.contains_key(value) && !behind_snapshot {
                violations.push(format!(
                    "durability: acknowledged write of {value:?} (index {index}) is not in \
                     server {id}'s log nor behind its snapshot"
                ));
            }
        }
    }
    violations
}

/// Runs one seed in its own madsim runtime and checks it.
pub fn run(params: &Params, keep_lines: bool) -> Run {
    let wall = std::time::Instant::now();
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = params.loss_rate;
    config.net.send_latency =
        Duration::from_millis(1)..Duration::from_millis(params.net_latency_max_ms);
    let runtime = madsim::runtime::Runtime::with_seed_and_config(params.seed, config);
    let trace = if keep_lines {
        Trace::keeping_lines()
    } else {
        Trace::default()
    };
    let ran = {
        let (params, trace) = (params.clone(), trace.clone());
        // A panic anywhere in the simulation (an assertion in openraft
        // or in the adapters) is a failed seed, not a failed process.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            runtime.block_on(async move {
                let start = Instant::now();
                let outcome = scenario(params, trace).await;
                (outcome, start.elapsed())
            })
        }))
    };
    let wall_time = wall.elapsed();
    let (outcome, virtual_time) = match ran {
        Ok(ran) => ran,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            return Run {
                params: params.clone(),
                trace_hash: trace.hash(),
                trace_events: trace.events(),
                trace_lines: trace.lines(),
                virtual_time: Duration::ZERO,
                wall_time,
                operations: 0,
                acked_writes: 0,
                faults: BTreeMap::new(),
                history: Vec::new(),
                violations: vec![format!("panic in the simulation: {message}")],
            };
        }
    };
    let mut violations = outcome.violations;
    let mut faults = outcome.faults;
    match History::from_events(&outcome.history) {
        Err(e) => violations.push(format!("history does not pair: {e}")),
        Ok(history) => {
            // Each read leg's modify index, by operation.
            let read_indexes: BTreeMap<usize, u64> = history
                .operations
                .iter()
                .enumerate()
                .filter_map(|(i, op)| {
                    let at = (op.process, op.complete_time?);
                    outcome.txn_read_indexes.get(&at).map(|index| (i, *index))
                })
                .collect();
            match txn_atomicity::check(&history, &txn_groups(&history), &read_indexes) {
                Ok(coverage) if coverage.pairs_judged > 0 => {
                    faults.insert("txn read pairs judged", coverage.pairs_judged as u64);
                    faults.insert("txn read pairs decided by index", coverage.by_index as u64);
                }
                Ok(_) => {}
                Err(torn) => violations.push(format!("transaction atomicity: {torn}")),
            }
            let report = linearizability::check(&history);
            for violation in &report.violations {
                violations.push(format!(
                    "linearizability: key {}: no linearization past {} operations; \
                     cannot place next: {}",
                    violation.key,
                    violation.prefix.len(),
                    violation
                        .unplaced
                        .iter()
                        .map(|u| linearizability::describe(&u.operation))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    violations.extend(state_invariants(
        &outcome.votes,
        &outcome.applied,
        &outcome.samples,
    ));
    let operations = outcome
        .history
        .iter()
        .filter(|e| e.event_type == EventType::Invoke)
        .count();
    Run {
        params: params.clone(),
        trace_hash: trace.hash(),
        trace_events: trace.events(),
        trace_lines: trace.lines(),
        virtual_time,
        wall_time,
        operations,
        acked_writes: acked_values(&outcome.history).len(),
        faults,
        history: outcome.history,
        violations,
    }
}

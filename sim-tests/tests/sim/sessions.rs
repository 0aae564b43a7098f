//! Core's leader machine on simulated servers, step by step (no nemesis):
//! session TTLs are lower bounds, expiry frees locks, and a new leader
//! re-arms the timers of sessions it inherits.

use io_sim::{Cluster, ClusterConfig, DiskConfig, DiskMode, ReadMode, Trace, WriteOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tribune_core::command::{Command, CommandResult, KvOp, KvVerb};
use tribune_core::ids::SessionId;
use tribune_core::session::{Behavior, Session};

use crate::workload::{client_node, WRITE_TIMEOUT};

const TTL: Duration = Duration::from_millis(500);

/// A quiet 3-server cluster (no faults), for step-by-step tests; with
/// gossip, `agents` client agents too.
pub(crate) fn config(
    forget_sessions_on_takeover: bool,
    gossip: bool,
    agents: u64,
) -> ClusterConfig {
    ClusterConfig {
        size: 3,
        disk: DiskConfig {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(2),
            mode: DiskMode::Durable,
            read_corruption_ppm: 0,
            skip_read_checksums: false,
        },
        read_mode: ReadMode::Linearizable,
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        allow_log_reversion: false,
        clocks: BTreeMap::new(),
        duplicate_rate: 0.0,
        snapshot_every: None,
        logs_kept_after_snapshot: 0,
        forget_sessions_on_takeover,
        gossip,
        agents,
        spares: 0,
        partial_txns: false,
        resend_unanswered_writes: false,
    }
}

/// Writes through whichever server leads (with leader duties) until one
/// applies it.
async fn write(cluster: &Cluster, command: Command) -> CommandResult {
    for _ in 0..200 {
        if let Some(leader) = cluster.leader() {
            if let WriteOutcome::Applied(result) =
                cluster.write(leader, command.clone(), WRITE_TIMEOUT).await
            {
                return result;
            }
        }
        madsim::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader applied {command}");
}

async fn create_session(cluster: &Cluster, name: &str) -> SessionId {
    create_session_on(cluster, name, crate::workload::CLIENT_NODE, &[], TTL).await
}

async fn create_session_on(
    cluster: &Cluster,
    name: &str,
    node: &str,
    node_checks: &[&str],
    ttl: Duration,
) -> SessionId {
    let session = Session {
        id: SessionId::UNASSIGNED,
        name: name.into(),
        node: node.into(),
        node_checks: node_checks.iter().map(|c| c.to_string()).collect(),
        service_checks: Vec::new(),
        lock_delay: tribune_core::time::Duration::ZERO,
        behavior: Behavior::Release,
        ttl: tribune_core::time::Duration::from_nanos(ttl.as_nanos() as u64),
        create_index: 0,
        modify_index: 0,
    };
    match write(cluster, Command::SessionCreate(Box::new(session))).await {
        CommandResult::SessionCreated(id) => id,
        other => panic!("session create answered {other:?}"),
    }
}

/// Takes the key `lock` with `session`; it must be granted.
async fn acquire(cluster: &Cluster, session: SessionId) {
    let lock = KvOp {
        value: session.to_string().into_bytes(),
        session: Some(session),
        ..KvOp::new(KvVerb::Lock, "lock")
    };
    assert_eq!(
        write(cluster, Command::Kv(lock)).await,
        CommandResult::Bool(true)
    );
}

/// (session exists, lock holder) in server `id`'s store.
fn state(cluster: &Cluster, id: u64, session: SessionId) -> (bool, Option<SessionId>) {
    cluster
        .store_fsm(id, move |fsm| {
            let holder = fsm.kv.get("lock").and_then(|entry| entry.session);
            (fsm.sessions.get(session).is_some(), holder)
        })
        .unwrap_or((false, None))
}

/// Long enough for every server to apply what the leader committed.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs the steps; returns whether the session created under the first
/// leader outlived that leader by `after_kill` (it must not, unless new
/// leaders forget inherited sessions).
fn run(forget_sessions_on_takeover: bool) -> bool {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = Cluster::new(
            config(forget_sessions_on_takeover, false, 0),
            Trace::default(),
        );
        cluster.initialize().await;
        let register = Command::Register(Box::new(client_node(None)));
        assert_eq!(write(&cluster, register).await, CommandResult::Done);

        // A session that is never renewed, holding the lock; one that is.
        let idle = create_session(&cluster, "idle").await;
        let created = madsim::time::Instant::now();
        acquire(&cluster, idle).await;
        let renewed = create_session(&cluster, "renewed").await;
        let leader = cluster.leader().expect("a leader");

        // The TTL is a lower bound: alive one TTL after creation.
        let at_ttl = created + TTL;
        madsim::time::sleep_until(at_ttl).await;
        assert_eq!(state(&cluster, leader, idle), (true, Some(idle)));

        // Renewals keep one alive; the other expires (by 2 x TTL plus a
        // duty tick) and its lock is free.
        for _ in 0..10 {
            let renewal = cluster
                .renew_session(leader, renewed, WRITE_TIMEOUT)
                .await
                .expect("the leader renews");
            assert!(renewal.is_some(), "the renewed session is gone");
            madsim::time::sleep(TTL / 3).await;
        }
        madsim::time::sleep(SETTLE).await;
        for id in cluster.ids() {
            assert_eq!(state(&cluster, id, idle), (false, None), "server {id}");
            assert!(state(&cluster, id, renewed).0, "server {id}");
        }

        // The leader dies; nobody renews. The next leader takes the
        // timers over (fresh, from its takeover) and expires the session.
        cluster.kill(leader);
        let mut next = None;
        for _ in 0..100 {
            madsim::time::sleep(Duration::from_millis(50)).await;
            next = cluster.leader().filter(|id| *id != leader);
            if next.is_some() {
                break;
            }
        }
        let next = next.expect("a new leader");
        madsim::time::sleep(2 * TTL + Duration::from_millis(500)).await;
        madsim::time::sleep(SETTLE).await;
        state(&cluster, next, renewed).0
    })
}

#[test]
fn session_ttls_expire_on_the_leader_and_after_a_leader_change() {
    assert!(
        !run(false),
        "a session inherited by a new leader did not expire"
    );
}

/// The same steps with new leaders that forget inherited sessions: the
/// last check must see the session still alive (so it can fail).
#[test]
fn teeth_a_new_leader_that_forgets_inherited_sessions_is_seen() {
    assert!(
        run(true),
        "forgotten sessions expired anyway: the test cannot fail"
    );
}

/// The virtual time `d` from now, in nanoseconds.
pub(crate) fn in_virtual(d: Duration) -> u64 {
    crate::workload::now_ns() + d.as_nanos() as u64
}

/// A quiet 3-server cluster whose servers (and `agents` client agents)
/// gossip, once every member list shows every node alive.
pub(crate) async fn gossiping_cluster(agents: u64) -> Cluster {
    let cluster = Cluster::new(config(false, true, agents), Trace::default());
    cluster.initialize().await;
    crate::scenario::members_converge(&cluster, in_virtual(Duration::from_secs(10)))
        .await
        .expect("members meet");
    cluster
}

/// Gossip on the simulated servers: they meet, a killed server is
/// declared failed by the others, and once restarted it is alive in
/// every list again.
#[test]
fn gossip_members_meet_see_a_killed_server_fail_and_take_it_back() {
    use io_sim::gossip::name;
    use tribune_core::gossip::MemberStatus;
    let runtime = madsim::runtime::Runtime::with_seed_and_config(3, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = gossiping_cluster(0).await;
        let until = in_virtual(Duration::from_secs(15));
        cluster.kill(3);
        let failed_everywhere = || {
            [1, 2].iter().all(|id| {
                cluster.members(*id).is_some_and(|view| {
                    view.iter().any(|(member, status)| {
                        *member == name(3) && *status == MemberStatus::Failed
                    })
                })
            })
        };
        while !failed_everywhere() {
            assert!(
                crate::workload::now_ns() < until,
                "server-3 not failed everywhere: {:?}, {:?}",
                cluster.members(1),
                cluster.members(2)
            );
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.restart(3);
        crate::scenario::members_converge(&cluster, in_virtual(Duration::from_secs(15)))
            .await
            .expect("the restarted server is alive everywhere again");
    });
}

/// Server `id`'s `serfHealth` status for `node`, as its store has it.
fn serf_health(
    cluster: &Cluster,
    id: u64,
    node: &str,
) -> Option<tribune_core::catalog::CheckStatus> {
    let key = (
        node.to_owned(),
        tribune_core::agent::SERF_HEALTH_CHECK_ID.to_owned(),
    );
    cluster
        .store_fsm(id, move |fsm| {
            fsm.catalog.checks.get(&key).map(|check| check.status)
        })
        .flatten()
}

/// Polls every 100 ms of virtual time until `done` holds; panics with
/// `what()` after `within`.
pub(crate) async fn wait_for(
    within: Duration,
    mut done: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let until = in_virtual(within);
    while !done() {
        assert!(crate::workload::now_ns() < until, "{}", what());
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a session on `node`'s `serfHealth` (no TTL) and takes the
/// lock with it.
async fn lock_on_node(cluster: &Cluster, node: &str) -> SessionId {
    use tribune_core::agent::SERF_HEALTH_CHECK_ID;
    let session =
        create_session_on(cluster, node, node, &[SERF_HEALTH_CHECK_ID], Duration::ZERO).await;
    acquire(cluster, session).await;
    session
}

/// Consul's node-failure path end to end on simulated servers: gossip
/// declares a killed server failed, the leader's reconciliation writes its
/// `serfHealth` critical, and the session bound to that check is
/// invalidated, which releases its lock.
#[test]
fn a_server_that_gossip_declares_failed_loses_its_sessions_and_locks() {
    use io_sim::gossip::name;
    use tribune_core::catalog::CheckStatus;
    let runtime = madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = gossiping_cluster(0).await;
        let leader = cluster.leader().expect("a leader");
        let victim = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        let health = |id: u64| serf_health(&cluster, id, &name(victim));
        wait_for(
            Duration::from_secs(10),
            || health(leader) == Some(CheckStatus::Passing),
            || format!("the leader never registered {}", name(victim)),
        )
        .await;
        let session = lock_on_node(&cluster, &name(victim)).await;
        cluster.kill(victim);
        let leader_now = || cluster.leader().unwrap_or(leader);
        wait_for(
            Duration::from_secs(20),
            || {
                health(leader_now()) == Some(CheckStatus::Critical)
                    && state(&cluster, leader_now(), session) == (false, None)
            },
            || {
                format!(
                    "{} still {:?}; session and lock: {:?}",
                    name(victim),
                    health(leader_now()),
                    state(&cluster, leader_now(), session)
                )
            },
        )
        .await;
    });
}

/// A client agent, as Consul users run one next to their application:
/// the leader registers its node from gossip; a session bound to its
/// `serfHealth` holds a lock; killed, the agent is declared failed, its
/// check goes critical and the lock is released; restarted, it is
/// passing again; leaving gracefully (`consul leave`), its node is
/// deregistered, which destroys its sessions; started again, it rejoins.
#[test]
fn a_client_agent_that_fails_or_leaves_loses_its_sessions_and_locks() {
    use io_sim::gossip::{agent_id, name};
    use tribune_core::catalog::CheckStatus;
    let runtime = madsim::runtime::Runtime::with_seed_and_config(11, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = gossiping_cluster(1).await;
        let agent = agent_id(1);
        let node = name(agent);
        let leader = || cluster.leader().unwrap_or(1);
        let health = || serf_health(&cluster, leader(), &node);
        let registered = || {
            cluster
                .store_fsm(leader(), |fsm| fsm.catalog.nodes.contains_key(&node))
                .unwrap_or(false)
        };
        let passing = || health() == Some(CheckStatus::Passing);
        wait_for(Duration::from_secs(10), passing, || {
            format!("{node} never registered passing: {:?}", health())
        })
        .await;

        // Failure: killed, declared failed, its check critical, lock free.
        let session = lock_on_node(&cluster, &node).await;
        cluster.kill_agent(agent);
        wait_for(
            Duration::from_secs(20),
            || {
                health() == Some(CheckStatus::Critical)
                    && state(&cluster, leader(), session) == (false, None)
            },
            || {
                format!(
                    "{node}: {:?}; session and lock: {:?}",
                    health(),
                    state(&cluster, leader(), session)
                )
            },
        )
        .await;
        assert!(registered(), "a failed node stays in the catalog");

        // Back: passing again, and a new session holds the lock.
        cluster.restart_agent(agent);
        wait_for(Duration::from_secs(20), passing, || {
            format!("{node} not passing after its restart: {:?}", health())
        })
        .await;
        let session = lock_on_node(&cluster, &node).await;

        // A graceful leave: left in every server's list, deregistered,
        // its session destroyed and the lock free.
        assert!(cluster.leave_agent(agent), "the agent's gossip runs");
        wait_for(
            Duration::from_secs(20),
            || !registered() && state(&cluster, leader(), session) == (false, None),
            || {
                format!(
                    "{node} registered: {}; session and lock: {:?}",
                    registered(),
                    state(&cluster, leader(), session)
                )
            },
        )
        .await;
        for id in cluster.ids() {
            let view = cluster.members(id).expect("servers are up");
            assert!(
                view.iter()
                    .any(|(m, status)| *m == node
                        && *status == tribune_core::gossip::MemberStatus::Left),
                "server {id} does not show {node} left: {view:?}"
            );
        }

        // Started again, it rejoins: alive everywhere and passing.
        cluster.kill_agent(agent);
        cluster.restart_agent(agent);
        crate::scenario::members_converge(&cluster, in_virtual(Duration::from_secs(15)))
            .await
            .expect("the agent is alive everywhere again");
        crate::scenario::catalog_converges(&cluster, in_virtual(Duration::from_secs(15)))
            .await
            .expect("the catalog follows");
    });
}

/// A server lost for good (disk and all) is replaced by a spare, as an
/// operator or Consul's autopilot does: the spare joins as a learner,
/// catches up, and votes in the lost server's place, so the cluster then
/// survives losing another server.
#[test]
fn a_lost_server_is_replaced_by_a_spare_that_then_votes() {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(13, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = Cluster::new(
            ClusterConfig {
                spares: 1,
                ..config(false, false, 0)
            },
            Trace::default(),
        );
        cluster.initialize().await;
        let set = |key: &str| {
            Command::Kv(KvOp {
                value: key.as_bytes().to_vec(),
                ..KvOp::new(KvVerb::Set, key)
            })
        };
        assert_eq!(
            write(&cluster, set("before")).await,
            CommandResult::Bool(true)
        );
        let spare = cluster.spare().expect("one spare");
        assert_eq!(cluster.ids(), vec![1, 2, 3]);
        let leader = cluster.leader().expect("a leader");
        let lost = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        cluster.retire(lost, spare);
        assert!(!cluster.ids().contains(&lost) && cluster.ids().contains(&spare));
        cluster
            .replace_voter(leader, lost, spare, Duration::from_secs(10))
            .await
            .expect("the leader replaces the lost server");
        let voters: BTreeSet<u64> = cluster.ids().into_iter().collect();
        assert_eq!(cluster.voters(leader), Some(voters.clone()));
        cluster.restart(lost);
        assert!(!cluster.is_up(lost), "a lost server never comes back");

        // Another server goes: the two left (one of them the spare) are a
        // quorum of the three voters.
        let other = voters
            .iter()
            .copied()
            .find(|id| *id != leader && *id != spare)
            .unwrap();
        cluster.kill(other);
        assert_eq!(
            write(&cluster, set("after")).await,
            CommandResult::Bool(true)
        );
        madsim::time::sleep(SETTLE).await;
        let leader = cluster.leader().expect("a leader");
        assert_eq!(
            cluster.store_state(spare).map(|s| s.state_hash),
            cluster.store_state(leader).map(|s| s.state_hash),
            "the spare has what the leader has"
        );
        assert!(cluster.local_value(spare, "before").flatten().is_some());
    });
}

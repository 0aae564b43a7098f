//! Clients' requests through a client agent, step by step (no nemesis):
//! the agent picks a server from its gossip pool, the server forwards to
//! the leader, and core's `route` decides what happens when a server or
//! the leader is gone.

use io_sim::{Cluster, ReadOutcome, WriteOutcome};
use std::time::Duration;
use tribune_core::command::{CommandResult, KvVerb};

use crate::sessions::gossiping_cluster;
use crate::workload::{kv, now_ns};

fn value(outcome: &ReadOutcome) -> Option<String> {
    match outcome {
        ReadOutcome::Read(Some((bytes, _))) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    }
}

async fn set(cluster: &Cluster, agent: u64, key: &str, value: &str) -> WriteOutcome {
    cluster
        .agent_write(agent, kv(KvVerb::Set, key, value, 0))
        .await
}

/// Through an agent, writes and reads reach the leader from whichever
/// server the agent uses; with the leader killed, a write is held until a
/// new one leads; with every server down, it is refused after Consul's
/// hold timeout ("No known Consul servers", nothing done); an agent that
/// is down refuses the connection.
#[test]
fn requests_through_a_client_agent_reach_the_leader_and_wait_out_a_failover() {
    use io_sim::gossip::agent_id;
    let runtime = madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default());
    runtime.block_on(async move {
        let cluster = gossiping_cluster(1).await;
        let agent = agent_id(1);
        let applied = WriteOutcome::Applied(CommandResult::Bool(true));

        assert_eq!(set(&cluster, agent, "k", "v1").await, applied);
        let read = cluster.agent_read(agent, "k").await;
        assert_eq!(value(&read).as_deref(), Some("v1"), "{read:?}");

        // The leader killed: the write waits for the next one.
        let leader = cluster.leader().expect("a leader");
        cluster.kill(leader);
        assert_eq!(set(&cluster, agent, "k", "v2").await, applied);
        let new_leader = cluster.leader().expect("a new leader");
        assert_ne!(new_leader, leader);
        cluster.restart(leader);
        let read = cluster.agent_read(agent, "k").await;
        assert_eq!(value(&read).as_deref(), Some("v2"), "{read:?}");

        // Every server down: held for the hold timeout, then refused.
        for id in cluster.ids() {
            cluster.kill(id);
        }
        let began = now_ns();
        let outcome = set(&cluster, agent, "k", "v3").await;
        let held = Duration::from_nanos(now_ns() - began);
        assert_eq!(
            outcome,
            WriteOutcome::Refused(io_sim::client::NO_SERVERS.into())
        );
        let hold = Duration::from_nanos(tribune_core::route::HOLD_TIMEOUT.as_nanos());
        assert!(held >= hold, "refused after {held:?}, before the hold");
        for id in cluster.ids() {
            cluster.restart(id);
        }
        // Back: the refused write did nothing.
        let back = now_ns() + 30_000_000_000;
        let read = loop {
            let read = cluster.agent_read(agent, "k").await;
            if matches!(read, ReadOutcome::Read(_)) || now_ns() > back {
                break read;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(value(&read).as_deref(), Some("v2"), "{read:?}");

        // The agent down: the connection is refused.
        cluster.kill_agent(agent);
        match set(&cluster, agent, "k", "v4").await {
            WriteOutcome::Refused(why) => assert!(why.contains("down"), "{why}"),
            other => panic!("a write through a killed agent: {other:?}"),
        }
    });
}

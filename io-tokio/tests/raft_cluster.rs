//! Raft clusters in one process over real loopback TCP: openraft driven
//! through tribune's adapters (Fsm state machine, in-memory log store,
//! server RPC). Each node's log store is kept by the test, as its "disk",
//! so a stopped node can be restarted from it.

use openraft::async_runtime::WatchReceiver;
use openraft::{Config, RaftLogReader, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tribune::raft::network::ForwardCallError;
use tribune::raft::{
    forward, ForwardError, LogStore, MemStore, Network, Raft, RaftWriter, RpcClient, RpcServer,
    ServerNode, StateMachine, TypeConfig,
};
use tribune_core::command::{Command, CommandResult, KvOp, KvVerb};
use tribune_core::fsm::Fsm;
use tribune_core::limits::RAFT_APPEND_ENTRIES_MAX;

const WAIT: Duration = Duration::from_secs(20);

struct TestNode {
    id: u64,
    addr: SocketAddr,
    raft: Raft,
    store: Arc<MemStore>,
    log: LogStore<TypeConfig>,
    server: RpcServer,
}

fn config(snapshot_policy: SnapshotPolicy) -> Arc<Config> {
    let config = Config {
        cluster_name: "tribune-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        max_payload_entries: RAFT_APPEND_ENTRIES_MAX as u64,
        snapshot_policy,
        max_in_snapshot_log_to_keep: 0,
        // The last chunk's answer waits for the install; a loaded machine
        // must not turn that into an endless resend.
        install_snapshot_timeout: 10_000,
        purge_batch_size: 1,
        ..Config::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// Starts node `id` on `listener` from `log` (its disk) with an empty
/// state machine, as a restarted process would.
async fn start(
    id: u64,
    listener: TcpListener,
    log: LogStore<TypeConfig>,
    config: Arc<Config>,
) -> TestNode {
    let addr = listener.local_addr().expect("bound");
    let store = Arc::new(MemStore::default());
    let sm = StateMachine::<TypeConfig>::in_memory(store.clone());
    let network = Network::new(Arc::new(RpcClient::new()));
    let raft = Raft::new(id, config, network, log.clone(), sm.clone())
        .await
        .expect("raft starts");
    let server = RpcServer::start(listener, raft.clone(), Arc::new(RaftWriter(raft.clone())));
    TestNode {
        id,
        addr,
        raft,
        store,
        log,
        server,
    }
}

async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

impl TestNode {
    async fn stop(self) -> (LogStore<TypeConfig>, SocketAddr) {
        self.raft.shutdown().await.expect("raft stops");
        self.server.shutdown().await;
        (self.log, self.addr)
    }

    fn fsm(&self) -> Fsm {
        self.store.read(Fsm::clone)
    }

    fn node(&self) -> ServerNode {
        ServerNode::new(format!("s{}", self.id), self.addr)
    }
}

fn set(key: &str, value: &[u8]) -> Command {
    Command::Kv(KvOp {
        value: value.to_vec(),
        ..KvOp::new(KvVerb::Set, key)
    })
}

/// Waits until one of `nodes` leads, with every other one agreeing.
async fn leader_of(nodes: &[&TestNode]) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow_watched().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first() {
            let agreed = leaders.iter().all(|l| *l == Some(*leader));
            let leads = nodes.iter().any(|n| {
                n.id == *leader && n.raft.metrics().borrow_watched().state == ServerState::Leader
            });
            if agreed && leads {
                return *leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(nodes: &[&'a TestNode], id: u64) -> &'a TestNode {
    nodes.iter().find(|n| n.id == id).expect("node present")
}

async fn write_many(leader: &TestNode, prefix: &str, count: usize, value: &[u8]) -> u64 {
    use openraft::error::{ClientWriteError, RaftError};
    let mut last = 0;
    for i in 0..count {
        let command = set(&format!("{prefix}/{i:04}"), value);
        let deadline = tokio::time::Instant::now() + WAIT;
        let response = loop {
            match leader.raft.client_write(command.clone()).await {
                Ok(response) => break response,
                // Refused before it was appended while this node still
                // leads (its lease lapsed on a loaded machine, and comes
                // back with the next heartbeats): a client tries again.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(refused)))
                    if refused.leader_id.is_none_or(|id| id == leader.id)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("write committed: {e:?}"),
            }
        };
        assert_eq!(response.data, CommandResult::Bool(true));
        last = response.log_id.index;
    }
    last
}

/// Waits until every node applied `index`, then checks their stores match.
async fn converged(nodes: &[&TestNode], index: u64) -> Fsm {
    for node in nodes {
        node.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "applied")
            .await
            .unwrap_or_else(|e| {
                let all: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{:?}", n.raft.metrics().borrow_watched()))
                    .collect();
                panic!("node {} did not apply {index}: {e}\nall: {all:#?}", node.id)
            });
    }
    let first = nodes[0].fsm();
    for node in &nodes[1..] {
        assert!(node.fsm() == first, "node {} diverged", node.id);
    }
    first.check_invariants();
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_replicate_fail_over_and_catch_up() {
    let config = config(SnapshotPolicy::Never);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(id, listen().await, LogStore::default(), config.clone()).await);
    }
    let members: BTreeMap<u64, ServerNode> = nodes.iter().map(|n| (n.id, n.node())).collect();
    nodes[0]
        .raft
        .initialize(members)
        .await
        .expect("initialized");

    let all: Vec<&TestNode> = nodes.iter().collect();
    let first_leader = leader_of(&all).await;
    let last = write_many(find(&all, first_leader), "kv", 200, b"v1").await;
    let fsm = converged(&all, last).await;
    assert_eq!(fsm.kv.list("kv/").count(), 200);

    // A forwarded write: a follower names the leader; the leader applies it.
    let client = RpcClient::new();
    let follower = all
        .iter()
        .find(|n| n.id != first_leader)
        .expect("a follower");
    match forward(&client, follower.addr, &set("fwd", b"x")).await {
        Err(ForwardCallError::Refused(ForwardError::NotLeader { leader_id, .. })) => {
            assert_eq!(leader_id, Some(first_leader));
        }
        other => panic!("follower accepted a forwarded write: {other:?}"),
    }
    let reply = forward(&client, find(&all, first_leader).addr, &set("fwd", b"x"))
        .await
        .expect("leader applies a forwarded write");
    assert_eq!(reply.result, CommandResult::Bool(true));

    // The leader stops; the other two elect a new one and go on.
    let position = nodes
        .iter()
        .position(|n| n.id == first_leader)
        .expect("leader");
    let (old_log, old_addr) = nodes.remove(position).stop().await;
    let survivors: Vec<&TestNode> = nodes.iter().collect();
    let second_leader = leader_of(&survivors).await;
    assert_ne!(second_leader, first_leader);
    let last = write_many(find(&survivors, second_leader), "after", 50, b"v2").await;
    converged(&survivors, last).await;

    // The old leader restarts from its log on the same address and catches up.
    let listener = TcpListener::bind(old_addr)
        .await
        .expect("rebind old address");
    nodes.push(start(first_leader, listener, old_log, config.clone()).await);
    let all: Vec<&TestNode> = nodes.iter().collect();
    let fsm = converged(&all, last).await;
    assert_eq!(fsm.kv.list("kv/").count(), 200);
    assert_eq!(fsm.kv.list("after/").count(), 50);

    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_server_catches_up_from_a_streamed_snapshot() {
    let config = config(SnapshotPolicy::LogsSinceLast(20));
    let first = start(1, listen().await, LogStore::default(), config.clone()).await;
    let members = BTreeMap::from([(1, first.node())]);
    first.raft.initialize(members).await.expect("initialized");
    leader_of(&[&first]).await;

    // 16 KiB values: the snapshot spans several RPC chunks.
    let value = vec![7u8; 16 * 1024];
    let last = write_many(&first, "big", 150, &value).await;
    let metrics = first
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 100) && m.purged.is_some(),
            "snapshot taken and log purged",
        )
        .await
        .expect("snapshot and purge");
    let purged = metrics.purged.expect("purged").index;

    // A new server joins; the entries it needs are gone, so it gets the snapshot.
    let late = start(2, listen().await, LogStore::default(), config.clone()).await;
    first
        .raft
        .add_learner(2, late.node(), true)
        .await
        .expect("learner added");
    let fsm = converged(&[&first, &late], last).await;
    assert_eq!(fsm.kv.list("big/").count(), 150);
    let late_metrics = late.raft.metrics().borrow_watched().clone();
    assert!(
        late_metrics.snapshot.is_some(),
        "late server installed a snapshot"
    );
    let mut reader = late.log.clone();
    let early = reader
        .try_get_log_entries(1..=purged)
        .await
        .expect("read log");
    assert!(early.is_empty(), "late server received purged entries");

    late.stop().await;
    first.stop().await;
}

/// Bytes from a misbehaving peer: the connection is closed or answered
/// with an `Error` frame, and the server keeps serving.
#[tokio::test]
async fn rpc_server_refuses_garbage_and_oversize_frames() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tribune_core::rpc_frame::{self, FrameHeader, FrameKind};

    let node = start(
        1,
        listen().await,
        LogStore::default(),
        config(SnapshotPolicy::Never),
    )
    .await;
    let addr = node.addr;
    let closed_after = |bytes: Vec<u8>| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&bytes).await.expect("send");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    };
    assert!(closed_after(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await);
    let oversize = FrameHeader {
        kind: FrameKind::AppendEntries,
        request_id: 1,
        body_len: 0,
    };
    let mut header = oversize.encode();
    header[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(closed_after(header.to_vec()).await);

    // A well-framed request whose body is not a command: an Error reply.
    let mut stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    let mut frame = Vec::new();
    rpc_frame::encode(FrameKind::Forward, 9, b"\xff\xff", &mut frame).expect("frame");
    stream.write_all(&frame).await.expect("send");
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).await.expect("reply header");
    let header = FrameHeader::decode(&reply).expect("a frame");
    assert_eq!((header.kind, header.request_id), (FrameKind::Error, 9));

    // Still serving: a forwarded write to a server with no leader yet.
    let answer = forward(&RpcClient::new(), node.addr, &set("k", b"v")).await;
    assert!(
        matches!(
            answer,
            Err(ForwardCallError::Refused(ForwardError::NotLeader { .. }))
        ),
        "{answer:?}"
    );

    // A Raft message meant for another server's ID (a server that lost its
    // state and came back at the address of server 2) is refused.
    use tribune::raft::rpc::{Addressed, RpcError};
    let vote = openraft::raft::VoteRequest::<tribune::raft::TypeConfig>::new(
        openraft::Vote::new(1, 2),
        None,
    );
    let answer: Result<openraft::raft::VoteResponse<tribune::raft::TypeConfig>, _> =
        RpcClient::new()
            .request(
                node.addr,
                FrameKind::Vote,
                &Addressed { to: 2, rpc: vote },
                WAIT,
            )
            .await;
    assert!(
        matches!(&answer, Err(RpcError::Remote(why)) if why.contains("not 0000000000000002")),
        "{answer:?}"
    );
    node.stop().await;
}

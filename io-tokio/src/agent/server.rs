//! Starting a server: its node ID, durable Raft log and snapshots under
//! `-data-dir`, the server RPC and join listeners, and cluster formation.

use crate::cluster::{raft_id, Cluster};
use crate::gossip::{resolve, Gossip, GossipConfig, RpcHook};
use crate::raft::rpc::ServerInfo;
use crate::raft::wal_log::WalLog;
use crate::raft::{LogStore, Network, Raft, RpcClient, RpcServer, StateMachine, TypeConfig};
use crate::state::Node;
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tribune_core::gossip::SerfConfig;
use tribune_core::limits::RAFT_APPEND_ENTRIES_MAX;
use tribune_core::rng::Rng;

use super::config::AgentConfig;

const NODE_ID_FILE: &str = "node-id";

/// The node ID kept in `data_dir/node-id` (made on first start), as
/// Consul keeps it: a server's Raft identity survives restarts.
pub fn node_id(data_dir: &str, rng: &mut Rng) -> Result<String, String> {
    let dir = Path::new(data_dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("Error creating data_dir {data_dir}: {e}"))?;
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            if raft_id(&id).is_none() {
                return Err(format!("{}: {id:?} is not a node ID", path.display()));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = rng.uuid().to_string();
            write_synced(&path, id.as_bytes())
                .map_err(|e| format!("Error writing {}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("Error reading {}: {e}", path.display())),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn raft_config(config: &AgentConfig) -> Result<Arc<Config>, String> {
    let m = u64::from(config.raft_multiplier);
    let raft = Config {
        cluster_name: format!("tribune-{}", config.datacenter),
        // A follower starts an election after openraft's leader lease
        // (election_timeout_max) plus a random election timeout without
        // hearing from the leader: 600–800 ms × m, 1.2–1.6 s by default.
        heartbeat_interval: 50 * m,
        election_timeout_min: 200 * m,
        election_timeout_max: 400 * m,
        max_payload_entries: RAFT_APPEND_ENTRIES_MAX as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft_snapshot_threshold),
        max_in_snapshot_log_to_keep: config.raft_trailing_logs,
        // Per snapshot chunk; the last one's answer waits for the follower
        // to validate and install the whole store, which for a large store
        // takes seconds. openraft's 200 ms default would time that out and
        // resend the snapshot forever.
        install_snapshot_timeout: 30_000,
        ..Config::default()
    };
    raft.validate()
        .map(Arc::new)
        .map_err(|e| format!("raft configuration: {e}"))
}

pub(super) async fn listen(ip: &str, port: u16, what: &str) -> Result<TcpListener, String> {
    let addr = format!("{ip}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("failed to listen on {addr} ({what}): {e}"))
}

/// Opens the server's storage, starts Raft and its listeners, and joins
/// or forms the cluster in the background.
pub async fn start(config: &AgentConfig, node: &Arc<Node>, node_id: &str) -> Result<(), String> {
    let data_dir = Path::new(config.data_dir.as_deref().unwrap_or("."));
    let id = raft_id(node_id).ok_or_else(|| format!("{node_id:?} is not a node ID"))?;
    let rpc_listener = listen(&config.bind_addr, config.server_port, "server RPC").await?;
    let lan_listener = listen(&config.bind_addr, config.serf_lan_port, "serf LAN").await?;
    let wan_listener = match config.serf_wan_port {
        Some(port) => Some(listen(&config.bind_addr, port, "serf WAN").await?),
        None => None,
    };
    let local = |l: &TcpListener| -> Result<SocketAddr, String> {
        l.local_addr().map_err(|e| format!("listener address: {e}"))
    };
    let me = ServerInfo {
        id,
        name: config.node_name.clone(),
        datacenter: config.datacenter.clone(),
        rpc_addr: local(&rpc_listener)?,
        lan_addr: local(&lan_listener)?,
    };
    let rpc_port = me.rpc_addr.port();
    let raft_dir = data_dir.join("raft");
    let wal_dir = raft_dir.join("wal");
    let mut log = WalLog::<TypeConfig>::open(&wal_dir)
        .map_err(|e| format!("opening the raft log in {}: {e}", wal_dir.display()))?;
    crate::raft::recovery::recover(&raft_dir, &mut log)?;
    let sm = StateMachine::<TypeConfig>::durable(node.clone(), raft_dir.join("snapshots"))
        .map_err(|e| format!("opening raft snapshots: {e}"))?;
    let wal_stats = log.stats_handle();
    let client = Arc::new(RpcClient::new());
    let raft = Raft::new(
        id,
        raft_config(config)?,
        Network::new(client.clone()),
        LogStore::new(log),
        sm,
    )
    .await
    .map_err(|e| format!("starting raft: {e}"))?;
    let cluster = Arc::new(Cluster::new(
        me,
        raft.clone(),
        client,
        config.bootstrap_expect,
    ));
    let _ = cluster.wal_stats.set(wal_stats.clone());
    let _ = cluster.disk.set(crate::disk_space::DiskSpace::new(
        &raft_dir,
        &raft_dir.join("snapshots"),
    ));
    tokio::spawn(snapshot_by_size(
        raft.clone(),
        wal_stats,
        config.raft_snapshot_bytes,
    ));
    node.attach(cluster.clone());
    // Both listeners serve for the life of the process. The LAN port is
    // shared: gossip takes memberlist's streams and hands connections
    // that begin with the RPC magic (the join exchange) to Raft's server.
    let _ = RpcServer::start(rpc_listener, raft.clone(), node.clone());
    let hook: RpcHook = {
        let (raft, node) = (raft.clone(), node.clone());
        Arc::new(move |stream| RpcServer::serve_stream(stream, raft.clone(), node.clone()))
    };
    let serf = lan_serf_config(config, node_id, rpc_port);
    let gossip = start_lan(config, node, serf, lan_listener, Some(hook)).await?;
    tokio::spawn(crate::reconcile::run(node.clone(), gossip.clone()));
    if !config.join.is_empty() {
        tokio::spawn(retry_join(
            gossip.clone(),
            config.join.clone(),
            config.serf_lan_port,
        ));
    }
    match wan_listener {
        Some(listener) => start_wan(config, node, node_id, rpc_port, listener).await?,
        None if !config.join_wan.is_empty() => {
            return Err("-retry-join-wan needs the WAN pool (serf_wan port is -1)".into())
        }
        None => {}
    }
    tokio::spawn(exit_on_raft_fault(raft.clone()));
    tokio::spawn(follow_leadership(node.clone(), raft));
    tokio::spawn(cluster.form(config.join.clone(), Some(gossip)));
    Ok(())
}

/// Starts an agent's LAN pool on `listener` (encrypted as the config and
/// the keyring file say), attaches it to the node and delivers its user
/// events; servers and client agents alike.
pub(super) async fn start_lan(
    config: &AgentConfig,
    node: &Arc<Node>,
    mut serf: SerfConfig,
    listener: TcpListener,
    hook: Option<RpcHook>,
) -> Result<Gossip, String> {
    let lan_addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let data_dir = Path::new(config.data_dir.as_deref().unwrap_or("."));
    let (keyring, encryption) = crate::keyring::setup(config, data_dir)?;
    serf.keyring = keyring;
    let gossip_config = GossipConfig {
        name: config.node_name.clone(),
        advertise: SocketAddr::new(advertise_ip(lan_addr.ip()), lan_addr.port()),
        serf,
        label: String::new(),
        encryption,
    };
    let gossip = Gossip::start(gossip_config, listener, hook).await?;
    node.attach_gossip(gossip.clone());
    tokio::spawn(crate::events::ingest(node.clone(), &gossip));
    Ok(gossip)
}

/// The tags every agent announces (`role` is `consul` for a server, `node`
/// for a client): datacenter, segment, node ID, protocol versions, build.
pub(super) fn agent_tags(
    config: &AgentConfig,
    node_id: &str,
    role: &str,
) -> BTreeMap<String, String> {
    [
        ("role", role.to_string()),
        ("dc", config.datacenter.clone()),
        ("segment", String::new()),
        ("id", node_id.to_string()),
        ("vsn", "2".to_string()),
        ("vsn_min", "2".to_string()),
        ("vsn_max", "3".to_string()),
        ("build", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Joins the WAN pool, where the servers of every datacenter gossip as
/// `<node>.<datacenter>` with the same tags as on the LAN (Consul's
/// `setupSerf` for the WAN).
async fn start_wan(
    config: &AgentConfig,
    node: &Arc<Node>,
    node_id: &str,
    rpc_port: u16,
    listener: TcpListener,
) -> Result<(), String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let mut serf = SerfConfig::wan();
    serf.tags = lan_serf_config(config, node_id, rpc_port).tags;
    // The WAN pool is encrypted with the same `-encrypt` key, kept in a
    // keyring file of its own (Consul's `serf/remote.keyring`).
    let data_dir = Path::new(config.data_dir.as_deref().unwrap_or("."));
    let path = data_dir.join("serf").join("remote.keyring");
    serf.keyring = crate::keyring::load_or_init(&path, config.encrypt.as_deref())?;
    let wan_config = GossipConfig {
        name: format!("{}.{}", config.node_name, config.datacenter),
        advertise: SocketAddr::new(advertise_ip(addr.ip()), addr.port()),
        serf,
        label: String::new(),
        encryption: crate::keyring::Encryption {
            verify_incoming: config.encrypt_verify_incoming,
            verify_outgoing: config.encrypt_verify_outgoing,
            keyring_file: Some(path),
        },
    };
    let wan = Gossip::start(wan_config, listener, None).await?;
    node.attach_wan(wan.clone());
    if !config.join_wan.is_empty() {
        tokio::spawn(retry_join(wan, config.join_wan.clone(), addr.port()));
    }
    Ok(())
}

/// serf's LAN configuration with Consul's server tags (`server_serf.go`):
/// the role, datacenter, node ID, server RPC port, protocol and Raft
/// versions, build, and the bootstrap mode.
fn lan_serf_config(config: &AgentConfig, node_id: &str, rpc_port: u16) -> SerfConfig {
    let mut serf = SerfConfig::lan();
    let mut tags = agent_tags(config, node_id, "consul");
    for (key, value) in [
        ("port", rpc_port.to_string()),
        ("raft_vsn", "3".to_string()),
    ] {
        tags.insert(key.to_string(), value);
    }
    match config.bootstrap_expect {
        // Consul treats an expectation of one as `-bootstrap`.
        Some(1) => {
            tags.insert("bootstrap".into(), "1".into());
        }
        Some(n) => {
            tags.insert("expect".into(), n.to_string());
        }
        None => {}
    }
    serf.tags = tags;
    serf
}

/// The address to announce when bound to the unspecified address: the
/// one the OS would route outwards from (no packet is sent), else
/// loopback.
pub(super) fn advertise_ip(bound: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// `-retry-join` for the LAN pool: tries every address until one join
/// succeeds, waiting 1 s after the first failure and doubling up to 30 s
/// (Consul's `retry_interval`).
pub(super) async fn retry_join(gossip: Gossip, addrs: Vec<String>, default_port: u16) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        let mut resolved = Vec::new();
        for addr in &addrs {
            match resolve(addr, default_port).await {
                Ok(a) => resolved.push(a),
                Err(e) => crate::log::warn(&format!("gossip: retry-join: {e}")),
            }
        }
        if !resolved.is_empty() {
            match gossip.join(resolved).await {
                Ok(n) => {
                    crate::log::info(&format!("gossip: retry-join: joined {n} nodes"));
                    return;
                }
                Err(e) => {
                    crate::log::warn(&format!("gossip: retry-join: {e}; retrying in {wait:?}"))
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Takes a snapshot whenever `threshold` bytes were appended to the log
/// since the last one this task asked for (openraft's own policy counts
/// entries only). Each server watches its own log, as each snapshots its
/// own store.
async fn snapshot_by_size(raft: Raft, wal: crate::storage::WalStatsHandle, threshold: u64) {
    let mut since = wal.stats().bytes;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let bytes = wal.stats().bytes;
        if bytes.saturating_sub(since) < threshold {
            continue;
        }
        since = bytes;
        match raft.trigger().snapshot().await {
            Ok(()) => crate::log::info(&format!(
                "raft: {} MiB appended since the last size-triggered snapshot: snapshotting",
                threshold / (1024 * 1024)
            )),
            Err(e) => crate::log::warn(&format!("raft: size-triggered snapshot: {e}")),
        }
    }
}

/// Ends the process when Raft stops on a fault (see
/// [`crate::raft::stopped_by_fault`]): a server whose Raft core has stopped
/// cannot serve or recover on its own, so it exits with status 1 for its
/// service manager to restart it, as a Consul server stops on a storage
/// failure. Everything it acknowledged is on disk already.
async fn exit_on_raft_fault(raft: Raft) {
    let mut metrics = raft.metrics();
    loop {
        let fault = crate::raft::stopped_by_fault(&metrics.borrow_watched());
        if let Some(fault) = fault {
            crate::log::error(&format!(
                "raft: stopped on a fault: {fault}; exiting so that a restart reopens the log"
            ));
            std::process::exit(1);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Tells the node when it gains or loses leadership.
async fn follow_leadership(node: Arc<Node>, raft: Raft) {
    let mut metrics = raft.server_metrics();
    let mut last = (false, None);
    loop {
        let (leading, leader) = {
            let m = metrics.borrow_watched();
            (m.state == ServerState::Leader, m.current_leader)
        };
        node.set_leading(leading);
        if (leading, leader) != last {
            match (leading, leader) {
                (true, _) => crate::log::info("raft: this server is the leader"),
                (false, Some(id)) => crate::log::info(&format!("raft: leader is {id:016x}")),
                (false, None) => crate::log::info("raft: no leader"),
            }
            last = (leading, leader);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

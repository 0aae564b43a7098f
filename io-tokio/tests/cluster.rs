//! Raft clusters of real `tribune agent -server` processes on loopback:
//! election, forwarding, failover after SIGKILL, durability across a crash
//! of every server, catch-up by snapshot, peer removal, and reads on a
//! leader cut off by SIGSTOP.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{try_put, Cluster};
use support::{b64, unb64, wait_for};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn three_servers_elect_forward_and_fail_over() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.other_than(leader);

    // A write through a follower is forwarded to the leader.
    let f = &cluster.servers[follower].client;
    assert_eq!(f.put("/v1/kv/greeting", "hello").expect(200).text(), "true");
    // Default and consistent reads on a follower see it at once.
    for mode in ["", "&consistent"] {
        let resp = f.get(&format!("/v1/kv/greeting?raw{mode}")).expect(200);
        assert_eq!(resp.text(), "hello");
        assert_eq!(resp.header("X-Consul-KnownLeader"), Some("true"));
    }
    // A stale read carries how long ago the follower heard from the leader.
    let stale = wait_for(WAIT, "a stale read of the key", || {
        let resp = f.get("/v1/kv/greeting?stale");
        (resp.status == 200).then_some(resp)
    });
    assert_eq!(stale.header("X-Consul-KnownLeader"), Some("true"));
    let contact: u64 = stale
        .header("X-Consul-LastContact")
        .expect("X-Consul-LastContact")
        .parse()
        .expect("milliseconds");
    assert!(contact < 5_000, "last contact {contact} ms ago");
    let leader_read = cluster.servers[leader]
        .client
        .get("/v1/kv/greeting")
        .expect(200);
    assert_eq!(leader_read.header("X-Consul-LastContact"), Some("0"));

    // Every server is in the configuration and the catalog.
    let peers = f.get("/v1/status/peers").expect(200).json();
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    let config = f.get("/v1/operator/raft/configuration").expect(200).json();
    let servers = config["Servers"].as_array().expect("Servers");
    assert_eq!(servers.len(), 3);
    assert_eq!(
        servers.iter().filter(|s| s["Leader"] == true).count(),
        1,
        "{config}"
    );
    let nodes = wait_for(WAIT, "three nodes in the catalog", || {
        let nodes = f.get("/v1/catalog/nodes").json();
        (nodes.as_array().map(Vec::len) == Some(3)).then_some(nodes)
    });
    assert_eq!(nodes.as_array().map(Vec::len), Some(3));

    // The CLI table names every server and the leader.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["operator", "raft", "list-peers", "-http-addr"])
        .arg(cluster.servers[follower].client.addr().to_string())
        .output()
        .expect("run list-peers");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.starts_with("Node  "), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" leader ")).count(), 1);
    for name in ["s1", "s2", "s3"] {
        assert!(table.lines().any(|l| l.starts_with(name)), "{table}");
    }

    // kill -9 of the leader: the others elect a new one and take writes.
    let old = cluster.servers[leader].rpc_addr();
    cluster.servers[leader].kill();
    let survivor = cluster.other_than(leader);
    wait_for(WAIT, "a write after the leader died", || {
        let resp = try_put(&cluster.servers[survivor].client, "after", "failover")?;
        (resp.status == 200 && resp.text() == "true").then_some(())
    });
    let new_leader = cluster.leader();
    assert_ne!(cluster.servers[new_leader].rpc_addr(), old);

    // The old leader comes back as a follower and catches up.
    cluster.servers[leader].restart();
    let back = &cluster.servers[leader].client;
    let value = wait_for(WAIT, "the restarted server to catch up", || {
        let resp = back
            .try_request("GET", "/v1/kv/after?raw&stale", None, &[])
            .ok()?;
        (resp.status == 200).then(|| resp.text())
    });
    assert_eq!(value, "failover");
    assert_eq!(
        back.get("/v1/kv/greeting?raw&stale").expect(200).text(),
        "hello"
    );
}

/// `-bootstrap` (one server) forms a cluster at once; servers started
/// later with only `-retry-join` are added as voters through it, and the
/// grown cluster survives losing the first server.
#[test]
fn servers_join_a_formed_cluster_as_voters() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader();
    assert_eq!(
        cluster.servers[0]
            .client
            .put("/v1/kv/early", "1")
            .expect(200)
            .text(),
        "true"
    );
    let (a, b) = (cluster.add_server(), cluster.add_server());
    let peers = wait_for(WAIT, "three voters", || {
        let peers = cluster.servers[0].client.get("/v1/status/peers").json();
        (peers.as_array().map(Vec::len) == Some(3)).then_some(peers)
    });
    for i in [a, b] {
        assert!(
            peers.to_string().contains(&cluster.servers[i].rpc_addr()),
            "{peers}"
        );
        let early = wait_for(WAIT, "the joiner to catch up", || {
            let resp = cluster.servers[i]
                .client
                .try_request("GET", "/v1/kv/early?raw&stale", None, &[])
                .ok()?;
            (resp.status == 200).then(|| resp.text())
        });
        assert_eq!(early, "1");
    }
    // Both joins completed: the leader answers AddServer only once the
    // final (non-joint) configuration is committed, and the joiner logs it.
    // Then the first server can go.
    for i in [a, b] {
        wait_for(WAIT, "the join to complete", || {
            cluster.servers[i]
                .log_contents()
                .contains("cluster: joined through")
                .then_some(())
        });
    }
    cluster.servers[0].kill();
    wait_for(WAIT, "a write without the first server", || {
        let resp = try_put(&cluster.servers[a].client, "later", "2")?;
        (resp.status == 200 && resp.text() == "true").then_some(())
    });
}

/// Writers record every acknowledged write while every server is killed
/// with SIGKILL; after a restart each acknowledged value is there.
#[test]
fn acknowledged_writes_survive_sigkill_of_every_server() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let client = cluster.servers[w].client.clone();
            let (acked, stop, acks) = (acked.clone(), stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Each writer owns its keys and overwrites them, so the
                    // last acknowledged value of a key is the one to find.
                    let key = format!("w{w}/k{}", i % 50);
                    let value = format!("{w}-{i}");
                    if let Some(resp) = try_put(&client, &key, &value) {
                        if resp.status == 200 && resp.text() == "true" {
                            acked.lock().unwrap().insert(key, value);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let acked_before_crash = wait_for(WAIT, "some acknowledged writes", || {
        let n = acks.load(Ordering::Relaxed);
        (n >= 300).then_some(n)
    });
    assert!(acked_before_crash >= 300);
    // Crash everything while writes are in flight. A write acknowledged
    // after its server died cannot exist, so the map is final once all
    // writers stop.
    for server in &mut cluster.servers {
        server.kill();
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let acked = acked.lock().unwrap().clone();
    for server in &mut cluster.servers {
        server.restart();
    }
    let leader = cluster.leader();
    let client = &cluster.servers[leader].client;
    let store = wait_for(WAIT, "a consistent read after the restart", || {
        let resp = client
            .try_request("GET", "/v1/kv/?recurse&consistent", None, &[])
            .ok()?;
        (resp.status == 200).then(|| resp.json())
    });
    let found: BTreeMap<String, String> = store
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let key = e["Key"].as_str().expect("Key").to_string();
            (key, String::from_utf8(unb64(&e["Value"])).expect("utf-8"))
        })
        .collect();
    for (key, value) in &acked {
        let got = found.get(key);
        // A later write to the key may have been applied without its
        // acknowledgement arriving: the value is this writer's, and not
        // older than the acknowledged one.
        let got = got.unwrap_or_else(|| {
            panic!(
                "acknowledged key {key} ({value}) lost; {} keys found, {} acknowledged",
                found.len(),
                acked.len()
            )
        });
        let seq = |v: &str| -> u64 { v.split('-').nth(1).unwrap().parse().unwrap() };
        assert!(
            got.split('-').next() == value.split('-').next() && seq(got) >= seq(value),
            "{key}: acknowledged {value}, found {got}"
        );
    }
}

/// A follower stopped while 20,000 keys are written (in transactions of
/// 64) catches up from a snapshot: the leader has purged the log it missed.
#[test]
fn stopped_follower_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(
        3,
        &[
            "-hcl",
            "raft_snapshot_threshold = 64",
            "-hcl",
            "raft_trailing_logs = 16",
        ],
    );
    let leader = cluster.leader();
    let follower = cluster.other_than(leader);
    cluster.servers[follower].kill();
    let client = cluster.servers[leader].client.clone();
    let total = 20_000;
    for batch in 0..total / 64 + 1 {
        let ops: Vec<serde_json::Value> = (batch * 64..((batch + 1) * 64).min(total))
            .map(|i| {
                serde_json::json!({"KV": {"Verb": "set", "Key": format!("bulk/{i:05}"), "Value": b64(format!("v{i}"))}})
            })
            .collect();
        if ops.is_empty() {
            break;
        }
        let resp = client.put("/v1/txn", serde_json::Value::Array(ops).to_string());
        assert_eq!(resp.status, 200, "txn {batch}: {}", resp.text());
    }
    cluster.servers[follower].restart();
    let back = &cluster.servers[follower].client;
    let count = wait_for(Duration::from_secs(60), "the follower to catch up", || {
        let resp = back
            .try_request("GET", "/v1/kv/bulk/?keys&stale", None, &[])
            .ok()
            .filter(|r| r.status == 200)?;
        let n = resp.json().as_array().map_or(0, Vec::len);
        (n == total).then_some(n)
    });
    assert_eq!(count, total);
    // It caught up from the leader's snapshot (the log it missed is gone),
    // which it also keeps on disk for its own restarts.
    let log = cluster.servers[follower].log_contents();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "the follower did not install a snapshot:\n{log}"
    );
    let snapshot = cluster.servers[follower]
        .data_dir
        .join("raft/snapshots/snapshot");
    assert!(snapshot.exists(), "no {}", snapshot.display());
    assert_eq!(
        back.get("/v1/kv/bulk/19999?raw&stale").expect(200).text(),
        "v19999"
    );
}

/// Five servers lose two for good; removing them leaves a healthy
/// three-server cluster that survives losing one more.
#[test]
fn remove_peer_of_dead_servers_restores_a_healthy_quorum() {
    let mut cluster = Cluster::start(5, &[]);
    let leader = cluster.leader();
    let dead: Vec<usize> = (0..5).filter(|&i| i != leader).take(2).collect();
    for &i in &dead {
        cluster.servers[i].kill();
    }
    let leader = cluster.leader();
    let via = cluster.servers[leader].client.addr().to_string();
    for &i in &dead {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
            .args(["operator", "raft", "remove-peer", "-http-addr", &via])
            .arg(format!("-address={}", cluster.servers[i].rpc_addr()))
            .output()
            .expect("run remove-peer");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("Removed peer"), "{text}");
    }
    let peers = wait_for(WAIT, "three peers", || {
        let peers = cluster.servers[leader]
            .client
            .get("/v1/status/peers")
            .json();
        (peers.as_array().map(Vec::len) == Some(3)).then_some(peers)
    });
    assert_eq!(peers.as_array().map(Vec::len), Some(3));
    // Removing an unknown peer is a clear error.
    let resp = cluster.servers[leader]
        .client
        .delete("/v1/operator/raft/peer?address=127.0.0.1:1");
    assert_eq!(resp.status, 500);
    assert!(resp.text().contains("not found in the Raft configuration"));

    // Three voters: losing one more (a follower) keeps a quorum.
    let follower = (0..5)
        .find(|&i| i != leader && cluster.servers[i].running())
        .expect("a follower");
    cluster.servers[follower].kill();
    let resp = cluster.servers[leader].client.put("/v1/kv/still", "up");
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A server whose data directory is lost comes back at its old address
/// with a new node ID: the leader takes the stale entry out before adding
/// it (Consul's `joinConsulServer`), so the cluster is three voters again,
/// not four with one that never answers, and it survives losing another.
#[test]
fn a_server_that_lost_its_data_rejoins_in_place_of_its_old_self() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let lost = cluster.other_than(leader);
    let addr = cluster.servers[lost].rpc_addr();
    let at_addr = |config: &serde_json::Value| -> Vec<serde_json::Value> {
        config["Servers"]
            .as_array()
            .map(|servers| {
                servers
                    .iter()
                    .filter(|s| s["Address"] == addr.as_str())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let configuration = |cluster: &Cluster| {
        cluster.servers[leader]
            .client
            .get("/v1/operator/raft/configuration")
            .json()
    };
    let before = at_addr(&configuration(&cluster));
    assert_eq!(before.len(), 1, "{before:?}");
    let old_id = before[0]["ID"].clone();
    let put = cluster.servers[leader].client.put("/v1/kv/before", "loss");
    assert_eq!(put.status, 200, "{}", put.text());

    cluster.servers[lost].kill();
    std::fs::remove_dir_all(&cluster.servers[lost].data_dir).expect("wipe the data dir");
    cluster.servers[lost].restart();
    let config = wait_for(
        WAIT,
        "three voters, the new one in place of the old",
        || {
            let config = configuration(&cluster);
            let servers = config["Servers"].as_array().map(Vec::len);
            let here = at_addr(&config);
            let replaced = here.len() == 1 && here[0]["ID"] != old_id && here[0]["Voter"] == true;
            (servers == Some(3) && replaced).then_some(config)
        },
    );
    assert!(
        !config.to_string().contains(old_id.as_str().unwrap_or("?")),
        "{config}"
    );
    let removed = format!("before adding server {}", cluster.servers[lost].name);
    assert!(
        cluster
            .servers
            .iter()
            .any(|s| s.log_contents().contains(&removed)),
        "no leader took the stale entry out"
    );
    // It caught up, and with it the cluster keeps a quorum without a third.
    let caught_up = wait_for(WAIT, "the rejoined server has the data", || {
        let resp = cluster.servers[lost]
            .client
            .try_request("GET", "/v1/kv/before?raw&stale", None, &[])
            .ok()?;
        (resp.status == 200).then(|| resp.text())
    });
    assert_eq!(caught_up, "loss");
    let third = (0..3).find(|&i| i != leader && i != lost).expect("a third");
    cluster.servers[third].kill();
    let put = cluster.servers[leader].client.put("/v1/kv/after", "still");
    assert_eq!(put.status, 200, "{}", put.text());
}

/// `tribune leave` on a server takes it out of the configuration and stops
/// it; the other two carry on as a two-server cluster.
#[test]
fn leave_removes_a_server_from_the_configuration() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let leaving = cluster.other_than(leader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["leave", "-http-addr"])
        .arg(cluster.servers[leaving].client.addr().to_string())
        .output()
        .expect("run leave");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Graceful leave complete"), "{text}");
    let peers = wait_for(WAIT, "two peers", || {
        let peers = cluster.servers[leader]
            .client
            .get("/v1/status/peers")
            .json();
        (peers.as_array().map(Vec::len) == Some(2)).then_some(peers)
    });
    assert!(!peers
        .to_string()
        .contains(&cluster.servers[leaving].rpc_addr()));
    wait_for(WAIT, "the server to exit", || {
        cluster.servers[leaving].exited().then_some(())
    });
    let resp = cluster.servers[leader]
        .client
        .put("/v1/kv/after-leave", "ok");
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A leader cut off from both followers (SIGSTOP) must not answer
/// consistent reads from its possibly stale store nor hold writes forever;
/// stale reads still work. Once the followers run again, consistent reads
/// and writes succeed.
#[test]
fn isolated_leader_fails_consistent_reads_and_writes_instead_of_hanging() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let client = &cluster.servers[leader].client;
    assert_eq!(client.put("/v1/kv/x", "1").expect(200).text(), "true");
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.servers[i].stop_signal();
    }
    let started = Instant::now();
    let resp = client.get("/v1/kv/x?consistent");
    assert_eq!(
        resp.status,
        500,
        "consistent read answered: {}",
        resp.text()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let stale = client.get("/v1/kv/x?stale&raw").expect(200);
    assert_eq!(stale.text(), "1");
    // Writes fail too instead of waiting forever for a commit (Consul's
    // leader steps down without a quorum): one already proposed with
    // "leadership lost", a later one with "No cluster leader" after the
    // hold, and the leader reports none.
    let write = client.put("/v1/kv/y", "2");
    assert_eq!(write.status, 500, "write answered: {}", write.text());
    let write = client.put("/v1/kv/z", "3");
    assert_eq!(write.status, 500, "write answered: {}", write.text());
    assert_eq!(write.text().trim(), "No cluster leader");
    assert_eq!(client.get("/v1/status/leader").expect(200).json(), "");
    for &i in &followers {
        cluster.servers[i].cont_signal();
    }
    let value = wait_for(WAIT, "a consistent read after the followers resume", || {
        let resp = cluster.servers[followers[0]]
            .client
            .try_request("GET", "/v1/kv/x?consistent&raw", None, &[])
            .ok()?;
        (resp.status == 200).then(|| resp.text())
    });
    assert_eq!(value, "1");
    let written = wait_for(WAIT, "a write after the followers resume", || {
        try_put(client, "after", "yes").filter(|r| r.status == 200)
    });
    assert_eq!(written.text(), "true");
}

#[test]
fn a_size_threshold_snapshots_a_log_of_few_large_entries() {
    // The entry count alone would not snapshot for 100,000 entries.
    let cluster = Cluster::start(
        1,
        &[
            "-hcl=raft_snapshot_bytes = 1048576",
            "-hcl=raft_snapshot_threshold = 100000",
        ],
    );
    cluster.leader();
    let client = &cluster.servers[0].client;
    let snapshot_index = || -> Option<u64> {
        let stats = client.get("/v1/agent/self").expect(200).json();
        stats["Stats"]["raft"]["last_snapshot_index"]
            .as_str()?
            .parse()
            .ok()
    };
    assert_eq!(snapshot_index(), Some(0));
    let value = "x".repeat(200 * 1024);
    for i in 0..8 {
        let resp = client.put(&format!("/v1/kv/big/{i}"), &value);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let index = wait_for(WAIT, "a size-triggered snapshot", || {
        snapshot_index().filter(|&i| i > 0)
    });
    assert!(index >= 5, "snapshot at {index}");
}

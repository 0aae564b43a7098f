//! Outage recovery with `peers.json` (real `tribune agent -server`
//! processes): five servers lose three for good; the two survivors are
//! stopped, given the same `data-dir/raft/peers.json` naming both, and
//! restarted; they elect a leader between themselves and keep every
//! acknowledged write.

mod support;

use std::time::Duration;
use support::cluster::{try_put, Cluster};
use support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn two_survivors_of_five_recover_with_peers_json() {
    let mut cluster = Cluster::start(5, &[]);
    let leader = cluster.leader();
    let writer = cluster.servers[leader].client.clone();
    for i in 0..50 {
        let resp = writer.put(&format!("/v1/kv/before/{i}"), format!("v{i}"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // Three servers are gone for good: the other two cannot elect.
    let survivors = [0, 1];
    for i in 2..5 {
        cluster.servers[i].kill();
    }
    let stuck = cluster.servers[0].client.put("/v1/kv/stuck", "x");
    assert_eq!(stuck.status, 500, "{}", stuck.text());
    // Stop the survivors, write the same peers.json on both, restart.
    let mut peers = Vec::new();
    for &i in &survivors {
        let server = &mut cluster.servers[i];
        server.kill();
        let id = std::fs::read_to_string(server.data_dir.join("node-id")).expect("node-id");
        peers.push(serde_json::json!({
            "id": id.trim(),
            "address": server.rpc_addr(),
            "non_voter": false,
        }));
    }
    let peers_json = serde_json::to_string_pretty(&peers).expect("json");
    for &i in &survivors {
        let server = &mut cluster.servers[i];
        std::fs::write(server.data_dir.join("raft/peers.json"), &peers_json).expect("write");
        server.restart();
    }
    let leader = cluster.leader();
    assert!(survivors.contains(&leader));
    for &i in &survivors {
        let server = &cluster.servers[i];
        assert!(
            !server.data_dir.join("raft/peers.json").exists(),
            "{} deleted peers.json after applying it",
            server.name
        );
    }
    // The configuration is the two survivors; writes flow again.
    let client = cluster.servers[survivors[0]].client.clone();
    let peers = client.get("/v1/status/peers").expect(200).json();
    assert_eq!(peers.as_array().map(Vec::len), Some(2), "{peers}");
    let written = wait_for(WAIT, "a write after recovery", || {
        try_put(&client, "after", "yes").filter(|r| r.status == 200)
    });
    assert_eq!(written.text(), "true");
    // Every acknowledged write is there, on both survivors.
    for &i in &survivors {
        let server = &cluster.servers[i].client;
        for n in [0, 25, 49] {
            let value = wait_for(WAIT, "an old key on a survivor", || {
                let resp = server.get(&format!("/v1/kv/before/{n}?raw&stale"));
                (resp.status == 200).then(|| resp.text())
            });
            assert_eq!(value, format!("v{n}"));
        }
        let keys = server
            .get("/v1/kv/before/?keys&consistent")
            .expect(200)
            .json();
        assert_eq!(keys.as_array().map(Vec::len), Some(50));
    }
    // A restart does not apply the recovery again, and the pair stays.
    cluster.servers[survivors[1]].kill();
    cluster.servers[survivors[1]].restart();
    cluster.leader();
    let peers = client.get("/v1/status/peers").expect(200).json();
    assert_eq!(peers.as_array().map(Vec::len), Some(2), "{peers}");
}

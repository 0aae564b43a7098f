//! `PUT /v1/snapshot` and `tribune snapshot restore` on Raft clusters of
//! real `tribune agent -server` processes: the restore travels through the
//! log in chunks, every server ends with exactly the saved store, writes
//! continue above every index seen, the restored state survives a crash of
//! every server, and a bad archive changes nothing.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::cluster::Cluster;
use support::{b64, unb64, wait_for, Client};

const WAIT: Duration = Duration::from_secs(60);
/// Enough 4 KiB values that the archive takes many restore chunks.
const BULK_KEYS: usize = 3000;
const BULK_VALUE_BYTES: usize = 4096;

fn bulk_value(i: usize) -> Vec<u8> {
    let mut value = format!("value {i} ").into_bytes();
    value.resize(BULK_VALUE_BYTES, b'a' + (i % 26) as u8);
    value
}

/// Writes the bulk keys through `client`, 64 per transaction.
fn write_bulk(client: &Client) {
    for start in (0..BULK_KEYS).step_by(64) {
        let ops: Vec<Value> = (start..(start + 64).min(BULK_KEYS))
            .map(|i| {
                json!({"KV": {"Verb": "set", "Key": format!("bulk/{i:04}"), "Value": b64(bulk_value(i))}})
            })
            .collect();
        let resp = client.put("/v1/txn", Value::Array(ops).to_string());
        assert_eq!(resp.status, 200, "txn at {start}: {}", resp.text());
    }
}

/// Every key and its value, read from this server's own store.
fn stale_store(client: &Client) -> Option<BTreeMap<String, Vec<u8>>> {
    let resp = client
        .try_request("GET", "/v1/kv/?recurse&stale", None, &[])
        .ok()?;
    if resp.status != 200 {
        return None;
    }
    Some(
        resp.json()
            .as_array()?
            .iter()
            .map(|e| {
                let key = e["Key"].as_str().expect("Key").to_string();
                (key, unb64(&e["Value"]))
            })
            .collect(),
    )
}

/// Session names in this server's own store.
fn stale_sessions(client: &Client) -> Option<Vec<String>> {
    let resp = client
        .try_request("GET", "/v1/session/list?stale", None, &[])
        .ok()?;
    if resp.status != 200 {
        return None;
    }
    let mut names: Vec<String> = resp
        .json()
        .as_array()?
        .iter()
        .map(|s| s["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    Some(names)
}

/// Waits until every running server's own store holds `want` and the
/// sessions named `sessions`.
#[track_caller]
fn every_server_holds(
    cluster: &Cluster,
    want: &BTreeMap<String, Vec<u8>>,
    sessions: &[&str],
    what: &str,
) {
    for server in cluster.servers.iter().filter(|s| s.running()) {
        let store = wait_for(WAIT, &format!("{what} on {}", server.name), || {
            stale_store(&server.client).filter(|store| store == want)
        });
        assert_eq!(store.len(), want.len());
        let names = wait_for(WAIT, &format!("sessions on {}", server.name), || {
            stale_sessions(&server.client).filter(|names| names == sessions)
        });
        assert_eq!(names, sessions);
    }
}

fn modify_index(client: &Client, key: &str) -> u64 {
    let entry = client.get(&format!("/v1/kv/{key}")).expect(200).json();
    entry[0]["ModifyIndex"].as_u64().expect("ModifyIndex")
}

/// Creates a session named `name` on the agent's node, without checks.
fn create_session(client: &Client, name: &str) -> String {
    let body = json!({"Name": name, "Checks": []});
    let resp = wait_for(WAIT, "a session (the node must be registered)", || {
        let resp = client.put_json("/v1/session/create", &body);
        (resp.status == 200).then_some(resp)
    });
    resp.json()["ID"].as_str().expect("ID").to_string()
}

/// A follower restores a multi-MiB snapshot taken before later changes:
/// every server ends with exactly the saved keys and sessions, a blocking
/// query wakes, later writes get indexes above everything seen before, and
/// the restored state survives SIGKILL and restart of every server.
/// Raft snapshots every 16 entries fall in the middle of the restore's
/// ~30 entries, and the trailing log is short, so the restart recovers
/// from snapshots rather than from a whole log.
#[test]
fn follower_restores_a_large_snapshot_on_every_server() {
    let mut cluster = Cluster::start(
        3,
        &[
            "-hcl",
            "raft_snapshot_threshold = 16",
            "-hcl",
            "raft_trailing_logs = 8",
        ],
    );
    let leader = cluster.leader();
    let follower = cluster.other_than(leader);
    let l = cluster.servers[leader].client.clone();
    let f = cluster.servers[follower].client.clone();

    write_bulk(&l);
    l.put("/v1/kv/app/a", "1").expect(200);
    l.put("/v1/kv/app/b", "2").expect(200);
    create_session(&l, "saved");
    let app_a_index = modify_index(&l, "app/a");

    let archive = l.get("/v1/snapshot").expect(200).body;
    assert!(
        archive.len() > BULK_KEYS * BULK_VALUE_BYTES,
        "{} bytes",
        archive.len()
    );
    let saved = stale_store(&l).expect("the leader's store");
    assert_eq!(saved.len(), BULK_KEYS + 2);

    // Change things after the save, with a blocking query waiting on a
    // follower for a key the restore removes.
    l.delete("/v1/kv/app/a").expect(200);
    l.delete("/v1/kv/bulk/?recurse").expect(200);
    l.put("/v1/kv/app/c", "3").expect(200);
    create_session(&l, "later");
    let before_restore = l.get("/v1/kv/app/c").index();
    let waiting = wait_for(WAIT, "the follower to apply app/c", || {
        let resp = f.get("/v1/kv/app/c?stale");
        (resp.status == 200).then(|| resp.header("X-Consul-Index").map(str::to_string))?
    });
    let waiter_client = f.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        // Below the test client's 30 s read timeout.
        let resp = waiter_client.get(&format!("/v1/kv/app/c?stale&index={waiting}&wait=25s"));
        (resp.status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let resp = f.put("/v1/snapshot", &archive);
    assert_eq!(resp.status, 200, "restore: {}", resp.text());
    eprintln!(
        "restored {} bytes through a follower in {:?}",
        archive.len(),
        started.elapsed()
    );

    every_server_holds(&cluster, &saved, &["saved"], "the restored store");
    let (status, waited) = waiter.join().expect("waiter");
    assert_eq!(
        status, 404,
        "the blocking query answers from the restored store"
    );
    assert!(
        waited < Duration::from_secs(25),
        "woken by the restore, not by its wait: {waited:?}"
    );
    // The restored rows keep their indexes, as in Consul.
    assert_eq!(modify_index(&l, "app/a"), app_a_index);

    // Writes go on, above every index seen before the restore and above
    // the log entries the restore took.
    let applied_after_restore = raft_applied(&l);
    assert!(applied_after_restore > before_restore);
    assert_eq!(f.put("/v1/kv/after", "restore").expect(200).text(), "true");
    let after = modify_index(&l, "after");
    assert!(
        after > applied_after_restore && after > before_restore,
        "{after} after {applied_after_restore} / {before_restore}"
    );
    let mut want = saved.clone();
    want.insert("after".into(), b"restore".to_vec());
    every_server_holds(&cluster, &want, &["saved"], "the write after the restore");

    // SIGKILL every server; each comes back with the restored store.
    for server in &mut cluster.servers {
        server.kill();
    }
    for server in &mut cluster.servers {
        server.restart();
    }
    let leader = cluster.leader();
    every_server_holds(&cluster, &want, &["saved"], "the store after a restart");
    let l = &cluster.servers[leader].client;
    assert_eq!(l.put("/v1/kv/later", "yes").expect(200).text(), "true");
    assert!(modify_index(l, "later") > after);
}

/// The index `/v1/operator/raft/configuration` answers with: the
/// server's last applied log index.
fn raft_applied(client: &Client) -> u64 {
    client
        .get("/v1/operator/raft/configuration")
        .expect(200)
        .index()
}

fn cli(agent: &Client, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(&args[..2])
        .arg(format!("-http-addr={}", agent.addr()))
        .args(&args[2..])
        .output()
        .expect("run tribune")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tribune snapshot save|restore` through a client agent (which writes
/// the chunks to a server itself rather than forwarding the archive in one
/// RPC) and through a server; damaged archives are refused with a 500
/// naming the problem, and change nothing anywhere.
#[test]
fn snapshot_cli_restores_through_a_client_and_refuses_bad_archives() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let c = cluster.add_client();
    let client = cluster.clients[c].client.clone();
    let l = cluster.servers[leader].client.clone();
    wait_for(WAIT, "the client agent to reach a server", || {
        let resp = client
            .try_request("PUT", "/v1/kv/app/a", Some(b"1"), &[])
            .ok()?;
        (resp.status == 200).then_some(())
    });
    client.put("/v1/kv/app/b", "2").expect(200);

    let dir = std::env::temp_dir().join(format!(
        "tribune-cluster-restore-{}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("backup.snap");
    let path = file.to_str().expect("utf-8 path");
    let out = cli(&client, &["snapshot", "save", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved = stale_store(&l).expect("the leader's store");

    client.delete("/v1/kv/app/a").expect(200);
    client.put("/v1/kv/app/c", "3").expect(200);
    let out = cli(&client, &["snapshot", "restore", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Restored snapshot");
    every_server_holds(&cluster, &saved, &[], "the store restored through a client");
    assert_eq!(client.get("/v1/kv/app/a?raw").expect(200).text(), "1");
    assert_eq!(client.get("/v1/kv/app/c").status, 404);

    // Damaged archives, through the client agent and through a server.
    client.put("/v1/kv/app/d", "4").expect(200);
    let mut want = saved.clone();
    want.insert("app/d".into(), b"4".to_vec());
    every_server_holds(&cluster, &want, &[], "a write after the restore");
    let before = l.get("/v1/kv/?recurse").index();
    let good = std::fs::read(&file).expect("saved archive");
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("flipped", flipped, "checksum mismatch"),
        (
            "truncated",
            good[..good.len() - 3].to_vec(),
            "snapshot archive",
        ),
        (
            "garbage",
            b"GZIP not ours".to_vec(),
            "not a tribune snapshot",
        ),
    ];
    let follower = cluster.other_than(leader);
    for agent in [&client, &cluster.servers[follower].client] {
        for (name, bytes, problem) in &cases {
            let resp = agent.put("/v1/snapshot", bytes);
            assert_eq!(resp.status, 500, "{name}: {}", resp.text());
            assert!(
                resp.text().starts_with("failed to restore snapshot: ")
                    && resp.text().contains(problem),
                "{name}: {}",
                resp.text()
            );
        }
    }
    let bad = dir.join("bad.snap");
    std::fs::write(&bad, &cases[0].1).expect("write");
    let out = cli(&l, &["snapshot", "restore", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error restoring snapshot:")
            && text(&out.stderr).contains("checksum mismatch"),
        "{}",
        text(&out.stderr)
    );
    every_server_holds(&cluster, &want, &[], "the store after refused restores");
    assert_eq!(
        l.get("/v1/kv/?recurse").index(),
        before,
        "nothing was written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! `tribune snapshot save|restore|inspect` and `/v1/snapshot` against real
//! agents.

mod support;

use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::Agent;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn cli(agent: &Agent, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg(args[0])
        .arg(args[1])
        .arg(format!("-http-addr={}", agent.http_addr()))
        .args(&args[2..])
        .output()
        .expect("run tribune")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tribune-snapshot-{}-{name}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn save_inspect_and_restore_round_trip() {
    let agent = Agent::start();
    let dir = scratch("roundtrip");
    let file = dir.join("backup.snap");
    let path = file.to_str().expect("utf-8 path");
    agent.put("/v1/kv/app/a", "1").expect(200);
    agent.put("/v1/kv/app/b", "2").expect(200);
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web1", "Port": 80}),
        )
        .expect(200);

    let out = cli(&agent, &["snapshot", "save", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let index: u64 = text(&out.stdout)
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
        .and_then(|n| n.parse().ok())
        .expect("Consul's save line");
    assert!(index > 0);

    let out = cli(&agent, &["snapshot", "inspect", path]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        shown.contains(&format!(" Index        {index}\n")),
        "{shown}"
    );
    assert!(shown.contains(" KV keys      2\n"), "{shown}");
    assert!(shown.contains(" ID           1-"), "{shown}");

    // Change things, with a blocking query waiting on the changed key.
    agent.delete("/v1/kv/app/a").expect(200);
    agent.put("/v1/kv/app/c", "3").expect(200);
    let waiting_index = agent.get("/v1/kv/app/c").index();
    let client = agent.client();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let resp = client.get(&format!("/v1/kv/app/c?index={waiting_index}&wait=30s"));
        (resp.status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));

    let out = cli(&agent, &["snapshot", "restore", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Restored snapshot");
    assert_eq!(agent.get("/v1/kv/app/a?raw").expect(200).text(), "1");
    assert_eq!(agent.get("/v1/kv/app/c").status, 404, "later key gone");
    let (status, waited) = waiter.join().expect("waiter");
    assert_eq!(
        status, 404,
        "the blocking query answers from the restored store"
    );
    assert!(
        waited < Duration::from_secs(20),
        "woken by the restore: {waited:?}"
    );
    // Writes go on after a restore.
    agent.put("/v1/kv/app/d", "4").expect(200);
    assert_eq!(agent.get("/v1/kv/app/d?raw").expect(200).text(), "4");
}

#[test]
fn restoring_another_agents_snapshot_keeps_this_node_registered() {
    let a = Agent::start();
    let b = Agent::start();
    b.put("/v1/kv/from-b", "yes").expect(200);
    let archive = b.get("/v1/snapshot").expect(200);
    assert_eq!(
        archive.header("Content-Type"),
        Some("application/octet-stream")
    );
    a.put("/v1/snapshot", archive.body.clone()).expect(200);
    assert_eq!(a.get("/v1/kv/from-b?raw").expect(200).text(), "yes");
    // A's own node and serfHealth are re-registered at once.
    let node = a
        .get(&format!("/v1/catalog/node/{}", a.node))
        .expect(200)
        .json();
    assert_eq!(node["Node"]["Node"], a.node.as_str());
    let checks = a
        .get(&format!("/v1/health/node/{}", a.node))
        .expect(200)
        .json();
    assert!(checks
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["CheckID"] == "serfHealth"));
}

#[test]
fn bad_archives_are_refused_and_change_nothing() {
    let agent = Agent::start();
    agent.put("/v1/kv/keep", "me").expect(200);
    let dir = scratch("bad");
    let good = agent.get("/v1/snapshot").expect(200).body;
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    for (name, bytes) in [
        ("garbage", b"not a snapshot at all".to_vec()),
        ("flipped", flipped),
        ("truncated", good[..good.len() - 3].to_vec()),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, &bytes).expect("write");
        let path = file.to_str().expect("utf-8 path");
        let out = cli(&agent, &["snapshot", "restore", path]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            text(&out.stderr).contains("Error restoring snapshot:"),
            "{name}: {}",
            text(&out.stderr)
        );
        let out = cli(&agent, &["snapshot", "inspect", path]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(text(&out.stderr).contains("Error inspecting snapshot:"));
    }
    assert_eq!(agent.get("/v1/kv/keep?raw").expect(200).text(), "me");
    let out = cli(&agent, &["snapshot", "save"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Missing FILE argument"));
}

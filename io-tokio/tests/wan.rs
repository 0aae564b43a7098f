//! The WAN pool: servers of different datacenters (real `tribune agent
//! -server` processes on loopback) join it with `-retry-join-wan` or
//! `tribune join -wan`, list each other as `<node>.<dc>`, and
//! `/v1/catalog/datacenters` shows every datacenter.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster::{Cluster, Server};
use support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

/// Names and statuses of `server`'s WAN members, sorted.
fn wan_members(server: &Server) -> Vec<(String, u64)> {
    let Ok(resp) = server
        .client
        .try_request("GET", "/v1/agent/members?wan", None, &[])
    else {
        return Vec::new();
    };
    if resp.status != 200 {
        return Vec::new();
    }
    let mut members: Vec<(String, u64)> = resp
        .json()
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    let name = m["Name"].as_str().unwrap_or("").to_string();
                    (name, m["Status"].as_u64().unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    members
}

fn datacenters(server: &Server) -> Value {
    server
        .client
        .get("/v1/catalog/datacenters")
        .expect(200)
        .json()
}

#[test]
fn servers_of_three_datacenters_meet_in_the_wan_pool() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader();
    let s1_wan = cluster.servers[0].wan_port.expect("s1 has a WAN port");
    // dc2 joins at start-up with -retry-join-wan; dc3 later with
    // `tribune join -wan`. Neither joins dc1's LAN pool.
    let s2 = cluster.add_server_with(
        None,
        vec![
            "-datacenter=dc2".into(),
            "-bootstrap".into(),
            format!("-retry-join-wan=127.0.0.1:{s1_wan}"),
        ],
    );
    let s3 = cluster.add_server_with(None, vec!["-datacenter=dc3".into(), "-bootstrap".into()]);
    wait_for(WAIT, "s1.dc1 and s2.dc2 in the WAN pool", || {
        let want = vec![("s1.dc1".to_string(), 1), ("s2.dc2".to_string(), 1)];
        (wan_members(&cluster.servers[0]) == want && wan_members(&cluster.servers[s2]) == want)
            .then_some(())
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args([
            "join",
            "-wan",
            &format!("-http-addr=127.0.0.1:{}", cluster.servers[s3].client.port),
            &format!("127.0.0.1:{s1_wan}"),
        ])
        .output()
        .expect("run tribune join -wan");
    assert!(out.status.success(), "{out:?}");
    let all = vec![
        ("s1.dc1".to_string(), 1),
        ("s2.dc2".to_string(), 1),
        ("s3.dc3".to_string(), 1),
    ];
    wait_for(WAIT, "all three in every WAN member list", || {
        cluster
            .servers
            .iter()
            .all(|s| wan_members(s) == all)
            .then_some(())
    });
    // Each lists its own datacenter first.
    assert_eq!(
        datacenters(&cluster.servers[0]),
        serde_json::json!(["dc1", "dc2", "dc3"])
    );
    assert_eq!(
        datacenters(&cluster.servers[s3]),
        serde_json::json!(["dc3", "dc1", "dc2"])
    );
    // The LAN pools stay apart.
    let lan = cluster.servers[0]
        .client
        .get("/v1/agent/members")
        .expect(200)
        .json();
    let names: Vec<&str> = lan
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert_eq!(names, ["s1"]);
    // `tribune members -wan` prints the pool.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args([
            "members",
            "-wan",
            &format!("-http-addr=127.0.0.1:{}", cluster.servers[0].client.port),
        ])
        .output()
        .expect("run tribune members -wan");
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["s1.dc1", "s2.dc2", "s3.dc3"] {
        assert!(table.contains(name), "{table}");
    }
    // `?dc=` reaches another datacenter through the WAN pool: a write
    // through dc1's server lands in dc2 only.
    let s1 = cluster.servers[0].client.clone();
    let written = s1.put("/v1/kv/where?dc=dc2", "dc2");
    assert_eq!(written.status, 200, "{}", written.text());
    assert_eq!(
        cluster.servers[s2]
            .client
            .get("/v1/kv/where?raw")
            .expect(200)
            .text(),
        "dc2"
    );
    assert_eq!(s1.get("/v1/kv/where").status, 404);
    assert_eq!(s1.get("/v1/kv/where?dc=dc2&raw").expect(200).text(), "dc2");
    let nowhere = s1.get("/v1/kv/where?dc=dc9");
    assert_eq!(
        (nowhere.status, nowhere.text()),
        (500, "No path to datacenter".into())
    );

    // A client agent cannot join the WAN pool and lists no WAN members,
    // but reaches other datacenters through its server.
    let c = cluster.add_client();
    let client = cluster.clients[c].client.clone();
    let remote = wait_for(WAIT, "a dc2 read through a dc1 client", || {
        let resp = client
            .try_request("GET", "/v1/kv/where?dc=dc2&raw", None, &[])
            .ok()?;
        (resp.status == 200).then_some(resp)
    });
    assert_eq!(remote.text(), "dc2");
    let refused = wait_for(WAIT, "the client's answer", || {
        let resp = client
            .try_request("PUT", "/v1/agent/join/127.0.0.1?wan=1", None, &[])
            .ok()?;
        Some(resp)
    });
    assert_eq!(refused.status, 500);
    assert_eq!(refused.text(), "Must be a server to join WAN cluster");
    assert_eq!(
        client.get("/v1/agent/members?wan").expect(200).json(),
        serde_json::json!([])
    );
}

//! Client agents: real `tribune agent` processes (3 servers, 7 clients) on
//! loopback. Clients join the LAN pool, find the servers there and send
//! every cluster request to one; the leader turns gossip membership into
//! the catalog's `serfHealth` checks, so a SIGKILLed client is failed in
//! every member list, its services leave `?passing` and its session's lock
//! is released, and a client that leaves is deregistered.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::cluster::{Cluster, Server};
use support::{create_session, wait_for, Client};

const WAIT: Duration = Duration::from_secs(60);
const CLIENTS: usize = 7;

/// serf's member status numbers (`/v1/agent/members`).
const ALIVE: u64 = 1;
const LEFT: u64 = 3;
const FAILED: u64 = 4;

/// `name`'s status in `agent`'s member list.
fn status_seen_by(agent: &Server, name: &str) -> Option<u64> {
    let resp = agent
        .client
        .try_request("GET", "/v1/agent/members", None, &[])
        .ok()?;
    if resp.status != 200 {
        return None;
    }
    resp.json().as_array()?.iter().find(|m| m["Name"] == name)?["Status"].as_u64()
}

/// Waits until every running agent other than `name` sees it with `status`.
fn wait_everyone_sees(cluster: &Cluster, name: &str, status: u64, what: &str) {
    wait_for(WAIT, what, || {
        cluster
            .agents()
            .filter(|a| a.running() && a.name != name)
            .all(|a| status_seen_by(a, name) == Some(status))
            .then_some(())
    });
}

/// The `serfHealth` status of `node` in the catalog, as `client` reads it.
fn serf_health(client: &Client, node: &str) -> Option<String> {
    let resp = client.try_request("GET", &format!("/v1/health/node/{node}"), None, &[]);
    let checks = resp.ok().filter(|r| r.status == 200)?.json();
    checks
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .and_then(|c| c["Status"].as_str())
        .map(str::to_string)
}

fn passing_nodes(client: &Client, service: &str) -> Vec<String> {
    let list = client
        .get(&format!("/v1/health/service/{service}?passing"))
        .expect(200)
        .json();
    let mut nodes: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

/// `dig +short NAME QTYPE` at the agent's DNS port, sorted; `None` when dig is
/// not installed.
fn dig_short(port: u16, name: &str, qtype: &str) -> Option<Vec<String>> {
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=5",
            name,
            qtype,
        ])
        .output()
        .ok()?;
    assert!(out.status.success(), "dig: {out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    Some(lines)
}

#[test]
fn ten_agents_join_fail_and_leave() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    // The first client answers DNS (from a server's store).
    let dns_port = support::free_udp_tcp_port(&[]);
    cluster.add_client_with(vec![format!("-dns-port={dns_port}")]);
    for _ in 1..CLIENTS {
        cluster.add_client();
    }
    let names: Vec<String> = cluster.agents().map(|a| a.name.clone()).collect();
    assert_eq!(names.len(), 10);

    // Everyone lists everyone alive.
    wait_for(WAIT, "10 alive members in every member list", || {
        cluster
            .agents()
            .all(|a| names.iter().all(|n| status_seen_by(a, n) == Some(ALIVE)))
            .then_some(())
    });
    // The leader registered every node with a passing serfHealth.
    let s1 = cluster.servers[0].client.clone();
    wait_for(WAIT, "serfHealth passing for all 10 nodes", || {
        names
            .iter()
            .all(|n| serf_health(&s1, n).as_deref() == Some("passing"))
            .then_some(())
    });

    // A client's API reaches the cluster: KV through one client, read
    // through another, in every consistency mode.
    let (c1, c2, c3) = (
        cluster.clients[0].client.clone(),
        cluster.clients[1].client.clone(),
        cluster.clients[2].client.clone(),
    );
    assert_eq!(
        c1.put("/v1/kv/shared", "from-c1").expect(200).text(),
        "true"
    );
    for mode in ["", "&consistent", "&stale"] {
        let value = wait_for(WAIT, "the key through another client", || {
            let resp = c2.get(&format!("/v1/kv/shared?raw{mode}"));
            (resp.status == 200).then(|| resp.text())
        });
        assert_eq!(value, "from-c1", "mode {mode:?}");
    }
    let resp = c2.get("/v1/kv/shared");
    assert!(resp.index() > 0, "X-Consul-Index from the server");
    assert_eq!(resp.header("X-Consul-KnownLeader"), Some("true"));

    // Services registered on two clients are in the catalog (anti-entropy
    // through a server) and pass.
    for client in [&c1, &c2] {
        client
            .put_json(
                "/v1/agent/service/register",
                &json!({"Name": "web", "Port": 8080}),
            )
            .expect(200);
    }
    wait_for(WAIT, "web on c1 and c2, passing", || {
        (passing_nodes(&c3, "web") == ["c1", "c2"]).then_some(())
    });

    // A user event fired on a client reaches all ten agents.
    let fired = c3.put("/v1/event/fire/deploy", "v2").expect(200).json();
    let id = fired["ID"].as_str().expect("event ID").to_string();
    wait_for(WAIT, "the event on every agent", || {
        cluster
            .agents()
            .all(|a| {
                a.client
                    .try_request("GET", "/v1/event/list?name=deploy", None, &[])
                    .ok()
                    .filter(|r| r.status == 200)
                    .and_then(|r| r.json().as_array().cloned())
                    .is_some_and(|list| list.iter().any(|e| e["ID"] == id.as_str()))
            })
            .then_some(())
    });

    // DNS on a client agent answers from a server's catalog.
    if let Some(srv) = dig_short(dns_port, "web.service.consul", "SRV") {
        let targets: Vec<&str> = srv.iter().filter_map(|l| l.split(' ').nth(3)).collect();
        assert_eq!(
            targets,
            ["c1.node.dc1.consul.", "c2.node.dc1.consul."],
            "{srv:?}"
        );
        assert!(
            srv.iter().all(|l| l.split(' ').nth(2) == Some("8080")),
            "{srv:?}"
        );
    }

    // c1 holds a lock through a session bound to its serfHealth.
    let session = create_session(&c1, &json!({"Name": "job", "LockDelay": "0s"}));
    let acquired = c1
        .put(&format!("/v1/kv/locks/job?acquire={session}"), "c1")
        .expect(200);
    assert_eq!(acquired.text(), "true");

    // SIGKILL c1: failed everywhere, out of ?passing, lock released.
    cluster.clients[0].kill();
    wait_everyone_sees(&cluster, "c1", FAILED, "c1 failed in every member list");
    wait_for(WAIT, "c1's serfHealth critical", || {
        (serf_health(&c3, "c1").as_deref() == Some("critical")).then_some(())
    });
    wait_for(WAIT, "only c2's web passing", || {
        (passing_nodes(&c3, "web") == ["c2"]).then_some(())
    });
    let lock = wait_for(WAIT, "the lock released", || {
        let entry = c2.get("/v1/kv/locks/job").expect(200).json();
        let entry: Value = entry.as_array()?.first()?.clone();
        entry.get("Session").is_none().then_some(entry)
    });
    assert_eq!(lock["Key"], "locks/job");
    let info = c2.get(&format!("/v1/session/info/{session}")).expect(200);
    assert_eq!(info.json(), json!([]), "the session is gone");

    // `tribune force-leave` of the failed c1: left everywhere, and the
    // leader deregisters it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args([
            "force-leave",
            &format!("-http-addr=127.0.0.1:{}", c3.port),
            "c1",
        ])
        .output()
        .expect("run tribune force-leave");
    assert!(out.status.success(), "{out:?}");
    let unknown = c3.put("/v1/agent/force-leave/nobody", "");
    assert_eq!(unknown.status, 500);
    assert_eq!(unknown.text(), "agent: No node found with name 'nobody'");
    wait_everyone_sees(&cluster, "c1", LEFT, "c1 left in every member list");
    wait_for(WAIT, "c1 deregistered", || {
        let nodes = c3.get("/v1/catalog/nodes").expect(200).json();
        (!nodes.as_array()?.iter().any(|n| n["Node"] == "c1")).then_some(())
    });

    // c2 leaves gracefully: left everywhere and deregistered.
    let left = c2.put("/v1/agent/leave", "");
    assert_eq!(left.status, 200, "{}", left.text());
    wait_for(WAIT, "c2 exits after leaving", || {
        cluster.clients[1].exited().then_some(())
    });
    wait_everyone_sees(&cluster, "c2", LEFT, "c2 left in every member list");
    wait_for(WAIT, "c2 deregistered", || {
        let nodes = c3.get("/v1/catalog/nodes").expect(200).json();
        let listed = nodes.as_array()?.iter().any(|n| n["Node"] == "c2");
        (!listed).then_some(())
    });
    assert_eq!(passing_nodes(&c3, "web"), Vec::<String>::new());
}

#[test]
fn client_holds_requests_until_it_finds_a_server_and_retries_another() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let c = cluster.add_client();
    let client = cluster.clients[c].client.clone();
    // The client finds a server through the pool and writes through it.
    let written = wait_for(WAIT, "a write through the client", || {
        let resp = client
            .try_request("PUT", "/v1/kv/a", Some(b"1"), &[])
            .ok()?;
        (resp.status == 200).then_some(resp)
    });
    assert_eq!(written.text(), "true");
    // Whichever server it used, with two of three servers killed one after
    // the other (the cluster keeps quorum after the first), requests reach
    // a live server.
    let leader = cluster.leader();
    let follower = cluster.other_than(leader);
    cluster.servers[follower].kill();
    for i in 0..20 {
        let resp = client.put(&format!("/v1/kv/k{i}"), "v");
        assert_eq!(resp.status, 200, "write {i}: {}", resp.text());
    }
    assert_eq!(client.get("/v1/kv/k19?raw").expect(200).text(), "v");
    // Without quorum, a write ends with Consul's error after the hold.
    let leader = cluster.leader();
    let other = cluster.other_than(leader);
    cluster.servers[other].kill();
    let resp = client.put("/v1/kv/lost", "v");
    assert_eq!(resp.status, 500, "{}", resp.text());
    // A stale read is still served by the last server.
    let stale = client.get("/v1/kv/a?raw&stale");
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.text(), "1");
}

#[test]
fn a_server_joining_through_a_client_finds_the_servers_by_gossip() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let c = cluster.add_client();
    let client_lan = cluster.clients[c].lan_port;
    // A client serves no join exchange: the new server can only learn of
    // the servers from the pool it joined through the client.
    let s4 = cluster.add_server_joining(client_lan);
    let s4_rpc = cluster.servers[s4].rpc_addr();
    let client = cluster.clients[c].client.clone();
    wait_for(WAIT, "s4 a voter in the configuration", || {
        let config = client
            .try_request("GET", "/v1/operator/raft/configuration", None, &[])
            .ok()?;
        let config = (config.status == 200).then(|| config.json())?;
        config["Servers"]
            .as_array()?
            .iter()
            .any(|s| s["Address"] == s4_rpc.as_str() && s["Voter"] == true)
            .then_some(())
    });
    // It serves reads of what was written before it came.
    assert_eq!(client.put("/v1/kv/before", "x").expect(200).text(), "true");
    let s4_client = &cluster.servers[s4].client;
    let value = wait_for(WAIT, "the key on s4", || {
        let resp = s4_client.get("/v1/kv/before?raw&stale");
        (resp.status == 200).then(|| resp.text())
    });
    assert_eq!(value, "x");
}

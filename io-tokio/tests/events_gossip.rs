//! Consul user events across the serf LAN pool, between real `tribune
//! agent -server` processes: a fire on one server reaches every server
//! once, node and service/tag filters pick which agents record it, a
//! blocking `/v1/event/list` on another server wakes when the event
//! arrives, and the `tribune event` CLI fires through a server. With the
//! real `serf` binary: a serf agent in the pool receives the event as
//! `consul:event:<name>` with Consul's encoded payload, and an event a
//! serf agent fires in that form (bytes built as Go's codec writes them)
//! is recorded by tribune.

mod support;

use serde_json::Value;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::{Duration, Instant};
use support::cluster::Cluster;
use support::serf::{serf_binary, SerfAgent};
use support::{unb64, wait_for, Client};

/// Gossip reaches three loopback servers in well under a second; allow
/// for loaded CI machines.
const WAIT: Duration = Duration::from_secs(30);

/// `/v1/event/list?name=<name>` (all events for ""), or nothing while
/// the server does not answer.
fn events(client: &Client, name: &str) -> Option<Vec<Value>> {
    let path = match name {
        "" => "/v1/event/list".to_string(),
        name => format!("/v1/event/list?name={name}"),
    };
    let resp = client.try_request("GET", &path, None, &[]).ok()?;
    (resp.status == 200).then(|| resp.json().as_array().cloned().unwrap_or_default())
}

/// Waits until `client` lists event `id` under `name`; returns it.
#[track_caller]
fn wait_event(client: &Client, name: &str, id: &str) -> Value {
    wait_for(
        WAIT,
        &format!("event {name} ({id}) on port {}", client.port),
        || events(client, name)?.into_iter().find(|e| e["ID"] == id),
    )
}

/// How many events named `name` `client` lists.
fn count(client: &Client, name: &str) -> usize {
    events(client, name).expect("event list").len()
}

/// Fires `name` (with `query`, e.g. `?node=^s2$`) through `client`;
/// returns the reply, Consul's event JSON.
fn fire(client: &Client, name: &str, query: &str, payload: &[u8]) -> Value {
    let event = client
        .put(&format!("/v1/event/fire/{name}{query}"), payload)
        .expect(200)
        .json();
    assert_eq!(event["Name"], name, "{event}");
    assert_eq!(event["Version"], 1, "{event}");
    assert_eq!(event["LTime"], 0, "Consul sets LTime on receipt: {event}");
    assert_eq!(event["ID"].as_str().map(str::len), Some(36), "{event}");
    event
}

fn id(event: &Value) -> String {
    event["ID"].as_str().expect("ID").to_string()
}

/// Waits until every server lists every server alive in its pool, so a
/// broadcast reaches all of them.
fn wait_for_pool(cluster: &Cluster) {
    for server in &cluster.servers {
        wait_for(WAIT, "every server alive in the LAN pool", || {
            let resp = server
                .client
                .try_request("GET", "/v1/agent/members", None, &[])
                .ok()?;
            let alive = resp
                .json()
                .as_array()?
                .iter()
                .filter(|m| m["Status"] == 1)
                .count();
            (alive == cluster.servers.len()).then_some(())
        });
    }
}

/// Fires an unfiltered event from `from` and waits until every server has
/// it. Gossip carries events in the order they were fired, so once it is
/// everywhere an earlier filtered event has been judged everywhere too.
fn barrier(cluster: &Cluster, from: usize) {
    let event = fire(&cluster.servers[from].client, "barrier", "", b"");
    for server in &cluster.servers {
        wait_event(&server.client, "barrier", &id(&event));
    }
}

#[test]
fn events_reach_every_server_once_and_follow_filters() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    wait_for_pool(&cluster);
    let [s1, s2, s3] = [0, 1, 2].map(|i| cluster.servers[i].client.clone());

    // A blocking list on s3, in flight before the fire, wakes with it.
    let before = s3.get("/v1/event/list?name=deploy").expect(200);
    let index = before.header("X-Consul-Index").expect("index").to_string();
    assert_eq!(index, "1", "no events: index 1");
    let started = Instant::now();
    let blocked = {
        let s3 = s3.clone();
        std::thread::spawn(move || {
            let resp = s3.get(&format!(
                "/v1/event/list?name=deploy&index={index}&wait=25s"
            ));
            (resp, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let deploy = fire(&s1, "deploy", "", b"v1.2");
    assert_eq!(unb64(&deploy["Payload"]), b"v1.2");

    for client in [&s1, &s2, &s3] {
        let seen = wait_event(client, "deploy", &id(&deploy));
        assert_eq!(unb64(&seen["Payload"]), b"v1.2");
        assert_eq!(seen["Version"], 1);
        assert_eq!(seen["NodeFilter"], "");
    }
    let (resp, took) = blocked.join().expect("blocking list");
    let woke = resp.expect(200).json();
    assert_eq!(woke.as_array().map(Vec::len), Some(1), "{woke}");
    assert_eq!(woke[0]["ID"], deploy["ID"]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(20),
        "the list blocked until the event arrived, not until its wait ran out: {took:?}"
    );

    // A node filter: only s2 records it.
    let only_s2 = fire(&s1, "only-s2", "?node=%5Es2%24", b"");
    assert_eq!(only_s2["NodeFilter"], "^s2$");
    wait_event(&s2, "only-s2", &id(&only_s2));

    // Service and tag filters match a local service's ID and its tags.
    cluster.servers[2]
        .client
        .put_json(
            "/v1/agent/service/register",
            &serde_json::json!({"ID": "web-1", "Name": "web", "Tags": ["v1", "primary"]}),
        )
        .expect(200);
    let web_v1 = fire(&s2, "web-v1", "?service=%5Eweb-1%24&tag=%5Ev1%24", b"");
    let web_v2 = fire(&s2, "web-v2", "?service=web&tag=v2", b"");
    assert_eq!(
        [&web_v2["ServiceFilter"], &web_v2["TagFilter"]],
        ["web", "v2"]
    );
    wait_event(&s3, "web-v1", &id(&web_v1));

    barrier(&cluster, 0);
    for client in [&s1, &s3] {
        assert_eq!(count(client, "only-s2"), 0, "node filter ^s2$");
    }
    for client in [&s1, &s2] {
        assert_eq!(count(client, "web-v1"), 0, "no web-1 service here");
    }
    for client in [&s1, &s2, &s3] {
        assert_eq!(count(client, "web-v2"), 0, "no service has tag v2");
        // Each server recorded the broadcast once, the firing one included.
        assert_eq!(count(client, "deploy"), 1, "deploy recorded once");
    }

    // `tribune event` fires through the agent it talks to.
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["event", "-name=cli", "-http-addr"])
        .arg(s2.addr().to_string())
        .arg("from the cli")
        .output()
        .expect("run tribune event");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {:?}", out.stderr);
    let cli_id = stdout
        .trim()
        .strip_prefix("Event ID: ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    let seen = wait_event(&s1, "cli", &cli_id);
    assert_eq!(unb64(&seen["Payload"]), b"from the cli");
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["event", "-name=cli", "-node=(", "-http-addr"])
        .arg(s2.addr().to_string())
        .output()
        .expect("run tribune event");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("Failed to compile node filter regexp: error parsing regexp: "),
        "{stderr}"
    );

    // Refusals are Consul's, before anything is gossiped.
    let resp = s1.put("/v1/event/fire/bad?node=%28", "");
    assert_eq!(resp.status, 500);
    assert!(
        resp.text()
            .starts_with("Invalid node filter: error parsing regexp"),
        "{}",
        resp.text()
    );
    let resp = s1.put("/v1/event/fire/big", vec![b'x'; 480]);
    assert_eq!(resp.status, 500);
    assert_eq!(
        resp.text().trim(),
        "user event exceeds configured limit of 512 bytes before encoding"
    );
}

/// A Go `UserEvent{ID: id, Name: name, Payload: "hi", Version: 1}` as
/// Consul's `msgpackHandleUserEvent` (WriteExt) writes it, byte by byte.
fn go_encoded(id: &str, name: &str) -> Vec<u8> {
    let mut b = vec![0x84];
    b.extend(b"\xa2ID\xd9\x24");
    b.extend(id.as_bytes());
    b.extend(b"\xa1n");
    b.push(0xa0 | name.len() as u8);
    b.extend(name.as_bytes());
    b.extend(b"\xa1p\xc4\x02hi");
    b.extend(b"\xa1v\x01");
    b
}

#[test]
fn a_serf_agent_in_the_pool_sees_consul_events_and_can_fire_them() {
    let Some(bin) = serf_binary() else { return };
    let dir = std::env::temp_dir().join(format!(
        "tribune-events-serf-{}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    // serf runs handlers with `/bin/sh -c`, the payload on stdin.
    let handler = format!(
        "user=cat > '{}'/\"$SERF_USER_EVENT\".payload",
        dir.display()
    );
    let serf = SerfAgent::start_with(bin, "serfnode", &[&format!("-event-handler={handler}")]);
    let cluster = Cluster::start(1, &[&format!("-retry-join={}", serf.addr())]);
    cluster.leader();
    let tribune = cluster.servers[0].client.clone();
    let name = cluster.servers[0].name.clone();
    wait_for(WAIT, "serf to see the tribune server", || {
        serf.status_of(&name).filter(|(s, _)| s == "alive")
    });

    // tribune → serf: `consul:event:deploy`, Consul's struct inside.
    let deploy = fire(&tribune, "deploy", "?node=s", b"hello");
    let file = dir.join("consul:event:deploy.payload");
    let payload = wait_for(WAIT, "serf's handler to get consul:event:deploy", || {
        std::fs::read(&file).ok().filter(|p| !p.is_empty())
    });
    let event = tribune_core::event_wire::decode_user_event(&payload, 0)
        .unwrap_or_else(|e| panic!("{e}: {payload:x?}"));
    assert_eq!(event.id.to_string(), id(&deploy));
    assert_eq!(event.name, "deploy");
    assert_eq!(event.payload, b"hello");
    assert_eq!(event.node_filter, "s");
    assert_eq!(event.version, 1);

    // serf → tribune: a plain serf event is not Consul's; one named
    // `consul:event:*` with Consul's payload is recorded.
    let event_id = "1c3f0e05-0000-4000-8000-00000000beef";
    for (name, payload) in [
        ("not-consul".as_bytes(), b"x".to_vec()),
        (b"consul:event:fromserf", go_encoded(event_id, "fromserf")),
    ] {
        let out = Command::new(bin)
            .arg("event")
            .arg(format!("-rpc-addr=127.0.0.1:{}", serf.rpc_port))
            .arg("-coalesce=false")
            .arg(std::ffi::OsStr::from_bytes(name))
            .arg(std::ffi::OsStr::from_bytes(&payload))
            .output()
            .expect("run serf event");
        assert!(out.status.success(), "serf event: {out:?}");
    }
    let seen = wait_event(&tribune, "fromserf", event_id);
    assert_eq!(unb64(&seen["Payload"]), b"hi");
    let all = events(&tribune, "").expect("event list");
    let names: Vec<&str> = all.iter().filter_map(|e| e["Name"].as_str()).collect();
    assert_eq!(names, ["deploy", "fromserf"], "{all:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Gossip encryption and keyring management against the real `serf`
//! binary (Debian's `serf` package): tribune servers started with
//! `-encrypt` and serf agents started with `-encrypt` form one encrypted
//! pool and detect each other's failures; a different key (or none)
//! keeps them apart; keys are rotated across tribune servers and a serf
//! agent with `tribune keyring` and `serf keys` alike (the same
//! `_serf_*-key` queries), persisted in `serf/local.keyring`, and a
//! restarted server comes back with the rotated ring although its
//! `-encrypt` flag names the old key.
//!
//! Without a `serf` binary the serf tests print a notice and pass, unless
//! `CI` is set (see `support::serf`).

mod support;

use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;
use support::cluster::{Cluster, Server};
use support::serf::{
    assert_failures_detected, assert_mutually_alive, serf_binary, tribune_member, SerfAgent,
    JOIN_LIMIT,
};
use support::{wait_for, Agent};

/// `consul keygen`'s example key and another one (bytes 0..32).
const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const K2: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn encrypt(key: &str) -> String {
    format!("-encrypt={key}")
}

/// `tribune <args> -http-addr=<server>`.
fn tribune(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tribune"))
        .arg(args[0])
        .arg(format!("-http-addr=127.0.0.1:{}", server.client.port))
        .args(&args[1..])
        .output()
        .expect("run tribune")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The keys in a server's `serf/local.keyring`, primary first.
fn keyring_file(server: &Server) -> Vec<String> {
    let path = server.data_dir.join("serf").join("local.keyring");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("a JSON array of keys")
}

fn encrypted_stat(server: &Server) -> Value {
    server.client.get("/v1/agent/self").json()["Stats"]["serf_lan"]["encrypted"].clone()
}

#[test]
fn same_key_serf_and_tribune_form_one_pool_and_see_failures() {
    let Some(bin) = serf_binary() else { return };
    // The key comes from `tribune keygen`, as an operator would make it.
    let keygen = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .arg("keygen")
        .output()
        .expect("run tribune keygen");
    assert!(keygen.status.success(), "{keygen:?}");
    let key = stdout(&keygen).trim().to_string();
    assert_eq!(key.len(), 44, "base64 of 32 bytes: {key}");
    let mut cluster = Cluster::start(1, &[&encrypt(&key)]);
    cluster.leader();
    assert_eq!(encrypted_stat(&cluster.servers[0]), "true");
    assert!(cluster.servers[0]
        .log_contents()
        .contains("Gossip Encrypt: true"));
    assert_eq!(keyring_file(&cluster.servers[0]), vec![key.clone()]);
    let mut serf = SerfAgent::start_with(bin, "serfnode", &[&encrypt(&key)]);
    let out = serf.run(&[
        "join",
        &format!("127.0.0.1:{}", cluster.servers[0].lan_port),
    ]);
    assert!(out.status.success(), "serf join: {out:?}");
    assert_mutually_alive(&cluster, &serf);
    assert_failures_detected(&mut cluster, &mut serf, &[&encrypt(&key)]);
}

#[test]
fn another_key_or_none_keeps_serf_out() {
    let Some(bin) = serf_binary() else { return };
    let cluster = Cluster::start(1, &[&encrypt(K1)]);
    cluster.leader();
    let server = &cluster.servers[0];
    let lan = format!("127.0.0.1:{}", server.lan_port);
    let wrong = SerfAgent::start_with(bin, "wrongkey", &[&encrypt(K2)]);
    let out = wrong.run(&["join", &lan]);
    assert!(
        !out.status.success(),
        "a join with another key fails: {out:?}"
    );
    let plain = SerfAgent::start(bin, "plain");
    let out = plain.run(&["join", &lan]);
    assert!(!out.status.success(), "a plaintext join fails: {out:?}");
    // Nor can tribune join them.
    let resp = server
        .client
        .put(&format!("/v1/agent/join/{}", wrong.addr()), "");
    assert_eq!(resp.status, 500, "{}", resp.text());
    std::thread::sleep(Duration::from_secs(3));
    for name in ["wrongkey", "plain"] {
        assert!(tribune_member(&server.client, name).is_none(), "{name}");
    }
    assert_eq!(wrong.status_of(&server.name), None);
    assert_eq!(plain.status_of(&server.name), None);
    // The refused streams were counted and logged, not fatal.
    let log = server.log_contents();
    assert!(
        log.contains("no installed keys could decrypt the message")
            || log.contains("encryption is configured but remote state is not encrypted"),
        "{log}"
    );
    assert_eq!(encrypted_stat(server), "true");
}

/// Waits until the cluster's keyring list (GET /v1/operator/keyring) is
/// `keys` and `primary` on every one of `n` members.
fn wait_for_keys(server: &Server, keys: &[&str], primary: &str, n: u64) -> Value {
    wait_for(JOIN_LIMIT, "the keyring list", || {
        let resp = server
            .client
            .try_request("GET", "/v1/operator/keyring", None, &[])
            .ok()?;
        if resp.status != 200 {
            return None;
        }
        let list = resp.json();
        let pool = &list[0];
        let want: serde_json::Map<String, Value> =
            keys.iter().map(|k| (k.to_string(), n.into())).collect();
        (pool["Keys"] == Value::Object(want)
            && pool["PrimaryKeys"] == serde_json::json!({ primary: n })
            && pool["NumNodes"] == n)
            .then_some(list)
    })
}

#[test]
fn keys_rotate_across_tribune_servers_and_a_serf_agent() {
    let Some(bin) = serf_binary() else { return };
    let mut cluster = Cluster::start(2, &[&encrypt(K1)]);
    cluster.leader();
    let serf = SerfAgent::start_with(bin, "serfnode", &[&encrypt(K1)]);
    let out = serf.run(&[
        "join",
        &format!("127.0.0.1:{}", cluster.servers[0].lan_port),
    ]);
    assert!(out.status.success(), "serf join: {out:?}");
    for server in &cluster.servers {
        wait_for(JOIN_LIMIT, "serf to see every server alive", || {
            serf.status_of(&server.name).filter(|(s, _)| s == "alive")
        });
    }
    let s1 = &cluster.servers[0];
    let list = wait_for_keys(s1, &[K1], K1, 3);
    assert_eq!(list[0]["WAN"], false);
    assert_eq!(list[0]["Datacenter"], "dc1");
    assert_eq!(list[0]["Segment"], "");

    let out = tribune(s1, &["keyring", "-list"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("==> Gathering installed encryption keys...\n\ndc1 (LAN):\n  {K1} [3/3]\n")
    );

    // Install from tribune; the serf agent lists it too.
    let out = tribune(s1, &["keyring", "-install", K2]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "==> Installing new gossip encryption key...\n"
    );
    let out = serf.run(&["keys", "-list"]);
    assert!(out.status.success(), "{out:?}");
    for key in [K1, K2] {
        assert!(stdout(&out).contains(&format!("{key}  [3/3]")), "{out:?}");
    }

    // Switch the primary from the other server.
    let s2 = &cluster.servers[1];
    let out = tribune(s2, &["keyring", "-use", K2]);
    assert!(out.status.success(), "{out:?}");
    let out = tribune(s1, &["keyring", "-list-primary"]);
    assert_eq!(
        stdout(&out),
        format!("==> Gathering installed primary encryption keys...\n\ndc1 (LAN):\n  {K2} [3/3]\n")
    );

    // The primary cannot go.
    let out = tribune(s1, &["keyring", "-remove", K2]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.starts_with("error: Unexpected response code: 500 (4 errors occurred:"),
        "{err}"
    );
    assert!(
        err.contains("dc1 (LAN) error: 3/3 nodes reported failure"),
        "{err}"
    );
    assert!(
        err.contains("serfnode: Removing the primary key is not allowed"),
        "{err}"
    );
    assert!(
        err.contains("s2: Removing the primary key is not allowed"),
        "{err}"
    );

    // serf retires the old key; tribune's servers answer its query.
    let out = serf.run(&["keys", "-remove", K1]);
    assert!(out.status.success(), "serf keys -remove: {out:?}");
    wait_for_keys(s1, &[K2], K2, 3);
    for server in &cluster.servers {
        assert_eq!(keyring_file(server), [K2]);
    }

    // The pool still talks, now under K2 only: a new member with only K2
    // joins, and one with only K1 cannot.
    let late = SerfAgent::start_with(bin, "late", &[&encrypt(K2)]);
    assert!(late.run(&["join", &s2_lan(&cluster)]).status.success());
    let stale = SerfAgent::start_with(bin, "stale", &[&encrypt(K1)]);
    assert!(!stale.run(&["join", &s2_lan(&cluster)]).status.success());

    // A restarted server still has `-encrypt=K1` in its flags, but its
    // keyring file wins: it comes back with K2 and rejoins.
    cluster.servers[1].kill();
    let name = cluster.servers[1].name.clone();
    wait_for(
        Duration::from_secs(40),
        "serf to see the server fail",
        || serf.status_of(&name).filter(|(s, _)| s == "failed"),
    );
    cluster.servers[1].restart();
    wait_for(
        Duration::from_secs(40),
        "the restarted server to rejoin",
        || serf.status_of(&name).filter(|(s, _)| s == "alive"),
    );
    assert!(cluster.servers[1]
        .log_contents()
        .contains("LAN keyring exists but -encrypt given"));
    assert_eq!(keyring_file(&cluster.servers[1]), [K2]);
    wait_for_keys(&cluster.servers[1], &[K2], K2, 4);
}

fn s2_lan(cluster: &Cluster) -> String {
    format!("127.0.0.1:{}", cluster.servers[1].lan_port)
}

#[test]
fn keyring_api_refuses_bad_requests_clearly() {
    let agent = Agent::start();
    let resp = agent.request("POST", "/v1/operator/keyring", Some(b"{\"Key\":\"AAAA\"}"));
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        "Invalid key: key size must be 16, 24 or 32 bytes"
    );
    let resp = agent.request("PUT", "/v1/operator/keyring", Some(b"not json"));
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Request decode failed: "),
        "{}",
        resp.text()
    );
    let resp = agent.request("DELETE", "/v1/operator/keyring", None);
    assert_eq!((resp.status, resp.text().as_str()), (400, "Missing Key"));
    let resp = agent.get("/v1/operator/keyring?relay-factor=6");
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        "Error parsing relay factor: Relay factor must be in range: [0, 5]"
    );
    let resp = agent.request(
        "POST",
        "/v1/operator/keyring?local-only=true",
        Some(format!("{{\"Key\":\"{K1}\"}}").as_bytes()),
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    // A -dev agent runs no gossip pool, so there is no keyring to list.
    let resp = agent.get("/v1/operator/keyring");
    assert_eq!(resp.status, 500);
    assert!(resp.text().contains("no gossip pool"), "{}", resp.text());
    let resp = agent.request("PATCH", "/v1/operator/keyring", None);
    assert_eq!(resp.status, 405);
}

/// Client agents take the key too: one with it joins the servers' pool
/// and reaches the cluster, one without it (or with another) stays out;
/// servers' WAN pools are encrypted with the same key.
#[test]
fn client_agents_and_the_wan_pool_use_the_key() {
    let mut cluster = Cluster::start(1, &[&encrypt(K1)]);
    cluster.leader();
    let good = cluster.add_client_with(vec![encrypt(K1)]);
    let plain = cluster.add_client();
    let wrong = cluster.add_client_with(vec![encrypt(K2)]);
    let server = &cluster.servers[0];
    wait_for(JOIN_LIMIT, "the keyed client alive on the server", || {
        tribune_member(&server.client, "c1").filter(|m| m["Status"] == 1)
    });
    let client = cluster.clients[good].client.clone();
    let written = wait_for(JOIN_LIMIT, "a write through the keyed client", || {
        let resp = client
            .try_request("PUT", "/v1/kv/k", Some(b"v"), &[])
            .ok()?;
        (resp.status == 200).then_some(resp)
    });
    assert_eq!(written.text(), "true");
    let keyring = cluster.clients[good]
        .data_dir
        .join("serf")
        .join("local.keyring");
    assert!(keyring.exists(), "{}", keyring.display());
    // The others never get in: give them the time a join takes.
    std::thread::sleep(Duration::from_secs(3));
    for (i, name) in [(plain, "c2"), (wrong, "c3")] {
        assert!(
            tribune_member(&server.client, name).is_none(),
            "{name} joined"
        );
        let members = cluster.clients[i].client.get("/v1/agent/members").json();
        assert_eq!(
            members.as_array().map(Vec::len),
            Some(1),
            "{name}: {members}"
        );
    }
    // The WAN pool has its own keyring file, from the same key.
    let remote = server.data_dir.join("serf").join("remote.keyring");
    let text = std::fs::read_to_string(&remote).expect("remote.keyring");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&text).expect("keys"),
        [K1]
    );
}

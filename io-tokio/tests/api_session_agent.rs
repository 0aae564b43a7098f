//! `/v1/agent/*` and `/v1/session/*` (including TTL check expiry, session
//! TTL expiry, lock-delay and check-bound invalidation), against the real
//! binary over real sockets.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{create_session, kv_entry, string, uint, unb64, wait_for, Agent, Client};

#[test]
fn agent_self_and_members() {
    let agent = Agent::start();
    let me = agent.get("/v1/agent/self").expect(200).json();
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["NodeName"], agent.node.as_str());
    string(&me["Config"], "NodeID");
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["Member"]["Name"], agent.node.as_str());

    let members = agent.get("/v1/agent/members").expect(200).json();
    let members = members.as_array().expect("members array");
    assert_eq!(members.len(), 1);
    let m = &members[0];
    assert_eq!(m["Name"], agent.node.as_str());
    string(m, "Addr");
    uint(m, "Port");
    assert_eq!(m["Status"], 1, "alive");
    assert_eq!(m["Tags"]["dc"], "dc1");
    assert_eq!(m["Tags"]["role"], "consul");
    for field in [
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
        "DelegateCur",
    ] {
        uint(m, field);
    }
}

fn catalog_service_nodes(agent: &Agent, name: &str) -> Vec<String> {
    agent
        .get(&format!("/v1/catalog/service/{name}"))
        .expect(200)
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| string(r, "Node").to_string())
        .collect()
}

#[test]
fn agent_service_register_and_deregister() {
    let agent = Agent::start();
    let resp = agent
        .put_json(
            "/v1/agent/service/register",
            &json!({
                "Name": "web",
                "ID": "web-1",
                "Tags": ["a", "b"],
                "Port": 8080,
                "Meta": {"Version": "1"}
            }),
        )
        .expect(200);
    assert!(resp.body.is_empty(), "empty 200: {:?}", resp.text());
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({
                "name": "api",
                "id": "api-1",
                "tags": ["x"],
                "port": 9090,
                "enable_tag_override": true,
                "weights": {"passing": 3, "warning": 2}
            }),
        )
        .expect(200);

    let services = agent.get("/v1/agent/services").expect(200).json();
    let services = services.as_object().expect("services map");
    assert_eq!(services.len(), 2, "{services:?}");
    let web = &services["web-1"];
    assert_eq!(web["ID"], "web-1");
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Tags"], json!(["a", "b"]));
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Meta"], json!({"Version": "1"}), "Meta keys keep case");
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web["EnableTagOverride"], false);
    assert_eq!(web["Datacenter"], "dc1");
    let api = &services["api-1"];
    assert_eq!(api["Service"], "api");
    assert_eq!(api["Port"], 9090);
    assert_eq!(api["Tags"], json!(["x"]));
    assert_eq!(api["EnableTagOverride"], true);
    assert_eq!(api["Weights"], json!({"Passing": 3, "Warning": 2}));

    // The agent's services reach the catalog on its node.
    let node = agent.node.clone();
    wait_for(Duration::from_secs(5), "web in the catalog", || {
        (catalog_service_nodes(&agent, "web") == [node.as_str()]).then_some(())
    });
    assert_eq!(catalog_service_nodes(&agent, "api"), [node.as_str()]);
    let row = &agent.get("/v1/catalog/service/web").expect(200).json()[0];
    assert_eq!(row["ServiceID"], "web-1");
    assert_eq!(row["ServicePort"], 8080);
    let catalog = agent.get("/v1/catalog/services").expect(200).json();
    assert_eq!(catalog["web"], json!(["a", "b"]));

    // Re-registering replaces.
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web-1", "Port": 8081}),
        )
        .expect(200);
    let services = agent.get("/v1/agent/services").expect(200).json();
    assert_eq!(services["web-1"]["Port"], 8081);
    assert_eq!(services["web-1"]["Tags"], json!([]));

    let resp = agent
        .put("/v1/agent/service/deregister/web-1", "")
        .expect(200);
    assert!(resp.body.is_empty());
    let services = agent.get("/v1/agent/services").expect(200).json();
    assert!(services.get("web-1").is_none(), "{services}");
    wait_for(Duration::from_secs(5), "web gone from the catalog", || {
        catalog_service_nodes(&agent, "web")
            .is_empty()
            .then_some(())
    });
    assert_eq!(catalog_service_nodes(&agent, "api"), [node.as_str()]);

    agent
        .put("/v1/agent/service/deregister/never-registered", "")
        .expect(404);
    // Name is required.
    agent
        .put_json("/v1/agent/service/register", &json!({"Port": 1}))
        .expect(400);
}

fn agent_check(agent: &Agent, id: &str) -> Value {
    let checks = agent.get("/v1/agent/checks").expect(200).json();
    checks
        .get(id)
        .unwrap_or_else(|| panic!("check {id} in /v1/agent/checks: {checks}"))
        .clone()
}

fn catalog_check(agent: &Agent, id: &str) -> Option<Value> {
    agent
        .get(&format!("/v1/health/node/{}", agent.node))
        .expect(200)
        .json()
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["CheckID"] == id)
        .cloned()
}

#[test]
fn agent_check_register_update_deregister() {
    let agent = Agent::start();
    let resp = agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "Memory", "ID": "mem", "TTL": "30s", "Notes": "free memory"}),
        )
        .expect(200);
    assert!(resp.body.is_empty());
    let check = agent_check(&agent, "mem");
    assert_eq!(check["CheckID"], "mem");
    assert_eq!(check["Name"], "Memory");
    assert_eq!(check["Status"], "critical", "new checks start critical");
    assert_eq!(check["Notes"], "free memory");
    assert_eq!(check["Type"], "ttl");
    assert_eq!(check["Node"], agent.node.as_str());

    let steps: [(&str, &str, &str); 3] = [
        (
            "/v1/agent/check/pass/mem?note=all+fine",
            "passing",
            "all fine",
        ),
        ("/v1/agent/check/warn/mem?note=low", "warning", "low"),
        ("/v1/agent/check/fail/mem?note=gone", "critical", "gone"),
    ];
    for (path, status, output) in steps {
        let resp = agent.put(path, "").expect(200);
        assert!(resp.body.is_empty());
        let check = agent_check(&agent, "mem");
        assert_eq!(check["Status"], status, "{path}");
        assert_eq!(check["Output"], output, "{path}");
        // The catalog follows the agent.
        let synced = wait_for(Duration::from_secs(5), "check synced", || {
            catalog_check(&agent, "mem").filter(|c| c["Status"] == status)
        });
        assert_eq!(synced["Output"], output);
    }

    agent
        .put_json(
            "/v1/agent/check/update/mem",
            &json!({"Status": "passing", "Output": "updated output"}),
        )
        .expect(200);
    let check = agent_check(&agent, "mem");
    assert_eq!(check["Status"], "passing");
    assert_eq!(check["Output"], "updated output");
    agent
        .put_json("/v1/agent/check/update/mem", &json!({"Status": "sideways"}))
        .expect(400);

    agent.put("/v1/agent/check/pass/nope", "").expect(404);

    agent.put("/v1/agent/check/deregister/mem", "").expect(200);
    let checks = agent.get("/v1/agent/checks").expect(200).json();
    assert!(checks.get("mem").is_none(), "{checks}");
    wait_for(Duration::from_secs(5), "check gone from catalog", || {
        catalog_check(&agent, "mem").is_none().then_some(())
    });
    // serfHealth is untouched.
    assert!(catalog_check(&agent, "serfHealth").is_some());
}

fn passing_ids(agent: &Agent, service: &str) -> Vec<String> {
    agent
        .get(&format!("/v1/health/service/{service}?passing"))
        .expect(200)
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| string(&r["Service"], "ID").to_string())
        .collect()
}

#[test]
fn agent_ttl_check_expires() {
    let agent = Agent::start();
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "x", "Port": 1234, "Check": {"TTL": "1s"}}),
        )
        .expect(200);
    let check = agent_check(&agent, "service:x");
    assert_eq!(check["ServiceID"], "x");
    assert_eq!(check["Status"], "critical");
    assert!(passing_ids(&agent, "x").is_empty());

    agent.put("/v1/agent/check/pass/service:x", "").expect(200);
    let passed_at = Instant::now();
    assert_eq!(passing_ids(&agent, "x"), ["x"]);
    let check = agent
        .get("/v1/health/checks/x")
        .expect(200)
        .json()
        .as_array()
        .expect("array")[0]
        .clone();
    assert_eq!(check["Status"], "passing");
    assert!(
        passed_at.elapsed() < Duration::from_millis(900),
        "checked while the TTL is still running"
    );

    std::thread::sleep(Duration::from_millis(2500));
    let check = agent
        .get("/v1/health/checks/x")
        .expect(200)
        .json()
        .as_array()
        .expect("array")[0]
        .clone();
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["Output"], "TTL expired");
    assert_eq!(agent_check(&agent, "service:x")["Output"], "TTL expired");
    assert!(passing_ids(&agent, "x").is_empty());
    let all = agent.get("/v1/health/service/x").expect(200).json();
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(1),
        "still listed without ?passing"
    );
}

// ------------------------------------------------------------- sessions

fn session_info(client: &Client, id: &str) -> Option<Value> {
    let resp = client.get(&format!("/v1/session/info/{id}")).expect(200);
    resp.index();
    let rows = resp.json();
    let rows = rows.as_array().expect("session info is an array");
    assert!(rows.len() <= 1);
    rows.first().cloned()
}

#[test]
fn session_create_defaults_info_list_renew_destroy() {
    let agent = Agent::start();
    let id = create_session(&agent, &json!({}));
    let s = session_info(&agent, &id).expect("session exists");
    assert_eq!(s["ID"], id.as_str());
    assert_eq!(s["Name"], "");
    assert_eq!(s["Node"], agent.node.as_str());
    assert_eq!(s["LockDelay"], 15_000_000_000u64);
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(s["TTL"], "");
    assert!(uint(&s, "CreateIndex") > 0);
    assert_eq!(s["ModifyIndex"], s["CreateIndex"]);

    // An empty body means the same defaults.
    let plain = agent.put("/v1/session/create", "").expect(200).json();
    let plain = string(&plain, "ID").to_string();
    assert_eq!(
        session_info(&agent, &plain).expect("exists")["LockDelay"],
        15_000_000_000u64
    );

    let custom = create_session(
        &agent,
        &json!({"Name": "worker", "TTL": "10s", "Behavior": "delete", "LockDelay": "1s"}),
    );
    let s = session_info(&agent, &custom).expect("exists");
    assert_eq!(s["Name"], "worker");
    assert_eq!(s["TTL"], "10s");
    assert_eq!(s["Behavior"], "delete");
    assert_eq!(s["LockDelay"], 1_000_000_000u64);

    let resp = agent.get("/v1/session/list").expect(200);
    resp.index();
    let listed: Vec<String> = resp
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| string(s, "ID").to_string())
        .collect();
    for want in [&id, &plain, &custom] {
        assert!(listed.contains(want), "{want} in {listed:?}");
    }
    let resp = agent
        .get(&format!("/v1/session/node/{}", agent.node))
        .expect(200);
    resp.index();
    assert_eq!(resp.json().as_array().map(Vec::len), Some(3));
    assert_eq!(
        agent.get("/v1/session/node/other-node").expect(200).json(),
        json!([])
    );

    let renewed = agent
        .put(&format!("/v1/session/renew/{custom}"), "")
        .expect(200)
        .json();
    assert_eq!(renewed[0]["ID"], custom.as_str());
    assert_eq!(renewed[0]["TTL"], "10s");
    agent
        .put("/v1/session/renew/6f2f5a1e-0000-4000-8000-000000000000", "")
        .expect(404);

    let resp = agent
        .put(&format!("/v1/session/destroy/{custom}"), "")
        .expect(200);
    assert_eq!(resp.text(), "true");
    assert!(session_info(&agent, &custom).is_none());
    // Destroy is idempotent.
    agent
        .put(&format!("/v1/session/destroy/{custom}"), "")
        .expect(200);
    let listed = agent.get("/v1/session/list").expect(200).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // TTL outside [10s, 86400s] and unknown behaviors are refused.
    agent
        .put_json("/v1/session/create", &json!({"TTL": "5s"}))
        .expect(400);
    agent
        .put_json("/v1/session/create", &json!({"Behavior": "explode"}))
        .expect(400);
}

#[test]
fn session_ttl_expiry_release_and_delete() {
    let agent = Agent::start();
    let release = create_session(
        &agent,
        &json!({"Name": "rel", "TTL": "10s", "Behavior": "release", "LockDelay": "0s"}),
    );
    let delete = create_session(
        &agent,
        &json!({"Name": "del", "TTL": "10s", "Behavior": "delete", "LockDelay": "0s"}),
    );
    let kept = create_session(&agent, &json!({"Name": "kept", "TTL": "10s"}));
    let created = Instant::now();
    for (key, session) in [
        ("eph/rel", &release),
        ("eph/del", &delete),
        ("eph/kept", &kept),
    ] {
        let resp = agent
            .put(&format!("/v1/kv/{key}?acquire={session}"), "held")
            .expect(200);
        assert_eq!(resp.text(), "true");
    }

    // Poll until both unrenewed sessions are gone, renewing `kept` as a
    // client should (every few seconds, well inside its TTL).
    let mut last_renew = Instant::now();
    wait_for(Duration::from_secs(30), "session TTL expiry", || {
        if last_renew.elapsed() >= Duration::from_secs(3) {
            agent
                .put(&format!("/v1/session/renew/{kept}"), "")
                .expect(200);
            last_renew = Instant::now();
        }
        let gone =
            session_info(&agent, &release).is_none() && session_info(&agent, &delete).is_none();
        gone.then_some(())
    });
    let expired_after = created.elapsed();
    assert!(
        expired_after >= Duration::from_millis(9500),
        "TTL is a lower bound, but sessions expired after {expired_after:?}"
    );

    let entry = kv_entry(&agent, "eph/rel");
    assert!(entry.get("Session").is_none(), "released: {entry}");
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(unb64(&entry["Value"]), b"held");
    agent.get("/v1/kv/eph/del").expect(404);

    // The renewed session and its lock survive.
    assert!(
        session_info(&agent, &kept).is_some(),
        "renewed session lives"
    );
    assert_eq!(kv_entry(&agent, "eph/kept")["Session"], kept.as_str());
}

#[test]
fn session_lock_delay_after_invalidation() {
    let agent = Agent::start();
    let a = create_session(&agent, &json!({"LockDelay": "1s"}));
    let b = create_session(&agent, &json!({}));
    agent
        .put(&format!("/v1/kv/ld?acquire={a}"), "a")
        .expect(200);
    agent
        .put(&format!("/v1/session/destroy/{a}"), "")
        .expect(200);
    let destroyed = Instant::now();
    assert!(kv_entry(&agent, "ld").get("Session").is_none());

    let resp = agent
        .put(&format!("/v1/kv/ld?acquire={b}"), "b")
        .expect(200);
    assert!(
        destroyed.elapsed() < Duration::from_millis(900),
        "the refused attempt must fall inside the delay"
    );
    assert_eq!(resp.text(), "false", "lock-delay refuses re-acquisition");
    assert_eq!(unb64(&kv_entry(&agent, "ld")["Value"]), b"a");

    std::thread::sleep(Duration::from_millis(1100).saturating_sub(destroyed.elapsed()));
    let resp = agent
        .put(&format!("/v1/kv/ld?acquire={b}"), "b")
        .expect(200);
    assert_eq!(resp.text(), "true", "lock-delay over after ~1.1 s");
    let entry = kv_entry(&agent, "ld");
    assert_eq!(entry["Session"], b.as_str());
    assert_eq!(entry["LockIndex"], 2);
}

#[test]
fn session_invalidated_when_its_check_goes_critical() {
    let agent = Agent::start();
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "guard", "ID": "guard", "TTL": "60s"}),
        )
        .expect(200);
    // A session cannot be bound to a critical check...
    let resp = agent
        .put_json(
            "/v1/session/create",
            &json!({"NodeChecks": ["serfHealth", "guard"]}),
        )
        .expect(500);
    assert!(resp.text().contains("guard"), "{:?}", resp.text());
    // ...nor to an unknown one.
    agent
        .put_json(
            "/v1/session/create",
            &json!({"NodeChecks": ["no-such-check"]}),
        )
        .expect(500);

    agent.put("/v1/agent/check/pass/guard", "").expect(200);
    wait_for(Duration::from_secs(5), "guard passing in catalog", || {
        catalog_check(&agent, "guard").filter(|c| c["Status"] == "passing")
    });
    let id = create_session(
        &agent,
        &json!({"NodeChecks": ["serfHealth", "guard"], "LockDelay": "0s"}),
    );
    assert_eq!(
        session_info(&agent, &id).expect("exists")["NodeChecks"],
        json!(["serfHealth", "guard"])
    );
    agent
        .put(&format!("/v1/kv/guarded?acquire={id}"), "v")
        .expect(200);
    assert_eq!(kv_entry(&agent, "guarded")["Session"], id.as_str());

    agent.put("/v1/agent/check/fail/guard", "").expect(200);
    wait_for(Duration::from_secs(5), "session invalidated", || {
        session_info(&agent, &id).is_none().then_some(())
    });
    let entry = kv_entry(&agent, "guarded");
    assert!(entry.get("Session").is_none(), "lock released: {entry}");
    assert_eq!(unb64(&entry["Value"]), b"v");
}

/// `/v1/agent/services` and `/v1/agent/checks` block on `?hash=` (Consul's
/// hash-based blocking): same hash waits, a change answers early with a new
/// `X-Consul-ContentHash`, a stale hash answers at once.
#[test]
fn agent_endpoints_block_on_content_hash() {
    let agent = Agent::start();
    let client = agent.client();
    for path in ["/v1/agent/services", "/v1/agent/checks"] {
        let first = agent.get(path).expect(200);
        let hash = first
            .header("X-Consul-ContentHash")
            .expect("content hash")
            .to_string();
        assert!(!hash.is_empty());

        let quiet = Instant::now();
        let same = agent
            .get(&format!("{path}?hash={hash}&wait=1s"))
            .expect(200);
        assert!(
            quiet.elapsed() >= Duration::from_millis(900),
            "{path} waited"
        );
        assert_eq!(same.header("X-Consul-ContentHash"), Some(hash.as_str()));

        let stale = Instant::now();
        agent.get(&format!("{path}?hash=0000&wait=5s")).expect(200);
        assert!(
            stale.elapsed() < Duration::from_secs(2),
            "{path}: stale hash answers at once"
        );

        let id = format!("hashsvc-{}", path.len());
        let writer = {
            let client = client.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let body = json!({"Name": id, "Check": {"TTL": "30s"}});
                client
                    .put_json("/v1/agent/service/register", &body)
                    .expect(200);
            })
        };
        let woke = Instant::now();
        let changed = agent
            .get(&format!("{path}?hash={hash}&wait=10s"))
            .expect(200);
        writer.join().expect("writer thread");
        assert!(
            woke.elapsed() < Duration::from_secs(5),
            "{path} woke on the change"
        );
        assert_ne!(changed.header("X-Consul-ContentHash"), Some(hash.as_str()));
        assert!(
            changed.text().contains(&id),
            "{path} shows the new registration"
        );
    }
}

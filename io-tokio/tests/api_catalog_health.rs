//! `/v1/catalog/*`, `/v1/health/*`, `/v1/status/*` and blocking on them,
//! against the real binary over real sockets.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{string, uint, Agent};

fn register(agent: &Agent, body: &Value) {
    let resp = agent.put_json("/v1/catalog/register", body).expect(200);
    assert_eq!(resp.text(), "true");
}

fn deregister(agent: &Agent, body: &Value) {
    let resp = agent.put_json("/v1/catalog/deregister", body).expect(200);
    assert_eq!(resp.text(), "true");
}

/// Two external nodes: web1 (v1, primary; check passing) on n1, web2 (v2,
/// primary; check critical) and db on n2.
fn register_fixture(agent: &Agent) {
    register(
        agent,
        &json!({
            "Node": "n1",
            "Address": "10.0.0.1",
            "NodeMeta": {"rack": "r1"},
            "Service": {
                "ID": "web1",
                "Service": "web",
                "Tags": ["v1", "primary"],
                "Port": 8080,
                "Meta": {"version": "1"}
            },
            "Check": {
                "CheckID": "web1-check",
                "Name": "web1 http",
                "Status": "passing",
                "ServiceID": "web1",
                "Output": "ok"
            }
        }),
    );
    register(
        agent,
        &json!({
            "Node": "n2",
            "Address": "10.0.0.2",
            "Service": {
                "ID": "web2",
                "Service": "web",
                "Tags": ["v2", "primary"],
                "Address": "10.0.1.2",
                "Port": 8081
            },
            "Check": {
                "CheckID": "web2-check",
                "Name": "web2 http",
                "Status": "critical",
                "ServiceID": "web2"
            }
        }),
    );
    register(
        agent,
        &json!({
            "Node": "n2",
            "Address": "10.0.0.2",
            "Service": {"Service": "db", "Port": 5432}
        }),
    );
}

fn ids(rows: &Value, field: &str) -> BTreeSet<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("array expected: {rows}"))
        .iter()
        .map(|r| string(r, field).to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn catalog_register_and_read() {
    let agent = Agent::start();
    register_fixture(&agent);

    let resp = agent.get("/v1/catalog/datacenters").expect(200);
    assert_eq!(resp.json(), json!(["dc1"]));

    let resp = agent.get("/v1/catalog/nodes").expect(200);
    resp.index();
    let nodes = resp.json();
    assert_eq!(ids(&nodes, "Node"), set(&["n1", "n2", &agent.node]));
    let n1 = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["Node"] == "n1"))
        .expect("n1 listed")
        .clone();
    string(&n1, "ID");
    assert_eq!(n1["Address"], "10.0.0.1");
    assert_eq!(n1["Datacenter"], "dc1");
    assert!(n1["TaggedAddresses"].is_object(), "{n1}");
    assert_eq!(n1["Meta"], json!({"rack": "r1"}));
    assert!(uint(&n1, "CreateIndex") > 0);
    assert!(uint(&n1, "ModifyIndex") >= uint(&n1, "CreateIndex"));

    // Services: tags are the union over instances.
    let resp = agent.get("/v1/catalog/services").expect(200);
    resp.index();
    let services = resp.json();
    let web_tags: BTreeSet<String> = services["web"]
        .as_array()
        .expect("web tags array")
        .iter()
        .map(|t| t.as_str().expect("tag string").to_string())
        .collect();
    assert_eq!(web_tags, set(&["v1", "v2", "primary"]));
    assert_eq!(
        services["web"].as_array().map(Vec::len),
        Some(3),
        "no duplicates"
    );
    assert_eq!(services["db"], json!([]));

    // Service instances, with ?tag filters (ANDed).
    let resp = agent.get("/v1/catalog/service/web").expect(200);
    resp.index();
    let rows = resp.json();
    assert_eq!(ids(&rows, "ServiceID"), set(&["web1", "web2"]));
    let web1 = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["ServiceID"] == "web1"))
        .expect("web1")
        .clone();
    assert_eq!(web1["Node"], "n1");
    assert_eq!(web1["Address"], "10.0.0.1");
    assert_eq!(web1["Datacenter"], "dc1");
    assert_eq!(web1["ServiceName"], "web");
    assert_eq!(web1["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(web1["ServicePort"], 8080);
    assert_eq!(web1["ServiceAddress"], "");
    assert_eq!(web1["ServiceMeta"], json!({"version": "1"}));
    assert_eq!(web1["NodeMeta"], json!({"rack": "r1"}));
    assert_eq!(web1["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web1["ServiceEnableTagOverride"], false);
    string(&web1, "ID");
    assert!(uint(&web1, "CreateIndex") > 0);
    uint(&web1, "ModifyIndex");

    let tagged = |query: &str| {
        let resp = agent
            .get(&format!("/v1/catalog/service/web?{query}"))
            .expect(200);
        resp.index();
        ids(&resp.json(), "ServiceID")
    };
    assert_eq!(tagged("tag=v1"), set(&["web1"]));
    assert_eq!(tagged("tag=primary"), set(&["web1", "web2"]));
    assert_eq!(tagged("tag=primary&tag=v2"), set(&["web2"]));
    assert_eq!(tagged("tag=v1&tag=v2"), set(&[]));
    assert_eq!(tagged("tag=nope"), set(&[]));

    let resp = agent.get("/v1/catalog/service/nothing").expect(200);
    resp.index();
    assert_eq!(resp.json(), json!([]));

    // One node with its services.
    let resp = agent.get("/v1/catalog/node/n2").expect(200);
    resp.index();
    let node = resp.json();
    assert_eq!(node["Node"]["Node"], "n2");
    assert_eq!(node["Node"]["Address"], "10.0.0.2");
    let services = node["Services"].as_object().expect("Services map");
    assert_eq!(
        services.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["db", "web2"])
    );
    assert_eq!(services["web2"]["Service"], "web");
    assert_eq!(services["web2"]["Address"], "10.0.1.2");
    assert_eq!(services["web2"]["Port"], 8081);
    assert_eq!(services["db"]["ID"], "db");
    assert_eq!(services["db"]["Tags"], json!([]));

    let resp = agent.get("/v1/catalog/node/ghost").expect(200);
    resp.index();
    assert_eq!(resp.json(), Value::Null);
}

#[test]
fn catalog_deregister_check_service_and_node() {
    let agent = Agent::start();
    register_fixture(&agent);

    deregister(&agent, &json!({"Node": "n1", "CheckID": "web1-check"}));
    let checks = agent.get("/v1/health/checks/web").expect(200).json();
    assert_eq!(ids(&checks, "CheckID"), set(&["web2-check"]));
    // The service itself stays.
    let rows = agent.get("/v1/catalog/service/web").expect(200).json();
    assert_eq!(ids(&rows, "ServiceID"), set(&["web1", "web2"]));

    deregister(&agent, &json!({"Node": "n2", "ServiceID": "web2"}));
    let rows = agent.get("/v1/catalog/service/web").expect(200).json();
    assert_eq!(ids(&rows, "ServiceID"), set(&["web1"]));
    // Its check went with it; the node and its other service stay.
    let checks = agent.get("/v1/health/checks/web").expect(200).json();
    assert_eq!(checks, json!([]));
    let node = agent.get("/v1/catalog/node/n2").expect(200).json();
    assert_eq!(
        node["Services"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["db".to_string()])
    );
    let services = agent.get("/v1/catalog/services").expect(200).json();
    assert_eq!(services["web"], json!(["v1", "primary"]));

    // The whole node: its services and checks go too.
    deregister(&agent, &json!({"Node": "n2"}));
    let nodes = agent.get("/v1/catalog/nodes").expect(200).json();
    assert_eq!(ids(&nodes, "Node"), set(&["n1", &agent.node]));
    let services = agent.get("/v1/catalog/services").expect(200).json();
    assert!(services.get("db").is_none(), "{services}");
    assert_eq!(
        agent.get("/v1/catalog/node/n2").expect(200).json(),
        Value::Null
    );
    assert_eq!(
        agent.get("/v1/health/node/n2").expect(200).json(),
        json!([])
    );
}

fn assert_check_shape(check: &Value) {
    for field in [
        "Node",
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "Output",
        "ServiceID",
        "ServiceName",
        "Type",
    ] {
        string(check, field);
    }
    assert!(check["ServiceTags"].is_array(), "{check}");
    assert!(check["Definition"].is_object(), "{check}");
    assert!(uint(check, "CreateIndex") > 0);
    uint(check, "ModifyIndex");
}

#[test]
fn health_endpoints() {
    let agent = Agent::start();
    register_fixture(&agent);

    // The agent's own node carries serfHealth, passing.
    let resp = agent
        .get(&format!("/v1/health/node/{}", agent.node))
        .expect(200);
    resp.index();
    let checks = resp.json();
    let serf = checks
        .as_array()
        .and_then(|a| a.iter().find(|c| c["CheckID"] == "serfHealth"))
        .unwrap_or_else(|| panic!("serfHealth on the agent's node: {checks}"))
        .clone();
    assert_check_shape(&serf);
    assert_eq!(serf["Status"], "passing");
    assert_eq!(serf["Name"], "Serf Health Status");
    assert_eq!(serf["Node"], agent.node.as_str());
    assert_eq!(serf["ServiceID"], "");

    // Checks of a service.
    let resp = agent.get("/v1/health/checks/web").expect(200);
    resp.index();
    let checks = resp.json();
    assert_eq!(ids(&checks, "CheckID"), set(&["web1-check", "web2-check"]));
    for c in checks.as_array().expect("array") {
        assert_check_shape(c);
        assert_eq!(c["ServiceName"], "web");
    }
    let web1 = checks
        .as_array()
        .and_then(|a| a.iter().find(|c| c["CheckID"] == "web1-check"))
        .expect("web1-check");
    assert_eq!(web1["ServiceID"], "web1");
    assert_eq!(web1["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(web1["Output"], "ok");
    assert_eq!(web1["Node"], "n1");

    // Service health: Node, Service, Checks.
    let resp = agent.get("/v1/health/service/web").expect(200);
    resp.index();
    let rows = resp.json();
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    for row in rows {
        string(&row["Node"], "Node");
        string(&row["Node"], "Address");
        string(&row["Service"], "ID");
        assert_eq!(row["Service"]["Service"], "web");
        uint(&row["Service"], "Port");
        assert!(row["Service"]["Tags"].is_array());
        assert!(row["Checks"].is_array());
    }
    let service_ids = |query: &str| -> BTreeSet<String> {
        let resp = agent
            .get(&format!("/v1/health/service/web?{query}"))
            .expect(200);
        resp.index();
        resp.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|r| string(&r["Service"], "ID").to_string())
            .collect()
    };
    assert_eq!(service_ids("passing"), set(&["web1"]));
    assert_eq!(service_ids("passing=1"), set(&["web1"]));
    assert_eq!(service_ids("tag=v2"), set(&["web2"]));
    assert_eq!(service_ids("tag=primary"), set(&["web1", "web2"]));
    assert_eq!(service_ids("passing&tag=v2"), set(&[]));
    assert_eq!(service_ids("passing&tag=primary"), set(&["web1"]));

    // A node-level check counts for every service on the node.
    register(
        &agent,
        &json!({
            "Node": "n1",
            "Address": "10.0.0.1",
            "Check": {"CheckID": "n1-disk", "Name": "disk", "Status": "warning"}
        }),
    );
    let rows = agent
        .get("/v1/health/service/web?tag=v1")
        .expect(200)
        .json();
    assert_eq!(
        ids(&rows[0]["Checks"], "CheckID"),
        set(&["web1-check", "n1-disk"])
    );
    assert_eq!(service_ids("passing"), set(&[]));

    // By state.
    let state = |s: &str| -> BTreeSet<String> {
        let resp = agent.get(&format!("/v1/health/state/{s}")).expect(200);
        resp.index();
        ids(&resp.json(), "CheckID")
    };
    assert_eq!(
        state("any"),
        set(&["serfHealth", "web1-check", "web2-check", "n1-disk"])
    );
    assert_eq!(state("passing"), set(&["serfHealth", "web1-check"]));
    assert_eq!(state("warning"), set(&["n1-disk"]));
    assert_eq!(state("critical"), set(&["web2-check"]));
    let resp = agent.get("/v1/health/state/bogus").expect(400);
    assert!(resp.text().contains("bogus"), "{:?}", resp.text());

    assert_eq!(
        agent.get("/v1/health/checks/nothing").expect(200).json(),
        json!([])
    );
    assert_eq!(
        agent.get("/v1/health/service/nothing").expect(200).json(),
        json!([])
    );
}

#[test]
fn every_read_endpoint_sends_index_headers_on_a_fresh_agent() {
    let agent = Agent::start();
    let node = agent.node.clone();
    let uuid = "6f2f5a1e-0000-4000-8000-000000000000";
    for (path, status) in [
        ("/v1/kv/missing".to_string(), 404),
        ("/v1/kv/missing?raw".to_string(), 404),
        ("/v1/kv/?recurse".to_string(), 404),
        ("/v1/kv/missing/?keys".to_string(), 404),
        ("/v1/kv/?keys".to_string(), 200),
        ("/v1/catalog/nodes".to_string(), 200),
        ("/v1/catalog/services".to_string(), 200),
        ("/v1/catalog/service/none".to_string(), 200),
        (format!("/v1/catalog/node/{node}"), 200),
        (format!("/v1/health/node/{node}"), 200),
        ("/v1/health/checks/none".to_string(), 200),
        ("/v1/health/service/none".to_string(), 200),
        ("/v1/health/state/any".to_string(), 200),
        ("/v1/health/state/critical".to_string(), 200),
        ("/v1/session/list".to_string(), 200),
        (format!("/v1/session/info/{uuid}"), 200),
        (format!("/v1/session/node/{node}"), 200),
    ] {
        let resp = agent.get(&path);
        assert_eq!(resp.status, status, "{path}: {:?}", resp.text());
        resp.index();
        if status == 200 {
            resp.json();
            assert!(
                resp.header("Content-Type")
                    .is_some_and(|c| c.starts_with("application/json")),
                "{path}"
            );
        }
    }
}

#[test]
fn status_leader_and_peers() {
    let agent = Agent::start();
    let leader = agent.get("/v1/status/leader").expect(200).json();
    let leader = leader.as_str().expect("leader is a JSON string");
    let (host, port) = leader.rsplit_once(':').expect("host:port");
    assert!(!host.is_empty());
    port.parse::<u16>().expect("numeric port");
    let peers = agent.get("/v1/status/peers").expect(200).json();
    assert_eq!(peers, json!([leader]));
}

// ------------------------------------------------------------- blocking

#[test]
fn blocking_catalog_services_wakes_on_registration() {
    let agent = Agent::start();
    let index = agent.get("/v1/catalog/services").expect(200).index();
    let client = agent.client();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        client.put("/v1/kv/unrelated", "x").expect(200);
        let body = json!({"Node": "late", "Address": "10.9.9.9",
                          "Service": {"Service": "late-svc", "Tags": ["t"]}});
        client.put_json("/v1/catalog/register", &body).expect(200);
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/catalog/services?index={index}&wait=5s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer");
    assert!(took < Duration::from_secs(3), "woke after {took:?}");
    assert!(resp.index() > index);
    assert_eq!(resp.json()["late-svc"], json!(["t"]));

    // And the same blocking query with nothing new times out unchanged.
    let index = resp.index();
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/catalog/services?index={index}&wait=1s"))
        .expect(200);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(resp.index(), index);
}

#[test]
fn blocking_health_service_wakes_on_registration() {
    let agent = Agent::start();
    let resp = agent.get("/v1/health/service/api").expect(200);
    assert_eq!(resp.json(), json!([]));
    let index = resp.index();
    let client = agent.client();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let body = json!({"Name": "api", "ID": "api-1", "Port": 9000});
        client
            .put_json("/v1/agent/service/register", &body)
            .expect(200);
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/health/service/api?index={index}&wait=5s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer");
    assert!(took < Duration::from_secs(3), "woke after {took:?}");
    assert!(resp.index() > index);
    let rows = resp.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["Service"]["ID"], "api-1");
    assert_eq!(rows[0]["Node"]["Node"], agent.node.as_str());
    // The agent's node check comes along.
    assert!(ids(&rows[0]["Checks"], "CheckID").contains("serfHealth"));
}

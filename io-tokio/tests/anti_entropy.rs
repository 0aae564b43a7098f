//! Anti-entropy against a real agent: the catalog's view of the agent's
//! node is repaired after changes made behind the agent's back.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{wait_for, Agent};

fn agent_with_fast_sync() -> Agent {
    let dir = std::env::temp_dir().join(format!(
        "tribune-ae-{}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("ae.json");
    std::fs::write(&file, r#"{"ae_interval": "1s"}"#).expect("write config");
    Agent::start_with(&["-config-file", file.to_str().expect("utf-8 path")])
}

fn catalog_service_ids(agent: &Agent) -> Vec<String> {
    let node = agent
        .get(&format!("/v1/catalog/node/{}", agent.node))
        .expect(200);
    let mut ids: Vec<String> = node.json()["Services"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn catalog_changes_behind_the_agents_back_are_repaired() {
    let agent = agent_with_fast_sync();
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web1", "Port": 80,
                    "Check": {"TTL": "60s", "Status": "passing"}}),
        )
        .expect(200);
    assert!(catalog_service_ids(&agent).contains(&"web1".to_string()));

    // 1. The agent's service is deregistered directly in the catalog.
    agent
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": agent.node, "ServiceID": "web1"}),
        )
        .expect(200);
    assert!(!catalog_service_ids(&agent).contains(&"web1".to_string()));
    wait_for(Duration::from_secs(10), "web1 restored", || {
        catalog_service_ids(&agent)
            .contains(&"web1".to_string())
            .then_some(())
    });
    let health = agent
        .get("/v1/health/service/web?passing")
        .expect(200)
        .json();
    assert_eq!(
        health.as_array().map(Vec::len),
        Some(1),
        "its check came back too"
    );

    // 2. A service the agent does not know appears on its node.
    agent
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": agent.node, "Address": "127.0.0.1",
                    "Service": {"Service": "intruder", "ID": "intruder"}}),
        )
        .expect(200);
    assert!(catalog_service_ids(&agent).contains(&"intruder".to_string()));
    wait_for(Duration::from_secs(10), "intruder removed", || {
        (!catalog_service_ids(&agent).contains(&"intruder".to_string())).then_some(())
    });

    // 3. The node's serfHealth is overwritten as critical.
    agent
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": agent.node, "Address": "127.0.0.1",
                    "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status",
                              "Status": "critical"}}),
        )
        .expect(200);
    wait_for(Duration::from_secs(10), "serfHealth passing again", || {
        let checks = agent
            .get(&format!("/v1/health/node/{}", agent.node))
            .expect(200)
            .json();
        checks
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
            .then_some(())
    });
    assert!(
        agent
            .log_contents()
            .contains("anti-entropy: synced service \"web1\""),
        "repairs are logged"
    );
}

#[test]
fn a_bad_ae_interval_is_refused() {
    let dir = std::env::temp_dir().join(format!("tribune-ae-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("bad.json");
    std::fs::write(&file, r#"{"ae_interval": "soon"}"#).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", file.to_str().expect("utf-8 path")])
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ae_interval: invalid duration \"soon\""));
}

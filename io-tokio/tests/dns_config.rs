//! `dns_config` settings seen through dig: TTLs, only_passing,
//! udp_answer_limit and enable_truncate (the TC bit).

mod support;

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::dig::{dig_available, Dig};
use support::Agent;

/// UDP without EDNS, reporting TC instead of retrying over TCP.
fn dig(agent: &Agent, args: &[&str]) -> Dig {
    let mut all = vec!["+notcp", "+noedns", "+ignore"];
    all.extend_from_slice(args);
    support::dig::dig(agent.dns_port, &all)
}

fn register(agent: &Agent, node: &str, address: &str, service: &str, status: &str) {
    agent
        .put_json(
            "/v1/catalog/register",
            &json!({
                "Node": node, "Address": address,
                "Service": {"Service": service, "ID": format!("{service}-{node}"), "Port": 80},
                "Check": {"CheckID": format!("{service}-{node}-check"), "Name": "c",
                          "ServiceID": format!("{service}-{node}"), "Status": status}
            }),
        )
        .expect(200);
}

#[test]
fn ttls_limits_truncation_and_only_passing_follow_dns_config() {
    if !dig_available() {
        assert!(std::env::var_os("CI").is_none(), "dig missing under CI");
        eprintln!("SKIPPED: dig not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "tribune-dnsconfig-{}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("dns.json");
    let config = json!({"dns_config": {
        "node_ttl": "10s",
        "service_ttl": {"*": "5s", "web": "30s", "ap*": "7s"},
        "only_passing": true,
        "enable_truncate": true,
        "udp_answer_limit": 2
    }});
    std::fs::write(&file, config.to_string()).expect("write config");
    let agent = Agent::start_with(&["-config-file", file.to_str().expect("utf-8 path")]);
    for i in 1..=5 {
        register(
            &agent,
            &format!("n{i}"),
            &format!("10.0.0.{i}"),
            "web",
            "passing",
        );
    }
    register(&agent, "n6", "10.0.0.6", "web", "warning");
    register(&agent, "n1", "10.0.0.1", "db", "passing");
    register(&agent, "n2", "10.0.0.2", "api", "passing");

    let deadline = Instant::now() + Duration::from_secs(10);
    let web = loop {
        let web = dig(&agent, &["web.service.consul", "A"]);
        if !web.answers.is_empty() || Instant::now() > deadline {
            break web;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        web.answers.len(),
        2,
        "udp_answer_limit 2: {:?}",
        web.answers
    );
    assert!(web.flag("tc"), "TC set: {:?}", web.flags);
    assert!(web.records.iter().all(|a| a.ttl == 30), "web's own TTL");

    // Over repeated queries only passing instances appear (n6 warns).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        for answer in dig(&agent, &["web.service.consul", "A"]).records {
            seen.insert(answer.data);
        }
    }
    assert!(
        !seen.contains("10.0.0.6"),
        "only_passing hides warnings: {seen:?}"
    );
    assert_eq!(seen.len(), 5, "every passing instance shows up: {seen:?}");

    let db = dig(&agent, &["db.service.consul", "A"]);
    assert_eq!(db.answers.len(), 1);
    assert_eq!(db.records[0].ttl, 5, "the * TTL");
    assert!(!db.flag("tc"), "nothing cut: {:?}", db.flags);
    assert_eq!(
        dig(&agent, &["api.service.consul", "A"]).records[0].ttl,
        7,
        "prefix TTL"
    );
    let node = dig(&agent, &["n1.node.consul", "A"]);
    assert_eq!(node.records[0].ttl, 10, "node_ttl");
}

#[test]
fn bad_dns_config_values_are_refused() {
    let dir = std::env::temp_dir().join(format!("tribune-dnsconfig-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for (body, message) in [
        (
            r#"{"dns_config":{"node_ttl":"soon"}}"#,
            "dns_config.node_ttl",
        ),
        (
            r#"{"dns_config":{"udp_answer_limit":0}}"#,
            "udp_answer_limit",
        ),
        (
            r#"{"dns_config":{"service_ttl":{"web":"x"}}}"#,
            "service_ttl.web",
        ),
    ] {
        let file = dir.join("bad.json");
        std::fs::write(&file, body).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
            .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
            .args(["-config-file", file.to_str().expect("utf-8 path")])
            .output()
            .expect("run agent");
        assert_eq!(out.status.code(), Some(1), "{body}");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(text.contains(message), "{body}: {text}");
    }
}

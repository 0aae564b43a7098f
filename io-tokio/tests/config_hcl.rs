//! The agent started with an HCL config file: services, checks and watches
//! defined in HCL behave as the same JSON would, and a malformed file stops
//! startup with its name, line and column.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{wait_for, Agent};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tribune-hcl-{}-{name}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn hcl_service_check_and_watch_come_up() {
    let dir = scratch("ok");
    let out = dir.join("watch-out");
    let config = format!(
        r#"
# The service and check of Consul's "define services" docs, in HCL.
service {{
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1", "primary",]
  meta = {{
    team = "edge"
  }}
  check {{
    id    = "web-ttl"
    name  = "web alive"
    ttl   = "30s"
    notes = <<-EOT
      Pushed by the app
      every 10s.
      EOT
  }}
}}

/* A watch whose script writes what it sees. */
watches = [
  {{
    type = "key"
    key  = "cfg/x"
    args = ["sh", "-c", "cat > {tmp} && mv {tmp} {out}"]
  }},
]
"#,
        tmp = dir.join("watch-tmp").display(),
        out = out.display(),
    );
    let file = dir.join("agent.hcl");
    std::fs::write(&file, config).expect("write config");
    let agent = Agent::start_with(&["-config-file", file.to_str().expect("utf-8 path")]);

    let services = agent.get("/v1/agent/services").expect(200).json();
    let web = &services["web-1"];
    assert_eq!(web["Service"], "web", "{services}");
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Tags"], serde_json::json!(["v1", "primary"]));
    assert_eq!(web["Meta"]["team"], "edge");
    let checks = agent.get("/v1/agent/checks").expect(200).json();
    assert_eq!(checks["web-ttl"]["Name"], "web alive", "{checks}");
    assert_eq!(
        checks["web-ttl"]["Notes"],
        "Pushed by the app\nevery 10s.\n"
    );
    assert_eq!(checks["web-ttl"]["ServiceID"], "web-1");
    agent.put("/v1/agent/check/pass/web-ttl", "").expect(200);

    let catalog = wait_for(Duration::from_secs(10), "web in the catalog", || {
        let list = agent.get("/v1/catalog/service/web").expect(200).json();
        (list.as_array().is_some_and(|l| l.len() == 1)).then_some(list)
    });
    assert_eq!(catalog[0]["ServiceID"], "web-1");
    assert_eq!(catalog[0]["ServicePort"], 8080);
    wait_for(Duration::from_secs(10), "web passing", || {
        let health = agent
            .get("/v1/health/service/web?passing")
            .expect(200)
            .json();
        (health.as_array().is_some_and(|l| l.len() == 1)).then_some(())
    });

    // The watch fires once at start (no key yet: null), then on the write.
    let seen = |want: &str| {
        wait_for(Duration::from_secs(10), want, || {
            std::fs::read_to_string(&out)
                .ok()
                .filter(|text| text.contains(want))
        })
    };
    seen("null");
    agent.put("/v1/kv/cfg/x", "hello").expect(200);
    seen("\"cfg/x\"");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_hcl_stops_startup_naming_file_line_and_column() {
    let dir = scratch("bad");
    let file = dir.join("bad.hcl");
    std::fs::write(&file, "node_name = \"n1\"\nports {\n  http = 85OO\n}\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", path])
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.contains(&format!("Error parsing {path}:3:10: invalid number")),
        "{text}"
    );

    // A well-formed file with a bad value names the key path and line, as
    // for JSON; -config-dir picks up .hcl files too.
    std::fs::remove_file(&file).expect("remove");
    std::fs::write(
        dir.join("svc.hcl"),
        "service {\n  name = \"web\"\n  check {\n    ttl = \"5s\"\n    interval = [1]\n  }\n}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-dir", dir.to_str().expect("utf-8 path")])
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.contains("svc.hcl: service.check.interval (line 5): "),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

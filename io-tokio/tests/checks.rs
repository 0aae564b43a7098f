//! Health checks end to end: a real `tribune agent -dev` runs HTTP, TCP and
//! script probes against real sockets and processes started here; results
//! show in `/v1/health/service/<name>?passing` and in DNS (through the real
//! `dig`, when installed). Also maintenance mode, config-file services and
//! reload (SIGHUP, `PUT /v1/agent/reload`, `tribune reload`).

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{wait_for, Agent};

/// Time a check gets to show a change: its interval (1 s) plus one second
/// for the run itself and the catalog write (the brief's bound).
const FLIP_BOUND: Duration = Duration::from_secs(2);
/// Generous bound for things that are not timed (startup, first runs).
const SETTLE: Duration = Duration::from_secs(15);

/// A tiny HTTP server answering 200 or 500 depending on `healthy`.
struct FlakyServer {
    port: u16,
    healthy: Arc<AtomicBool>,
}

impl FlakyServer {
    fn start() -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = if flag.load(Ordering::SeqCst) {
                    ("200 OK", "all good")
                } else {
                    ("500 Internal Server Error", "broken")
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        FlakyServer { port, healthy }
    }
}

fn passing_instances(agent: &Agent, service: &str) -> usize {
    let resp = agent
        .get(&format!("/v1/health/service/{service}?passing"))
        .expect(200);
    resp.json().as_array().expect("array").len()
}

fn check(agent: &Agent, id: &str) -> Option<Value> {
    let checks = agent.get("/v1/agent/checks").expect(200).json();
    checks.get(id).cloned()
}

/// Waits until check `id` has `status`; returns the check.
#[track_caller]
fn wait_status(agent: &Agent, id: &str, status: &str, limit: Duration) -> Value {
    wait_for(limit, &format!("check {id} to be {status}"), || {
        check(agent, id).filter(|c| c["Status"] == status)
    })
}

fn dig_available() -> bool {
    Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `dig +short` A answers for `name`.
fn dig_short(agent: &Agent, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &agent.dns_port.to_string()])
        .args(["+time=2", "+tries=1", "+short", name])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

#[test]
fn http_check_flips_service_out_of_dns_and_back() {
    let server = FlakyServer::start();
    let agent = Agent::start();
    let body = json!({
        "Name": "web", "Port": 80,
        "Check": {"HTTP": format!("http://127.0.0.1:{}/health", server.port), "Interval": "1s"}
    });
    agent
        .put_json("/v1/agent/service/register", &body)
        .expect(200);
    let passing = wait_status(&agent, "service:web", "passing", SETTLE);
    assert_eq!(
        passing["Output"],
        format!(
            "HTTP GET http://127.0.0.1:{}/health: 200 OK Output: all good",
            server.port
        )
    );
    let dig = dig_available();
    if dig {
        wait_for(SETTLE, "web in DNS", || {
            Some(()).filter(|_| dig_short(&agent, "web.service.consul") == ["127.0.0.1"])
        });
    }
    assert_eq!(passing_instances(&agent, "web"), 1);

    server.healthy.store(false, Ordering::SeqCst);
    let flipped = Instant::now();
    wait_for(FLIP_BOUND, "web to leave ?passing", || {
        Some(()).filter(|_| passing_instances(&agent, "web") == 0)
    });
    let critical = check(&agent, "service:web").expect("check");
    assert_eq!(critical["Status"], "critical");
    assert!(
        critical["Output"]
            .as_str()
            .is_some_and(|o| o.contains(": 500 Internal Server Error Output: broken")),
        "{critical}"
    );
    if dig {
        assert!(dig_short(&agent, "web.service.consul").is_empty());
        assert!(flipped.elapsed() < FLIP_BOUND + Duration::from_secs(2));
    }

    server.healthy.store(true, Ordering::SeqCst);
    wait_for(FLIP_BOUND, "web back in ?passing", || {
        Some(()).filter(|_| passing_instances(&agent, "web") == 1)
    });
    if dig {
        assert_eq!(dig_short(&agent, "web.service.consul"), ["127.0.0.1"]);
    } else {
        eprintln!("dig not installed: DNS part of the check test skipped");
        assert!(std::env::var_os("CI").is_none(), "CI must have dig");
    }
}

#[test]
fn tcp_check_passes_then_fails_when_the_listener_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let agent = Agent::start();
    let body = json!({"Name": "db-tcp", "TCP": format!("127.0.0.1:{port}"), "Interval": "1s"});
    agent
        .put_json("/v1/agent/check/register", &body)
        .expect(200);
    let ok = wait_status(&agent, "db-tcp", "passing", SETTLE);
    assert_eq!(
        ok["Output"],
        format!("TCP connect 127.0.0.1:{port}: Success")
    );
    assert_eq!(ok["Type"], "tcp");
    drop(listener);
    let bad = wait_status(&agent, "db-tcp", "critical", FLIP_BOUND);
    assert_eq!(
        bad["Output"],
        format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
}

/// PIDs of processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn script_check_timeout_kills_the_process_group() {
    // A sleep length no other process uses, to find stragglers.
    let sleep_arg = format!("10.{}", std::process::id());
    let agent = Agent::start_with(&["-enable-script-checks"]);
    let body = json!({
        "Name": "slow",
        "Args": ["sh", "-c", format!("echo started; sleep {sleep_arg}; echo never")],
        "Interval": "1s",
        "Timeout": "1s",
    });
    agent
        .put_json("/v1/agent/check/register", &body)
        .expect(200);
    let timed_out = wait_for(SETTLE, "the script to time out", || {
        check(&agent, "slow").filter(|c| {
            c["Output"]
                .as_str()
                .is_some_and(|o| o.starts_with("Timed out (1s) running check"))
        })
    });
    assert_eq!(timed_out["Status"], "critical");
    assert!(timed_out["Output"]
        .as_str()
        .is_some_and(|o| o.contains("started")));
    assert!(
        processes_with(&format!("sleep {sleep_arg}")).len() <= 1,
        "never more than the run in flight"
    );
    agent.put("/v1/agent/check/deregister/slow", "").expect(200);
    // The run in flight (if any) times out within a second and is killed
    // with its whole group, shell and sleep alike.
    wait_for(Duration::from_secs(5), "no sleep left behind", || {
        Some(()).filter(|_| processes_with(&format!("sleep {sleep_arg}")).is_empty())
    });
    // Exit codes map to statuses: 0 passing, 1 warning, other critical.
    for (code, status) in [(0, "passing"), (1, "warning"), (3, "critical")] {
        let id = format!("exit{code}");
        let body = json!({"ID": id, "Name": id, "Args": ["sh", "-c", format!("echo out; echo err >&2; exit {code}")], "Interval": "1s"});
        agent
            .put_json("/v1/agent/check/register", &body)
            .expect(200);
        // Checks start critical with no output: wait for the first run.
        let c = wait_for(SETTLE, &format!("{id} to run"), || {
            check(&agent, &id).filter(|c| c["Output"] != "")
        });
        assert_eq!(c["Status"], status, "{c}");
        let output = c["Output"].as_str().expect("output");
        assert!(
            output.contains("out\n") && output.contains("err\n"),
            "{id}: {c}"
        );
    }
}

#[test]
fn script_checks_are_refused_without_the_flag() {
    let agent = Agent::start();
    let body = json!({"Name": "s", "Args": ["true"], "Interval": "10s"});
    let resp = agent
        .put_json("/v1/agent/check/register", &body)
        .expect(400);
    assert!(
        resp.text()
            .starts_with("Scripts are disabled on this agent"),
        "{}",
        resp.text()
    );
    assert!(check(&agent, "s").is_none());
    let unknown = json!({"Name": "h", "H2PING": "127.0.0.1:1", "Interval": "10s"});
    let resp = agent
        .put_json("/v1/agent/check/register", &unknown)
        .expect(400);
    assert!(
        resp.text().contains("H2PING checks are not supported"),
        "{}",
        resp.text()
    );
    // gRPC checks run (tests/checks_grpc.rs); here: they register as such.
    let grpc = json!({"Name": "g", "GRPC": "127.0.0.1:1", "Interval": "10s"});
    agent
        .put_json("/v1/agent/check/register", &grpc)
        .expect(200);
    assert_eq!(check(&agent, "g").expect("registered")["Type"], "grpc");
}

#[test]
fn ttl_check_expires_to_critical() {
    let agent = Agent::start();
    let body = json!({"Name": "beat", "TTL": "1s"});
    agent
        .put_json("/v1/agent/check/register", &body)
        .expect(200);
    agent
        .put("/v1/agent/check/pass/beat?note=alive", "")
        .expect(200);
    assert_eq!(check(&agent, "beat").expect("check")["Status"], "passing");
    let expired = wait_status(&agent, "beat", "critical", Duration::from_secs(5));
    assert_eq!(expired["Output"], "TTL expired");
}

#[test]
fn maintenance_mode_hides_and_returns_the_service() {
    let agent = Agent::start();
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "Port": 80}),
        )
        .expect(200);
    assert_eq!(passing_instances(&agent, "web"), 1);

    agent
        .put("/v1/agent/maintenance?enable=true&reason=patching", "")
        .expect(200);
    assert_eq!(passing_instances(&agent, "web"), 0);
    let node_check = check(&agent, "_node_maintenance").expect("node maintenance check");
    assert_eq!(
        (node_check["Notes"].as_str(), node_check["Status"].as_str()),
        (Some("patching"), Some("critical"))
    );
    agent
        .put("/v1/agent/maintenance?enable=false", "")
        .expect(200);
    assert_eq!(passing_instances(&agent, "web"), 1);

    agent
        .put("/v1/agent/service/maintenance/web?enable=true", "")
        .expect(200);
    assert_eq!(passing_instances(&agent, "web"), 0);
    let svc_check = check(&agent, "_service_maintenance:web").expect("service maintenance check");
    assert_eq!(svc_check["ServiceID"], "web");
    assert_eq!(
        svc_check["Notes"],
        "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
    );
    agent
        .put("/v1/agent/service/maintenance/web?enable=false", "")
        .expect(200);
    assert_eq!(passing_instances(&agent, "web"), 1);

    let resp = agent
        .put("/v1/agent/service/maintenance/nope?enable=true", "")
        .expect(404);
    assert_eq!(resp.text(), "No service registered with ID \"nope\"");
    let resp = agent
        .put("/v1/agent/service/maintenance/web", "")
        .expect(400);
    assert_eq!(resp.text(), "Missing value for enable");
    let resp = agent
        .put("/v1/agent/maintenance?enable=maybe", "")
        .expect(400);
    assert_eq!(resp.text(), "Invalid value for enable: \"maybe\"");
}

/// A temporary config directory, removed on drop.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new(tag: &str) -> ConfigDir {
        let dir = std::env::temp_dir().join(format!("tribune-checks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create config dir");
        ConfigDir(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write config file");
        path
    }
    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn service_ids(agent: &Agent) -> Vec<String> {
    let services = agent.get("/v1/agent/services").expect(200).json();
    services
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn config_file_services_and_checks_appear_at_startup() {
    let dir = ConfigDir::new("startup");
    dir.write(
        "a.json",
        r#"{"service": {"name": "api", "port": 8080, "tags": ["v1"],
             "check": {"id": "api-ttl", "ttl": "30s", "status": "passing"}}}"#,
    );
    dir.write(
        "b.json",
        r#"{"Services": [{"Name": "cache", "Port": 6379}],
            "Checks": [{"Name": "disk", "TTL": "60s", "Notes": "from config", "Status": "passing"}]}"#,
    );
    let agent = Agent::start_with(&["-config-dir", dir.arg()]);
    assert_eq!(service_ids(&agent), ["api", "cache"]);
    let ttl = check(&agent, "api-ttl").expect("service check");
    assert_eq!(
        (ttl["Status"].as_str(), ttl["ServiceID"].as_str()),
        (Some("passing"), Some("api"))
    );
    assert_eq!(
        check(&agent, "disk").expect("node check")["Notes"],
        "from config"
    );
    assert_eq!(passing_instances(&agent, "api"), 1);
}

#[test]
fn a_bad_config_file_fails_startup_naming_file_and_key() {
    let dir = ConfigDir::new("bad");
    let path = dir.write(
        "web.json",
        "{\n  \"services\": [\n    {\"name\": \"web\",\n     \"port\": \"eighty\"}\n  ]\n}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args([
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port=-1",
            "-config-file",
        ])
        .arg(&path)
        .output()
        .expect("run tribune agent");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("services[0].port (line 4)"), "{stderr}");
    let unknown = dir.write(
        "kind.json",
        r#"{"check": {"name": "x", "docker_container_id": "f00", "interval": "5s"}}"#,
    );
    std::fs::remove_file(&path).expect("rm");
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args([
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port=-1",
            "-config-dir",
            dir.arg(),
        ])
        .output()
        .expect("run tribune agent");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&unknown.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("Docker checks are not supported"),
        "{stderr}"
    );
}

#[test]
fn reload_follows_the_config_files() {
    let dir = ConfigDir::new("reload");
    dir.write("a.json", r#"{"service": {"name": "alpha", "port": 1}}"#);
    let agent = Agent::start_with(&["-config-dir", dir.arg()]);
    agent
        .put_json("/v1/agent/service/register", &json!({"Name": "from-api"}))
        .expect(200);
    assert_eq!(service_ids(&agent), ["alpha", "from-api"]);

    // SIGHUP: a service added to the file appears.
    dir.write("b.json", r#"{"service": {"name": "beta", "port": 2}}"#);
    let status = Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_for(SETTLE, "beta after SIGHUP", || {
        Some(()).filter(|_| service_ids(&agent) == ["alpha", "beta", "from-api"])
    });

    // PUT /v1/agent/reload: a removed file's service goes, API ones stay.
    std::fs::remove_file(dir.0.join("a.json")).expect("rm");
    agent.put("/v1/agent/reload", "").expect(200);
    assert_eq!(service_ids(&agent), ["beta", "from-api"]);

    // `tribune reload` does the same through the CLI.
    dir.write("c.json", r#"{"service": {"name": "gamma", "port": 3}}"#);
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .args(["reload", "-http-addr", &format!("127.0.0.1:{}", agent.port)])
        .output()
        .expect("run tribune reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Configuration reload triggered"
    );
    assert_eq!(service_ids(&agent), ["beta", "from-api", "gamma"]);
}

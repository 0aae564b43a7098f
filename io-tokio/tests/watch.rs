//! `tribune watch` and `tribune event` end to end against a real agent.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{wait_for, Agent};

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tribune-watch-{}-{name}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn cli(agent: &Agent, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg(args[0])
        .arg(format!("-http-addr={}", agent.http_addr()))
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(agent: &Agent, args: &[&str]) -> Output {
    cli(agent, args).output().expect("run tribune")
}

/// Kills the watch on drop so a failing test leaves nothing behind.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_watch(agent: &Agent, args: &[&str]) -> Watch {
    let mut all = vec!["watch"];
    all.extend_from_slice(args);
    Watch(
        cli(agent, &all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tribune watch"),
    )
}

/// A handler that appends `<CONSUL_INDEX> <stdin>` as one line to `log`.
fn recording_handler(log: &Path) -> String {
    format!(
        "input=$(cat); printf '%s %s\\n' \"$CONSUL_INDEX\" \"$input\" >> {0}",
        log.display()
    )
}

/// The recorded invocations: (index, JSON).
fn invocations(log: &Path) -> Vec<(u64, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (index, json) = line.split_once(' ').expect("index and JSON");
            let json = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
            (index.parse().expect("numeric CONSUL_INDEX"), json)
        })
        .collect()
}

fn wait_count(log: &Path, n: usize) -> Vec<(u64, Value)> {
    wait_for(
        Duration::from_secs(10),
        &format!("{n} handler runs"),
        || {
            let seen = invocations(log);
            (seen.len() >= n).then_some(seen)
        },
    )
}

fn keys(json: &Value) -> Vec<String> {
    json.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["Key"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn keyprefix_handler_runs_once_per_change_and_never_for_no_ops() {
    let agent = Agent::start();
    let dir = scratch("keyprefix");
    let log = dir.join("log");
    let _watch = spawn_watch(
        &agent,
        &["-type=keyprefix", "-prefix=cfg/", &recording_handler(&log)],
    );
    // First run at start: nothing there yet.
    let seen = wait_count(&log, 1);
    assert_eq!(seen[0].1, Value::Null);

    agent.put("/v1/kv/cfg/a", "1").expect(200);
    let seen = wait_count(&log, 2);
    assert_eq!(keys(&seen[1].1), ["cfg/a"]);
    assert!(seen[1].0 > 0, "CONSUL_INDEX is set");

    // No-ops: the same value again, and a write outside the prefix.
    agent.put("/v1/kv/cfg/a", "1").expect(200);
    agent.put("/v1/kv/other/x", "1").expect(200);
    agent.put("/v1/kv/cfg/b", "2").expect(200);
    let seen = wait_count(&log, 3);
    assert_eq!(keys(&seen[2].1), ["cfg/a", "cfg/b"]);

    agent.delete("/v1/kv/cfg/a").expect(200);
    let seen = wait_count(&log, 4);
    assert_eq!(keys(&seen[3].1), ["cfg/b"]);
    // Nothing more arrives.
    std::thread::sleep(Duration::from_millis(700));
    let seen = invocations(&log);
    assert_eq!(seen.len(), 4, "exactly one run per change: {seen:#?}");
    let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
}

#[test]
fn without_a_handler_the_result_is_printed_once() {
    let agent = Agent::start();
    agent.put("/v1/kv/feature/flag", "on").expect(200);
    let out = run(&agent, &["watch", "-type=key", "-key=feature/flag"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("{\n    \""),
        "indented like Consul: {text}"
    );
    let json: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["Key"], "feature/flag");
    assert_eq!(support::unb64(&json["Value"]), b"on");

    let out = run(&agent, &["watch", "-type=services"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(json.get("consul").is_some(), "{json}");

    let out = run(&agent, &["watch", "-type=key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Error: Must specify a single key to watch")
    );
    let out = run(&agent, &["watch", "-key=x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Watch type must be specified"));
    let out = run(
        &agent,
        &["watch", "-type=checks", "-service=a", "-state=any"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Cannot specify service and state"));
}

#[test]
fn service_watch_follows_registrations_and_health() {
    let agent = Agent::start();
    let dir = scratch("service");
    let log = dir.join("log");
    let _watch = spawn_watch(
        &agent,
        &[
            "-type=service",
            "-service=web",
            "-passingonly=true",
            &recording_handler(&log),
        ],
    );
    assert_eq!(wait_count(&log, 1)[0].1, serde_json::json!([]));
    agent
        .put_json(
            "/v1/agent/service/register",
            &serde_json::json!({"Name": "web", "Port": 80, "Check": {"TTL": "30s", "Status": "passing"}}),
        )
        .expect(200);
    let seen = wait_count(&log, 2);
    assert_eq!(seen[1].1[0]["Service"]["Service"], "web");
    agent
        .put("/v1/agent/check/fail/service:web", "")
        .expect(200);
    let seen = wait_count(&log, 3);
    assert_eq!(seen[2].1, serde_json::json!([]), "critical instance left");
}

#[test]
fn failing_and_hanging_handlers_do_not_stop_the_watch() {
    let agent = Agent::start();
    let dir = scratch("failing");
    let log = dir.join("log");
    // Records, then fails; hangs when the value is "hang".
    let handler = format!(
        "input=$(cat); echo \"$input\" >> {0}; case \"$input\" in *aGFuZw*) sleep 30;; esac; exit 3",
        log.display()
    );
    let _watch = spawn_watch(
        &agent,
        &["-type=key", "-key=k", "-handler-timeout=500ms", &handler],
    );
    let lines = |n: usize| {
        wait_for(Duration::from_secs(10), &format!("{n} runs"), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        })
    };
    lines(1);
    agent.put("/v1/kv/k", "hang").expect(200);
    lines(2);
    let started = Instant::now();
    agent.put("/v1/kv/k", "after").expect(200);
    let seen = lines(3);
    assert!(seen[2].contains("YWZ0ZXI="), "{seen:?}");
    eprintln!(
        "run after a hung handler came {:?} later",
        started.elapsed()
    );
}

#[test]
fn events_fire_list_and_reach_event_watches() {
    let agent = Agent::start();
    let dir = scratch("events");
    let log = dir.join("log");
    let _watch = spawn_watch(
        &agent,
        &["-type=event", "-name=deploy", &recording_handler(&log)],
    );
    assert_eq!(wait_count(&log, 1)[0].1, serde_json::json!([]));
    let out = run(&agent, &["event", "-name=deploy", "v1.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text
        .trim()
        .strip_prefix("Event ID: ")
        .expect("Event ID line")
        .to_string();
    let seen = wait_count(&log, 2);
    assert_eq!(seen[1].1[0]["ID"], id.as_str());
    assert_eq!(support::unb64(&seen[1].1[0]["Payload"]), b"v1.2");
    // Another name does not reach this watch; a second deploy arrives alone.
    run(&agent, &["event", "-name=other"]);
    run(&agent, &["event", "-name=deploy", "v1.3"]);
    let seen = wait_count(&log, 3);
    let events = seen[2].1.as_array().expect("array");
    assert_eq!(events.len(), 1, "only the new event: {events:?}");
    assert_eq!(support::unb64(&events[0]["Payload"]), b"v1.3");

    let list = agent.get("/v1/event/list").expect(200);
    assert_eq!(list.json().as_array().map(Vec::len), Some(3));
    let index = list.index();
    // Blocking on the current index returns when the next event fires.
    let client = agent.client();
    let waiter =
        std::thread::spawn(move || client.get(&format!("/v1/event/list?index={index}&wait=10s")));
    std::thread::sleep(Duration::from_millis(200));
    agent.put("/v1/event/fire/late", "").expect(200);
    let woke = waiter.join().expect("waiter");
    assert_eq!(woke.json().as_array().map(Vec::len), Some(4));
    assert_ne!(woke.index(), index);

    let resp = agent.put("/v1/event/fire/big", vec![b'x'; 600]);
    assert_eq!(resp.status, 500);
    assert!(resp
        .text()
        .contains("exceeds configured limit of 512 bytes"));
    assert_eq!(agent.put("/v1/event/fire/x?tag=a", "").status, 500);
    let out = run(&agent, &["event"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Event name must be specified"));
}

/// A one-shot HTTP server that records each request (head and body).
fn recording_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (sender, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if sender
                .send(String::from_utf8_lossy(&data).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (port, requests)
}

#[test]
fn agent_config_watches_run_script_and_http_handlers() {
    let dir = scratch("config");
    let log = dir.join("log");
    let (port, requests) = recording_server();
    let config = serde_json::json!({
        "watches": [
            {"type": "key", "key": "cfg/x", "args": ["sh", "-c", recording_handler(&log)]},
            {"type": "keyprefix", "prefix": "cfg/", "handler_type": "http",
             "http_handler_config": {"path": format!("http://127.0.0.1:{port}/hook"),
                                     "method": "PUT", "header": {"X-Token": ["s3cr3t"]}}}
        ]
    });
    let file = dir.join("watches.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    let agent = Agent::start_with(&["-config-file", file.to_str().expect("utf-8 path")]);
    assert_eq!(wait_count(&log, 1)[0].1, Value::Null);
    let first = requests
        .recv_timeout(Duration::from_secs(10))
        .expect("initial HTTP handler call");
    assert!(first.starts_with("PUT /hook HTTP/1.1"), "{first}");
    assert!(first.contains("X-Token: s3cr3t"), "{first}");
    assert!(first.contains("X-Consul-Index: "), "{first}");
    assert!(first.ends_with("\r\n\r\nnull"), "{first}");

    agent.put("/v1/kv/cfg/x", "v").expect(200);
    let seen = wait_count(&log, 2);
    assert_eq!(seen[1].1["Key"], "cfg/x");
    let second = requests
        .recv_timeout(Duration::from_secs(10))
        .expect("HTTP handler call after the write");
    let body = second.split("\r\n\r\n").nth(1).expect("body");
    let json: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(json[0]["Key"], "cfg/x");

    // A bad watch fails startup, naming the file and the entry.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"watches":[{"type":"key","args":["true"]}]}"#).expect("write");
    let out = Command::new(BIN)
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.contains("bad.json: watches[0]: Must specify a single key to watch"),
        "{text}"
    );
}

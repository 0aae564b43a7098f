//! `tribune lock` end to end: real agent, real `tribune lock` processes,
//! real children writing to a shared file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{wait_for, Agent};

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tribune-lock-{}-{name}-{}",
        std::process::id(),
        support::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn lock_command(agent: &Agent, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("lock")
        .arg(format!("-http-addr={}", agent.http_addr()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn_lock(agent: &Agent, args: &[&str]) -> Child {
    lock_command(agent, args)
        .spawn()
        .expect("spawn tribune lock")
}

fn run_lock(agent: &Agent, args: &[&str]) -> Output {
    lock_command(agent, args)
        .output()
        .expect("run tribune lock")
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits for a `tribune lock` process to exit, killing it after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tribune lock did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a `tribune lock` the polite way (SIGTERM), so it stops its child's
/// process group and releases, then reaps it. SIGKILL would orphan the child.
fn stop_lock(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    wait_exit(child, Duration::from_secs(15));
}

fn lock_session(agent: &Agent, key: &str) -> Option<String> {
    let resp = agent.get(&format!("/v1/kv/{key}"));
    if resp.status != 200 {
        return None;
    }
    resp.json()[0]["Session"].as_str().map(str::to_string)
}

#[test]
fn contenders_never_overlap_and_fencing_tokens_increase() {
    let agent = Agent::start();
    let dir = scratch("mutex");
    let log = dir.join("log");
    let script = format!(
        "echo start $TRIBUNE_LOCK_INDEX $CONSUL_LOCK_HELD >> {0}; sleep 0.2; echo stop $TRIBUNE_LOCK_INDEX >> {0}",
        log.display()
    );
    // Three contenders, each taking the lock three times in a row.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let addr = agent.http_addr();
            let script = script.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let out = Command::new(BIN)
                        .args(["lock", &format!("-http-addr={addr}"), "-lock-delay=0s"])
                        .args(["locks/mw", &script])
                        .output()
                        .expect("run tribune lock");
                    assert!(out.status.success(), "lock failed: {}", stderr(&out));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker thread");
    }
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 18, "nine holds, start+stop each: {lines:#?}");
    let mut last_token = 0u64;
    for pair in lines.chunks(2) {
        let start: Vec<&str> = pair[0].split(' ').collect();
        let stop: Vec<&str> = pair[1].split(' ').collect();
        assert_eq!(start[0], "start", "holds must not interleave: {lines:#?}");
        assert_eq!(start[2], "true", "CONSUL_LOCK_HELD set");
        assert_eq!(stop[0], "stop", "holds must not interleave: {lines:#?}");
        assert_eq!(start[1], stop[1], "one holder from start to stop");
        let token: u64 = start[1].parse().expect("numeric fencing token");
        assert!(token > last_token, "tokens strictly increase: {lines:#?}");
        last_token = token;
    }
    // Everyone is gone: the lock key was cleaned up, no session remains.
    assert_eq!(agent.get("/v1/kv/locks/mw/.lock").status, 404);
    assert_eq!(agent.get("/v1/session/list").json(), serde_json::json!([]));
}

#[test]
fn destroyed_session_terminates_child_and_standby_takes_over() {
    let agent = Agent::start();
    let dir = scratch("handover");
    let log = dir.join("log");
    let child = |name: &str| {
        format!(
            "trap 'echo term {name} >> {0}; exit 0' TERM; echo start {name} $TRIBUNE_LOCK_INDEX >> {0}; while true; do sleep 0.05; done",
            log.display()
        )
    };
    let mut holder = spawn_lock(&agent, &["-lock-delay=0s", "svc/leader", &child("a")]);
    wait_for(Duration::from_secs(10), "holder child", || {
        read_lines(&log)
            .iter()
            .any(|l| l.starts_with("start a"))
            .then_some(())
    });
    let mut standby = spawn_lock(&agent, &["-lock-delay=0s", "svc/leader", &child("b")]);
    // Give the standby time to start blocking on the key.
    std::thread::sleep(Duration::from_millis(300));
    let session = lock_session(&agent, "svc/leader/.lock").expect("lock held");
    let destroyed = Instant::now();
    agent
        .put(&format!("/v1/session/destroy/{session}"), "")
        .expect(200);
    wait_for(Duration::from_secs(10), "standby child", || {
        read_lines(&log)
            .iter()
            .any(|l| l.starts_with("start b"))
            .then_some(())
    });
    let handover = destroyed.elapsed();
    eprintln!("lock handover after session destroy: {handover:?}");
    let status = wait_exit(&mut holder, Duration::from_secs(15));
    assert!(status.success(), "lock lost is a clean exit, as in Consul");
    let lines = read_lines(&log);
    assert!(
        lines.contains(&"term a".to_string()),
        "holder child got SIGTERM: {lines:?}"
    );
    let token = |who: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("start {who} ")))
            .and_then(|t| t.parse().ok())
            .expect("token")
    };
    assert!(token("b") > token("a"), "new holder has a larger token");
    // The standby holds it now; stopping it with SIGTERM releases it.
    let pid = nix::unistd::Pid::from_raw(standby.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = wait_exit(&mut standby, Duration::from_secs(15));
    assert!(status.success());
    assert!(read_lines(&log).contains(&"term b".to_string()));
    assert_eq!(agent.get("/v1/kv/svc/leader/.lock").status, 404);
}

#[test]
fn child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let agent = Agent::start();
    let dir = scratch("grace");
    let marker = dir.join("started");
    let script = format!(
        "trap '' TERM; touch {}; while true; do sleep 0.05; done",
        marker.display()
    );
    let mut holder = spawn_lock(&agent, &["-shell=false", "stubborn", "sh", "-c", &script]);
    wait_for(Duration::from_secs(10), "child start", || {
        marker.exists().then_some(())
    });
    let session = lock_session(&agent, "stubborn/.lock").expect("lock held");
    let destroyed = Instant::now();
    agent
        .put(&format!("/v1/session/destroy/{session}"), "")
        .expect(200);
    let status = wait_exit(&mut holder, Duration::from_secs(30));
    let took = destroyed.elapsed();
    eprintln!("session destroy to child killed and lock released: {took:?}");
    assert!(status.success());
    assert!(
        took >= Duration::from_secs(5),
        "SIGKILL must wait for the 5 s grace, came after {took:?}"
    );
}

#[test]
fn semaphore_of_two_runs_two_children_at_a_time() {
    let agent = Agent::start();
    let dir = scratch("semaphore");
    let log = dir.join("log");
    let script = format!(
        "echo start $TRIBUNE_LOCK_INDEX >> {0}; sleep 0.6; echo stop >> {0}",
        log.display()
    );
    let mut contenders: Vec<Child> = (0..4)
        .map(|_| spawn_lock(&agent, &["-n=2", "pool/db", &script]))
        .collect();
    for contender in &mut contenders {
        let status = wait_exit(contender, Duration::from_secs(60));
        assert!(status.success());
    }
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 8, "{lines:#?}");
    let mut running = 0i32;
    let mut most = 0;
    for line in &lines {
        running += if line.starts_with("start") { 1 } else { -1 };
        most = most.max(running);
        assert!(running <= 2, "never more than two holders: {lines:#?}");
    }
    assert_eq!(most, 2, "two slots are used together: {lines:#?}");
    // Cleanup removed the coordination key and every contender key.
    assert_eq!(agent.get("/v1/kv/pool/db/?recurse").status, 404);
}

#[test]
fn foreign_data_and_limit_conflicts_are_refused_untouched() {
    let agent = Agent::start();
    agent
        .put("/v1/kv/app/.lock?flags=7", "precious")
        .expect(200);
    let out = run_lock(&agent, &["app", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Lock acquisition failed: Existing key does not match lock use"),
        "{}",
        stderr(&out)
    );
    let entry = support::kv_entry(&agent, "app/.lock");
    assert_eq!(support::unb64(&entry["Value"]), b"precious");
    assert_eq!(support::uint(&entry, "Flags"), 7);

    let semaphore_flags = tribune_core::coord::SEMAPHORE_FLAG_VALUE;
    agent
        .put(
            &format!("/v1/kv/sem/.lock?flags={semaphore_flags}"),
            "{not json",
        )
        .expect(200);
    let out = run_lock(&agent, &["-n=3", "sem", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("lock decoding failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        support::unb64(&support::kv_entry(&agent, "sem/.lock")["Value"]),
        b"{not json"
    );

    // A -n=2 holder, then a -n=3 contender: the limits must agree.
    let dir = scratch("limits");
    let marker = dir.join("held");
    let mut holder = spawn_lock(
        &agent,
        &[
            "-n=2",
            "pool",
            &format!("touch {}; sleep 30", marker.display()),
        ],
    );
    wait_for(Duration::from_secs(10), "holder", || {
        marker.exists().then_some(())
    });
    let out = run_lock(&agent, &["-n=3", "pool", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("semaphore limit conflict (lock: 2, local: 3)"),
        "{}",
        stderr(&out)
    );
    stop_lock(&mut holder);
}

#[test]
fn exit_codes_timeout_and_status() {
    let agent = Agent::start();
    assert_eq!(
        run_lock(&agent, &["codes", "exit 3"]).status.code(),
        Some(0)
    );
    let out = run_lock(&agent, &["-child-exit-code", "codes", "exit 3"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        run_lock(&agent, &["-child-exit-code", "codes", "true"])
            .status
            .code(),
        Some(0)
    );
    let out = run_lock(&agent, &["-n=0", "codes", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Lock holder limit must be positive"));
    let out = run_lock(&agent, &["onlyprefix"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Key prefix and child command must be specified"));

    let dir = scratch("timeout");
    let marker = dir.join("held");
    let mut holder = spawn_lock(
        &agent,
        &["busy", &format!("touch {}; sleep 30", marker.display())],
    );
    wait_for(Duration::from_secs(10), "holder", || {
        marker.exists().then_some(())
    });
    let out = run_lock(&agent, &["-timeout=500ms", "busy", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Shutdown triggered or timeout during lock acquisition"),
        "{}",
        stderr(&out)
    );
    let out = run_lock(&agent, &["-status", "busy"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let session = lock_session(&agent, "busy/.lock").expect("held");
    assert!(
        text.contains(&format!("Lock busy/.lock: held by session {session}")),
        "{text}"
    );
    stop_lock(&mut holder);
    let out = run_lock(&agent, &["-status", "nothing/here"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No lock or semaphore at nothing/here/.lock")
    );
}

#[test]
fn signals_are_forwarded_and_agent_loss_stops_the_child() {
    let mut agent = Agent::start();
    let dir = scratch("signals");
    let log = dir.join("log");
    let script = format!(
        "trap 'echo usr1 >> {0}' USR1; trap 'echo term >> {0}; exit 0' TERM; echo start >> {0}; while true; do sleep 0.05; done",
        log.display()
    );
    let mut holder = spawn_lock(&agent, &["-monitor-retry=1", "sig", &script]);
    wait_for(Duration::from_secs(10), "child", || {
        read_lines(&log)
            .contains(&"start".to_string())
            .then_some(())
    });
    let pid = nix::unistd::Pid::from_raw(holder.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).expect("signal");
    wait_for(Duration::from_secs(10), "forwarded USR1", || {
        read_lines(&log).contains(&"usr1".to_string()).then_some(())
    });
    // The agent dies: the lock cannot be confirmed, the child is stopped
    // and the release fails (exit 1).
    agent.kill();
    let status = wait_exit(&mut holder, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    assert!(read_lines(&log).contains(&"term".to_string()));
}

/// The npm `consul` client (0.40.0) has its own implementation of Consul's
/// lock recipe; installed by `.ci/run` into tests/compat/node_modules.
fn node_consul() -> Option<PathBuf> {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let installed = compat.join("node_modules/consul/lib/lock.js").exists();
    let node = Command::new("node").arg("--version").output().is_ok();
    match (installed && node, std::env::var_os("CI").is_some()) {
        (true, _) => Some(compat),
        (false, true) => {
            panic!("the npm consul client is missing: npm install --prefix io-tokio/tests/compat")
        }
        (false, false) => {
            eprintln!("SKIPPED: node or npm consul@0.40.0 not installed");
            None
        }
    }
}

#[test]
fn tribune_lock_and_the_npm_consul_lock_exclude_each_other() {
    let Some(compat) = node_consul() else {
        return;
    };
    let agent = Agent::start();
    let dir = scratch("node");
    let log = dir.join("log");
    let port = agent
        .http_addr()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut node = Command::new("node")
        .arg(compat.join("node_lock.js"))
        .args([&port, "shared/.lock", &log.display().to_string(), "4"])
        .env("NODE_PATH", compat.join("node_modules"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let script = format!(
        "echo start tribune >> {0}; sleep 0.2; echo stop tribune >> {0}",
        log.display()
    );
    for _ in 0..4 {
        let out = run_lock(&agent, &["-lock-delay=0s", "shared", &script]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let status = wait_exit(&mut node, Duration::from_secs(60));
    let mut node_err = String::new();
    if let Some(mut err) = node.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut node_err);
    }
    assert!(status.success(), "node lock client failed: {node_err}");
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 16, "{lines:#?}");
    for pair in lines.chunks(2) {
        let holder = pair[0].strip_prefix("start ").expect("a start line");
        assert_eq!(
            pair[1].strip_prefix("stop ").map(|s| s.split(' ').next()),
            Some(holder.split(' ').next()),
            "holds interleave: {lines:#?}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("start node")));
    assert!(lines.iter().any(|l| l.starts_with("start tribune")));
}

#[test]
fn lock_delay_after_invalidation_is_honoured() {
    let agent = Agent::start();
    let dir = scratch("delay");
    let log = dir.join("log");
    let child = |name: &str| {
        format!(
            "echo start {name} >> {0}; while true; do sleep 0.05; done",
            log.display()
        )
    };
    let mut holder = spawn_lock(&agent, &["-lock-delay=2s", "delayed", &child("a")]);
    wait_for(Duration::from_secs(10), "holder child", || {
        read_lines(&log)
            .iter()
            .any(|l| l == "start a")
            .then_some(())
    });
    let session = lock_session(&agent, "delayed/.lock").expect("lock held");
    let destroyed = Instant::now();
    agent
        .put(&format!("/v1/session/destroy/{session}"), "")
        .expect(200);
    // A contender arriving during the delay is refused and retries.
    let mut standby = spawn_lock(&agent, &["delayed", &child("b")]);
    wait_for(Duration::from_secs(20), "standby after the delay", || {
        read_lines(&log)
            .iter()
            .any(|l| l == "start b")
            .then_some(())
    });
    let took = destroyed.elapsed();
    eprintln!("acquired {took:?} after invalidation with a 2 s lock-delay");
    assert!(
        took >= Duration::from_secs(2),
        "acquired inside the lock-delay: {took:?}"
    );
    let _ = wait_exit(&mut holder, Duration::from_secs(15));
    stop_lock(&mut standby);
}

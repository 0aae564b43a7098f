//! A real `serf agent` (HashiCorp serf, Debian's `serf` package) for the
//! gossip interop tests, and tribune's view of members through
//! `/v1/agent/members`.
//!
//! Without a `serf` binary [`serf_binary`] prints a notice and the test
//! passes, unless `CI` is set: then it fails, so CI cannot skip serf
//! tests silently.

use super::cluster::Cluster;
use super::{free_port, free_udp_tcp_port, wait_for, Client};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a join, or the view of a joined member, may take.
pub const JOIN_LIMIT: Duration = Duration::from_secs(20);

pub fn serf_binary() -> Option<&'static str> {
    let found = Command::new("serf")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return Some("serf");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the serf binary is missing (apt-get install serf)"
    );
    eprintln!("NOTICE: skipping: no `serf` binary on PATH (apt-get install serf)");
    None
}

/// A `serf agent` process; SIGKILLed on drop.
pub struct SerfAgent {
    child: Option<Child>,
    pub bind_port: u16,
    pub rpc_port: u16,
    log: PathBuf,
}

impl SerfAgent {
    pub fn start(bin: &str, node: &str) -> SerfAgent {
        SerfAgent::start_with(bin, node, &[])
    }

    /// Starts `serf agent` with `extra` flags (e.g. `-encrypt=KEY`).
    pub fn start_with(bin: &str, node: &str, extra: &[&str]) -> SerfAgent {
        let bind_port = free_udp_tcp_port(&[]);
        let rpc_port = free_port();
        let log = std::env::temp_dir().join(format!(
            "tribune-serf-{}-{bind_port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).expect("serf log");
        let child = Command::new(bin)
            .arg("agent")
            .arg(format!("-node={node}"))
            .arg(format!("-bind=127.0.0.1:{bind_port}"))
            .arg(format!("-rpc-addr=127.0.0.1:{rpc_port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn serf agent");
        let agent = SerfAgent {
            child: Some(child),
            bind_port,
            rpc_port,
            log,
        };
        wait_for(JOIN_LIMIT, "serf's RPC to answer", || {
            agent.run(&["members"]).status.success().then_some(())
        });
        agent
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.bind_port)
    }

    /// `serf <command> -rpc-addr=... <rest>` (Go's flags come before
    /// positional arguments).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("serf")
            .arg(args[0])
            .arg(format!("-rpc-addr=127.0.0.1:{}", self.rpc_port))
            .args(&args[1..])
            .output()
            .expect("run serf")
    }

    /// `serf members -format=json`: name → (status, tags).
    pub fn members(&self) -> Vec<(String, String, Value)> {
        let out = self.run(&["members", "-format=json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap_or("").to_string(),
                            m["status"].as_str().unwrap_or("").to_string(),
                            m["tags"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn status_of(&self, name: &str) -> Option<(String, Value)> {
        self.members()
            .into_iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, t)| (s, t))
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SerfAgent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- serf agent log ----\n{}", self.log_contents());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `/v1/agent/members` as name → (Status, member).
pub fn tribune_member(client: &Client, name: &str) -> Option<Value> {
    let resp = client
        .try_request("GET", "/v1/agent/members", None, &[])
        .ok()?;
    if resp.status != 200 {
        return None;
    }
    resp.json()
        .as_array()?
        .iter()
        .find(|m| m["Name"] == name)
        .cloned()
}

pub fn tribune_status(client: &Client, name: &str) -> Option<u64> {
    tribune_member(client, name).and_then(|m| m["Status"].as_u64())
}

/// memberlist's LAN profile detects a failure in a few seconds (1 s
/// probes, suspicion of at least 4 × log10(n) probe intervals, at most six
/// times that); `Config::lan().detection_bound(2)` is about 25 s. Allow
/// more for loaded CI machines.
pub const FAILURE_LIMIT: Duration = Duration::from_secs(40);

/// Both sides see each other alive, with tribune's Consul tags on serf's
/// side and serf's versions on tribune's.
pub fn assert_mutually_alive(cluster: &Cluster, serf: &SerfAgent) {
    let server = &cluster.servers[0];
    let member = wait_for(JOIN_LIMIT, "tribune to list serfnode alive", || {
        tribune_member(&server.client, "serfnode").filter(|m| m["Status"] == 1)
    });
    assert_eq!(member["Addr"], "127.0.0.1");
    assert_eq!(member["Port"], serf.bind_port);
    assert_eq!(member["ProtocolMax"], 5);
    let (_, tags) = wait_for(JOIN_LIMIT, "serf to list the tribune server alive", || {
        serf.status_of(&server.name).filter(|(s, _)| s == "alive")
    });
    assert_eq!(tags["role"], "consul", "tags: {tags}");
    assert_eq!(tags["dc"], "dc1");
    assert_eq!(tags["port"], server.rpc_port.to_string());
    assert!(
        tags["id"].as_str().is_some_and(|id| id.len() == 36),
        "{tags}"
    );
}

/// Both directions of failure detection: serf's SIGKILL is seen by
/// tribune, then tribune's by the serf agent. `watcher_flags` start the
/// second serf agent that stays to watch tribune fail (its `-encrypt`).
pub fn assert_failures_detected(
    cluster: &mut Cluster,
    serf: &mut SerfAgent,
    watcher_flags: &[&str],
) {
    let watcher = SerfAgent::start_with("serf", "watcher", watcher_flags);
    let out = watcher.run(&[
        "join",
        &format!("127.0.0.1:{}", cluster.servers[0].lan_port),
    ]);
    assert!(out.status.success(), "{out:?}");
    wait_for(JOIN_LIMIT, "the watcher to see the tribune server", || {
        watcher
            .status_of(&cluster.servers[0].name)
            .filter(|(s, _)| s == "alive")
    });

    serf.kill();
    let client = cluster.servers[0].client.clone();
    wait_for(FAILURE_LIMIT, "tribune to mark serfnode failed", || {
        (tribune_status(&client, "serfnode") == Some(4)).then_some(())
    });

    let name = cluster.servers[0].name.clone();
    cluster.servers[0].kill();
    wait_for(
        FAILURE_LIMIT,
        "serf to mark the tribune server failed",
        || watcher.status_of(&name).filter(|(s, _)| s == "failed"),
    );
}

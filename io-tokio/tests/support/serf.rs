//! A real `serf agent` (HashiCorp serf, Debian's `serf` package) on
//! loopback, driven through its CLI and RPC port; SIGKILLed on drop.

use super::{free_port, free_udp_tcp_port, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a started serf agent gets to answer on its RPC port.
const START_LIMIT: Duration = Duration::from_secs(20);

/// `serf` when the binary is on PATH; `None` (the test should pass with a
/// notice) when it is not, unless `CI` is set: then this fails, so CI
/// cannot skip serf tests silently.
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

    /// Starts `serf agent` with `extra` arguments (event handlers, ...).
    pub fn start_with(bin: &str, node: &str, extra: &[String]) -> SerfAgent {
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
        wait_for(START_LIMIT, "serf's RPC to answer", || {
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

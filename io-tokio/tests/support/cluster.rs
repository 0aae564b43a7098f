//! Multi-process Raft clusters on loopback: each server is a real
//! `tribune agent -server` process with its own `-data-dir`, killed with
//! SIGKILL, paused with SIGSTOP and restarted from its disk.

use super::{free_port, free_udp_tcp_port, wait_for, Client, Resp};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a cluster gets to elect a leader that every server agrees on.
pub const ELECTION_LIMIT: Duration = Duration::from_secs(30);

pub struct Server {
    pub name: String,
    pub client: Client,
    pub rpc_port: u16,
    pub lan_port: u16,
    /// A server's WAN port.
    pub wan_port: Option<u16>,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    /// How the process ended, once [`Server::exited`] saw it end.
    status: Option<std::process::ExitStatus>,
}

impl Server {
    /// Starts server number `i` (named `s{i+1}`) under `dir` on `(http,
    /// rpc, lan)` ports, retry-joining `join_lan`, with `flags` added.
    fn start(
        dir: &std::path::Path,
        i: usize,
        (http, rpc, lan, wan): (u16, u16, u16, u16),
        join_lan: Option<u16>,
        flags: Vec<String>,
    ) -> Server {
        let name = format!("s{}", i + 1);
        let mut all = vec!["-server".to_string(), format!("-serf-wan-port={wan}")];
        all.extend(flags);
        let mut server = Server::start_agent(dir, name, (http, rpc, lan), join_lan, all);
        server.wan_port = Some(wan);
        server
    }

    /// Starts an agent named `name` (a client unless `flags` has
    /// `-server`).
    fn start_agent(
        dir: &std::path::Path,
        name: String,
        (http, rpc, lan): (u16, u16, u16),
        join_lan: Option<u16>,
        flags: Vec<String>,
    ) -> Server {
        let data_dir = dir.join(&name);
        let mut args = vec![
            format!("-node={name}"),
            format!("-data-dir={}", data_dir.display()),
            format!("-http-port={http}"),
            "-dns-port=-1".to_string(),
            format!("-server-port={rpc}"),
            format!("-serf-lan-port={lan}"),
        ];
        args.extend(join_lan.map(|port| format!("-retry-join=127.0.0.1:{port}")));
        args.extend(flags);
        let mut server = Server {
            log: dir.join(format!("{name}.log")),
            name,
            client: Client { port: http },
            rpc_port: rpc,
            lan_port: lan,
            wan_port: None,
            data_dir,
            child: None,
            args,
            status: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let child = Command::new(env!("CARGO_BIN_EXE_tribune"))
            .arg("agent")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("spawn tribune agent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("server running").id() as i32
    }

    /// The process ended on its own (reaped here).
    pub fn exited(&mut self) -> bool {
        let done = match self.child.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    true
                }
                _ => false,
            },
            None => true,
        };
        if done {
            self.child = None;
        }
        done
    }

    /// The exit code of a process that ended on its own.
    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn();
    }

    /// SIGSTOP, returning once every thread of the process has stopped:
    /// `kill` only queues the signal, and a thread that is running keeps
    /// serving requests for a moment (a read just after `kill` was once
    /// confirmed by a "stopped" follower).
    pub fn stop_signal(&self) {
        let pid = self.pid();
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        wait_for(Duration::from_secs(10), "every thread stopped", || {
            all_threads_stopped(pid).then_some(())
        });
    }

    pub fn cont_signal(&self) {
        signal(self.pid(), nix::sys::signal::Signal::SIGCONT);
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// What this server says `/v1/status/leader` is ("" when none).
    pub fn leader(&self) -> Option<String> {
        let resp = self
            .client
            .try_request("GET", "/v1/status/leader", None, &[])
            .ok()?;
        if resp.status != 200 {
            return None;
        }
        resp.json().as_str().map(str::to_string)
    }
}

/// Every thread of `pid` is in state `T` (stopped) in `/proc`.
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("T")
    })
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

pub struct Cluster {
    pub servers: Vec<Server>,
    /// Client agents (named `c1`, `c2`, ...), joined through the first
    /// server's LAN address.
    pub clients: Vec<Server>,
    _dir: TempDir,
    /// One cluster at a time per test binary: each is 3–5 processes with
    /// sub-second Raft timers, and several at once on two cores starve
    /// each other into elections the tests did not ask for.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Cluster {
    /// Starts `n` servers with `-bootstrap-expect=n`, each retry-joining
    /// the first, plus `extra` agent arguments for all.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "tribune-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        Cluster::start_in(dir, n, extra)
    }

    /// Like [`Cluster::start`], with the servers' data directories (and
    /// logs) under `dir`, which is emptied when the cluster is dropped.
    pub fn start_in(dir: PathBuf, n: usize, extra: &[&str]) -> Cluster {
        // A test that panicked released it; the guarded state is nothing.
        let serial = ONE_CLUSTER_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        let mut servers: Vec<Server> = Vec::new();
        // Distinct ports; the LAN port serves gossip on UDP as well.
        let mut taken: Vec<u16> = Vec::new();
        let mut port = |udp_too: bool| loop {
            let p = if udp_too {
                free_udp_tcp_port(&taken)
            } else {
                free_port()
            };
            if !taken.contains(&p) {
                taken.push(p);
                return p;
            }
        };
        let ports: Vec<(u16, u16, u16, u16)> = (0..n)
            .map(|_| (port(false), port(false), port(true), port(true)))
            .collect();
        let first_lan = ports[0].2;
        for (i, ports) in ports.into_iter().enumerate() {
            let mut flags = vec![format!("-bootstrap-expect={n}")];
            flags.extend(extra.iter().map(|s| s.to_string()));
            servers.push(Server::start(&dir, i, ports, Some(first_lan), flags));
        }
        Cluster {
            servers,
            clients: Vec::new(),
            _dir: TempDir(dir),
            _serial: serial,
        }
    }

    /// Starts one more server that joins through the first server's LAN
    /// address, without `-bootstrap-expect`; returns its index.
    pub fn add_server(&mut self) -> usize {
        let first_lan = self.servers[0].lan_port;
        self.add_server_joining(first_lan)
    }

    /// Starts one more server that retry-joins the agent at LAN port
    /// `join_lan` (a client's, say), without `-bootstrap-expect`.
    pub fn add_server_joining(&mut self, join_lan: u16) -> usize {
        self.add_server_with(Some(join_lan), Vec::new())
    }

    /// Starts one more server with `flags`, retry-joining `join_lan` if
    /// given; returns its index.
    pub fn add_server_with(&mut self, join_lan: Option<u16>, flags: Vec<String>) -> usize {
        let dir = self.servers[0]
            .data_dir
            .parent()
            .expect("cluster dir")
            .to_path_buf();
        let i = self.servers.len();
        let mut taken = self.taken_ports();
        let (http, rpc) = (free_port(), free_port());
        taken.extend([http, rpc]);
        let lan = free_udp_tcp_port(&taken);
        taken.push(lan);
        let wan = free_udp_tcp_port(&taken);
        self.servers.push(Server::start(
            &dir,
            i,
            (http, rpc, lan, wan),
            join_lan,
            flags,
        ));
        i
    }

    fn taken_ports(&self) -> Vec<u16> {
        let mut taken: Vec<u16> = Vec::new();
        for agent in self.agents() {
            taken.extend([agent.client.port, agent.rpc_port, agent.lan_port]);
            taken.extend(agent.wan_port);
        }
        taken
    }

    /// Starts a client agent that retry-joins the first server's LAN
    /// address; returns its index in `clients`.
    pub fn add_client(&mut self) -> usize {
        self.add_client_with(Vec::new())
    }

    /// [`Cluster::add_client`] with more agent flags.
    pub fn add_client_with(&mut self, flags: Vec<String>) -> usize {
        let dir = self.servers[0]
            .data_dir
            .parent()
            .expect("cluster dir")
            .to_path_buf();
        let i = self.clients.len();
        let mut taken = self.taken_ports();
        let http = free_port();
        taken.push(http);
        let lan = free_udp_tcp_port(&taken);
        let first_lan = self.servers[0].lan_port;
        self.clients.push(Server::start_agent(
            &dir,
            format!("c{}", i + 1),
            // A client serves no RPC; the flag only has to parse.
            (http, 0, lan),
            Some(first_lan),
            flags,
        ));
        i
    }

    /// Every agent, servers first.
    pub fn agents(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().chain(&self.clients)
    }

    /// Waits until every running server names the same leader, and returns
    /// the leader's index in `servers`.
    #[track_caller]
    pub fn leader(&self) -> usize {
        wait_for(ELECTION_LIMIT, "an agreed leader", || {
            let running: Vec<&Server> = self.servers.iter().filter(|s| s.running()).collect();
            let first = running.first()?.leader().filter(|l| !l.is_empty())?;
            if !running
                .iter()
                .all(|s| s.leader().as_deref() == Some(first.as_str()))
            {
                return None;
            }
            self.servers.iter().position(|s| s.rpc_addr() == first)
        })
    }

    /// A running server other than `not`.
    pub fn other_than(&self, not: usize) -> usize {
        (0..self.servers.len())
            .find(|&i| i != not && self.servers[i].running())
            .expect("another running server")
    }

    pub fn dump_logs(&self) {
        for server in self.agents() {
            eprintln!("---- {} ----\n{}", server.name, server.log_contents());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for server in self.servers.iter_mut().chain(self.clients.iter_mut()) {
            if server.running() {
                server.cont_signal();
            }
            server.kill();
        }
    }
}

/// PUT `value` at `key` through `client`; `true` when acknowledged.
pub fn try_put(client: &Client, key: &str, value: &str) -> Option<Resp> {
    client
        .try_request("PUT", &format!("/v1/kv/{key}"), Some(value.as_bytes()), &[])
        .ok()
}

//! Shared support for the HTTP API integration tests: an [`Agent`] guard
//! that starts `tribune agent -dev` on free HTTP and DNS ports and kills it
//! on drop, and
//! a tiny blocking HTTP/1.1 client over `std::net` (one connection per
//! request, `Connection: close`) so tests control every byte they send.
//!
//! Each test function starts its own agent, so tests are independent and
//! run in parallel.

#![allow(dead_code)]

pub mod cluster;
pub mod dig;
pub mod serf;

use base64::Engine;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the agent gets to answer `GET /v1/status/leader`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// No request in these tests should take longer (blocking queries use at
/// most `wait=5s`).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running dev agent; killed and reaped on drop. Derefs to its [`Client`].
pub struct Agent {
    child: Child,
    log: PathBuf,
    client: Client,
    /// The agent's node name (`Config.NodeName` of `/v1/agent/self`).
    pub node: String,
    /// The port passed as `-dns-port` (free on UDP and TCP when probed).
    /// `start` does not wait for DNS: tests that use it wait themselves.
    pub dns_port: u16,
}

impl Agent {
    /// Starts `tribune agent -dev -http-port <free port> -dns-port <free
    /// port>` and waits until `GET /v1/status/leader` answers 200. Retries on
    /// other ports if a chosen one was taken between probing and binding.
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// Like [`Agent::start`] with extra `tribune agent` arguments.
    pub fn start_with(extra: &[&str]) -> Agent {
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let dns_port = free_udp_tcp_port(&[port]);
            let log =
                std::env::temp_dir().join(format!("tribune-it-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log).expect("create agent log file");
            let child = Command::new(env!("CARGO_BIN_EXE_tribune"))
                .args(["agent", "-dev", "-http-port", &port.to_string()])
                .args(["-dns-port", &dns_port.to_string()])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log file handle"))
                .stderr(log_file)
                .spawn()
                .expect("spawn tribune agent");
            let mut agent = Agent {
                child,
                log,
                client: Client { port },
                node: String::new(),
                dns_port,
            };
            if agent.wait_ready() {
                let me = agent.get("/v1/agent/self");
                assert_eq!(me.status, 200, "agent/self: {}", me.text());
                agent.node = me.json()["Config"]["NodeName"]
                    .as_str()
                    .expect("Config.NodeName is a string")
                    .to_string();
                assert!(!agent.node.is_empty());
                return agent;
            }
            last_log = agent.log_contents();
            // Dropping kills it; try another port.
        }
        panic!("tribune agent did not start; last log:\n{last_log}");
    }

    /// The agent's process ID (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A copy of the client, for use from other threads.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(resp) = self
                .client
                .try_request("GET", "/v1/status/leader", None, &[])
            {
                if resp.status == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Kills the agent now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The agent's HTTP address as `host:port`, for `-http-addr`.
    pub fn http_addr(&self) -> String {
        self.client.addr().to_string()
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }
}

impl std::ops::Deref for Agent {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- agent log (port {}) ----\n{}",
                self.client.port,
                self.log_contents()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A port free on 127.0.0.1 for both TCP and UDP at the time of the probe
/// (DNS serves both), and not one of `avoid`.
pub fn free_udp_tcp_port(avoid: &[u16]) -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local_addr").port();
        if avoid.contains(&port) {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both TCP and UDP after 100 probes");
}

/// A blocking HTTP/1.1 client for one agent.
#[derive(Clone, Debug)]
pub struct Client {
    pub port: u16,
}

impl Client {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Resp {
        self.request("PUT", path, Some(body.as_ref()))
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.put(path, body.to_string())
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None)
    }

    /// Sends one request; panics on I/O failure (with the agent's address).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        self.try_request(method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path} on port {}: {e}", self.port))
    }

    /// Like [`Client::request`] with extra header lines (`"Name: value"`).
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> Resp {
        self.try_request(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path} on port {}: {e}", self.port))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> std::io::Result<Resp> {
        self.raw(&self.message(method, path, body, headers))
    }

    /// [`Client::try_request`] with `timeout` for each read and write
    /// instead of 30 s.
    pub fn try_request_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> std::io::Result<Resp> {
        self.raw_within(&self.message(method, path, body, &[]), timeout)
    }

    /// An HTTP/1.1 request with `Connection: close`.
    fn message(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[&str]) -> Vec<u8> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if body.is_some() || method != "GET" {
            head.push_str(&format!(
                "Content-Length: {}\r\n",
                body.map_or(0, <[u8]>::len)
            ));
        }
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(body.unwrap_or_default());
        message
    }

    /// Writes `bytes` as they are and reads the response. The write happens
    /// on its own thread so a server that answers before reading the whole
    /// body (413) is read rather than deadlocked on.
    pub fn raw(&self, bytes: &[u8]) -> std::io::Result<Resp> {
        self.raw_within(bytes, IO_TIMEOUT)
    }

    /// [`Client::raw`] with `timeout` for each read and write.
    pub fn raw_within(&self, bytes: &[u8], timeout: Duration) -> std::io::Result<Resp> {
        let stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut writer = stream.try_clone()?;
        let message = bytes.to_vec();
        let write = std::thread::spawn(move || {
            // A server that refuses early may close before the body is
            // through: that is its answer, not a client error.
            let _ = writer.write_all(&message);
            let _ = writer.flush();
        });
        let mut reader = stream;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A reset after the full response arrived (unread request
                // body on the server side) still leaves a usable answer.
                Err(e) if e.kind() == ErrorKind::ConnectionReset && complete(&buf) => break,
                Err(e) => return Err(e),
            }
            if complete(&buf) {
                break;
            }
        }
        // Unblocks a writer still pushing a body the server will not read.
        let _ = reader.shutdown(std::net::Shutdown::Both);
        let _ = write.join();
        parse_response(&buf)
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Whether `buf` holds a whole response with a `Content-Length` body.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = head_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() >= end + len)
}

fn parse_response(buf: &[u8]) -> std::io::Result<Resp> {
    let bad = |why: &str| std::io::Error::new(ErrorKind::InvalidData, why.to_string());
    let end = head_end(buf).ok_or_else(|| bad("response has no complete head"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(bad("truncated body"));
        }
        body.truncate(len);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A whole HTTP response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}); status {}: {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts Consul's read headers (`X-Consul-Index` present, numeric and
    /// not 0; `X-Consul-KnownLeader: true`) and returns the index.
    pub fn index(&self) -> u64 {
        let raw = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index; headers {:?}", self.headers));
        let index: u64 = raw
            .parse()
            .unwrap_or_else(|_| panic!("X-Consul-Index {raw:?} is not numeric"));
        assert_ne!(index, 0, "X-Consul-Index must never be 0");
        assert_eq!(
            self.header("X-Consul-KnownLeader"),
            Some("true"),
            "X-Consul-KnownLeader; headers {:?}",
            self.headers
        );
        index
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body {:?}",
            self.text()
        );
        self
    }
}

/// Base64 as Consul puts KV values in JSON.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a KV `Value` field (`null` → empty).
pub fn unb64(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("Value {s:?} is not base64: {e}")),
        other => panic!("Value must be a base64 string or null, got {other}"),
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`.
#[track_caller]
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts a JSON value is an unsigned integer and returns it.
#[track_caller]
pub fn uint(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} must be an unsigned integer in {v}"))
}

/// Asserts a JSON value is a string and returns it.
#[track_caller]
pub fn string<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a string in {v}"))
}

/// Creates a session from `body`, returning its ID.
#[track_caller]
pub fn create_session(client: &Client, body: &Value) -> String {
    let resp = client.put_json("/v1/session/create", body).expect(200);
    let json = resp.json();
    let id = string(&json, "ID").to_string();
    assert_eq!(id.len(), 36, "session ID is a UUID: {id}");
    id
}

/// Reads one KV entry as JSON (asserting 200 and a one-element array).
#[track_caller]
pub fn kv_entry(client: &Client, key: &str) -> Value {
    let resp = client.get(&format!("/v1/kv/{key}")).expect(200);
    resp.index();
    let json = resp.json();
    let rows = json.as_array().expect("KV GET returns an array");
    assert_eq!(rows.len(), 1, "one entry for {key}: {json}");
    rows[0].clone()
}

/// Whether `python3 -c <statement>` succeeds (a third-party Python package
/// that a compatibility test drives is installed).
pub fn python_can(statement: &str) -> bool {
    Command::new("python3")
        .args(["-c", statement])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

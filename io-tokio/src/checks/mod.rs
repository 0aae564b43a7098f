//! Check runners: the shell half of health checks.
//!
//! core decides *when* a check runs and what its result means
//! (`tribune_core::checks`); this module only performs the probe it is
//! handed and reports `(status, output)` back through
//! [`Node::check_result`]. Each run is its own tokio task, so runs are
//! concurrent; core never hands out a second run of a check whose previous
//! run has not reported, so the channel below holds at most one request per
//! check (it is bounded by the agent's check limit).
//!
//! Outputs follow Consul's wording (`HTTP GET <url>: 200 OK Output: ...`,
//! `TCP connect <addr>: Success`, `gRPC check <target>: success`,
//! `Timed out (<timeout>) running check`). TLS (https URLs, gRPC with
//! `GRPCUseTLS`) is in [`tls`]; gRPC in [`grpc`] and its bytes in
//! [`grpc_wire`].

mod grpc;
pub mod grpc_wire;
mod tls;

use crate::state::Node;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tribune_core::catalog::CheckStatus;
use tribune_core::checks::{HttpProbe, Probe, RunRequest};
use tribune_core::limits::{
    CHECK_NETWORK_TIMEOUT_DEFAULT, CHECK_OUTPUT_BYTES_MAX, CHECK_SCRIPT_TIMEOUT_DEFAULT,
};
use tribune_core::time::{format_duration, Duration};

/// Runs every request that arrives, each on its own task.
pub async fn dispatch(node: Arc<Node>, mut requests: mpsc::UnboundedReceiver<RunRequest>) {
    while let Some(request) = requests.recv().await {
        let node = node.clone();
        tokio::spawn(async move {
            let (status, output) = run(&request).await;
            node.check_result(&request, status, output);
        });
    }
}

fn std_duration(d: Duration, default: Duration) -> StdDuration {
    let d = if d == Duration::ZERO { default } else { d };
    StdDuration::from_nanos(d.as_nanos())
}

/// Performs one probe.
pub async fn run(request: &RunRequest) -> (CheckStatus, String) {
    match &request.probe {
        Probe::Http(probe) => {
            let timeout = std_duration(request.timeout, CHECK_NETWORK_TIMEOUT_DEFAULT);
            http(probe, timeout).await
        }
        Probe::Grpc(probe) => {
            let timeout = std_duration(request.timeout, CHECK_NETWORK_TIMEOUT_DEFAULT);
            grpc::grpc(probe, timeout).await
        }
        Probe::Tcp { address } => {
            let timeout = std_duration(request.timeout, CHECK_NETWORK_TIMEOUT_DEFAULT);
            tcp(address, timeout).await
        }
        Probe::Script { args } => {
            let timeout = if request.timeout == Duration::ZERO {
                CHECK_SCRIPT_TIMEOUT_DEFAULT
            } else {
                request.timeout
            };
            script(args, timeout).await
        }
    }
}

// ---------------------------------------------------------------- TCP

/// A connect error as Go's net package words it (`connect: connection
/// refused`), which is what Consul users see in check outputs.
pub(crate) fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        _ => e.to_string(),
    }
}

async fn tcp(address: &str, timeout: StdDuration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => (
            CheckStatus::Passing,
            format!("TCP connect {address}: Success"),
        ),
        Ok(Err(e)) => (
            CheckStatus::Critical,
            format!("dial tcp {address}: {}", dial_error(&e)),
        ),
        Err(_) => (
            CheckStatus::Critical,
            format!("dial tcp {address}: i/o timeout"),
        ),
    }
}

// ---------------------------------------------------------------- HTTP

/// Go's `net/http` spelling of a method in errors (`Get "url": ...`).
fn go_method(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

async fn http(probe: &HttpProbe, timeout: StdDuration) -> (CheckStatus, String) {
    let failed = |why: String| {
        (
            CheckStatus::Critical,
            format!("{} {:?}: {why}", go_method(&probe.method), probe.url),
        )
    };
    let uri: hyper::Uri = match probe.url.parse() {
        Ok(uri) => uri,
        Err(e) => return failed(format!("invalid URL: {e}")),
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return failed("unsupported protocol scheme".into());
    }
    match tokio::time::timeout(timeout, http_exchange(probe, &uri)).await {
        Ok(Ok((code, reason, body))) => {
            let status = match code {
                200..=299 => CheckStatus::Passing,
                429 => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            let output = format!(
                "HTTP {} {}: {code} {reason} Output: {}",
                probe.method,
                probe.url,
                String::from_utf8_lossy(&body)
            );
            (status, output)
        }
        Ok(Err(why)) => failed(why),
        Err(_) => failed(format!(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers after {})",
            format_duration(Duration::from_nanos(timeout.as_nanos() as u64))
        )),
    }
}

/// One request on a fresh connection (Consul disables keep-alive for
/// checks); returns the status code, its reason and at most
/// [`CHECK_OUTPUT_BYTES_MAX`] bytes of body.
async fn http_exchange(
    probe: &HttpProbe,
    uri: &hyper::Uri,
) -> Result<(u16, String, Vec<u8>), String> {
    let host = uri.host().ok_or("missing host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {}", dial_error(&e)))?;
    let mut builder = hyper::Request::builder()
        .method(probe.method.as_str())
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .header(hyper::header::USER_AGENT, "Consul Health Check")
        .header(hyper::header::ACCEPT, "text/plain, text/*, */*")
        .header(hyper::header::CONNECTION, "close");
    for (name, values) in &probe.header {
        for value in values {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let request = builder
        .body(Full::new(Bytes::from(probe.body.clone())))
        .map_err(|e| e.to_string())?;
    let response = if https {
        let stream = tls::connect(stream, host, &probe.tls, tls::Alpn::Http1).await?;
        send_http1(TokioIo::new(stream), request).await?
    } else {
        send_http1(TokioIo::new(stream), request).await?
    };
    let code = response.status();
    let reason = code.canonical_reason().unwrap_or("").to_string();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < CHECK_OUTPUT_BYTES_MAX {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = CHECK_OUTPUT_BYTES_MAX - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    Ok((code.as_u16(), reason, kept))
}

/// One request on an HTTP/1.1 connection of its own.
async fn send_http1<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- scripts

/// Output captured so far, shared by the stdout and stderr readers so a
/// timed-out script still reports what it printed.
type Captured = Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads a pipe into `into`, keeping the first [`CHECK_OUTPUT_BYTES_MAX`]
/// bytes overall and draining the rest so the script never blocks on a
/// full pipe.
async fn capture(mut pipe: impl tokio::io::AsyncRead + Unpin, into: Captured) {
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut kept = into.lock().unwrap_or_else(|p| p.into_inner());
                let room = CHECK_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Runs `args` in its own process group; exit 0 passing, 1 warning, else
/// critical. The timeout covers the process and its output pipes (a
/// background child holding them open counts); on timeout the whole group
/// is killed, so a shell's children go too.
async fn script(args: &[String], timeout: Duration) -> (CheckStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (CheckStatus::Critical, "no command to run".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (CheckStatus::Critical, format!("Failed to invoke: {e}")),
    };
    let pgid = child.id();
    let captured = Captured::default();
    let readers = (
        tokio::spawn(capture(
            child.stdout.take().expect("stdout is piped"),
            captured.clone(),
        )),
        tokio::spawn(capture(
            child.stderr.take().expect("stderr is piped"),
            captured.clone(),
        )),
    );
    let finished = tokio::time::timeout(std_duration(timeout, timeout), async {
        let status = child.wait().await;
        let _ = readers.0.await;
        let _ = readers.1.await;
        status
    })
    .await;
    if finished.is_err() {
        if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait().await;
    }
    let output = {
        let kept = captured.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    };
    match finished {
        Err(_) => {
            let mut text = format!("Timed out ({}) running check", format_duration(timeout));
            if !output.is_empty() {
                text.push_str("\n\n");
                text.push_str(&output);
            }
            (CheckStatus::Critical, text)
        }
        Ok(Err(e)) => (CheckStatus::Critical, format!("Failed to wait: {e}")),
        Ok(Ok(status)) => {
            let status = match status.code() {
                Some(0) => CheckStatus::Passing,
                Some(1) => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            (status, output)
        }
    }
}

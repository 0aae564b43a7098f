//! gRPC and TLS health checks end to end: a real `tribune agent -dev` probes
//! a real gRPC health server (grpcio's `grpc.health.v1` servicer, run by
//! `tests/compat/grpc_health_server.py`) and an HTTPS server with a
//! self-signed certificate made here with rcgen.
//!
//! The gRPC tests need `python3` with the PyPI packages `grpcio` and
//! `grpcio-health-checking`. When they are missing: with `CI` set the tests
//! FAIL (CI installs them, see `.ci/run`); otherwise they print a SKIPPED
//! line and pass, so a plain local `cargo test` works without them.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, Agent};

/// Interval (1 s) plus a run and a catalog write, with room for a busy
/// machine.
const FLIP_BOUND: Duration = Duration::from_secs(5);
/// Startup and first runs (the first run is staggered within the interval).
const SETTLE: Duration = Duration::from_secs(15);

fn check(agent: &Agent, id: &str) -> Option<Value> {
    agent
        .get("/v1/agent/checks")
        .expect(200)
        .json()
        .get(id)
        .cloned()
}

#[track_caller]
fn wait_status(agent: &Agent, id: &str, status: &str, limit: Duration) -> Value {
    wait_for(limit, &format!("check {id} to be {status}"), || {
        check(agent, id).filter(|c| c["Status"] == status)
    })
}

fn passing_instances(agent: &Agent, service: &str) -> usize {
    let resp = agent
        .get(&format!("/v1/health/service/{service}?passing"))
        .expect(200);
    resp.json().as_array().expect("array").len()
}

fn output(check: &Value) -> &str {
    check["Output"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------- certificates

/// A self-signed certificate for `localhost` and 127.0.0.1, as DER and PEM.
struct SelfSigned {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

fn self_signed() -> SelfSigned {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).expect("generate certificate");
    SelfSigned {
        cert_der: certified.cert.der().to_vec(),
        key_der: certified.signing_key.serialize_der(),
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    }
}

// ---------------------------------------------------------------- gRPC server

fn grpcio_available() -> bool {
    support::python_can("import grpc, grpc_health.v1.health")
}

/// `true` when the gRPC tests can run; panics under CI when they cannot.
fn grpc_tests_can_run(test: &str) -> bool {
    if grpcio_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "grpcio is not installed (`python3 -c 'import grpc, grpc_health.v1.health'` failed) \
             and CI is set: run `pip install grpcio grpcio-health-checking` before the tests"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: grpcio not installed (pip install grpcio grpcio-health-checking) -- {test} did not run ***\n"
    );
    false
}

/// The Python health server; killed on drop.
struct GrpcServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl GrpcServer {
    /// Starts the server, over TLS with `tls = Some((cert_pem, key_pem))`.
    fn start(tls: Option<(&Path, &Path)>) -> GrpcServer {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/grpc_health_server.py");
        let mut command = Command::new("python3");
        command.arg(script);
        if let Some((cert, key)) = tls {
            command.arg("--tls").arg(cert).arg(key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start grpc_health_server.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read PORT line");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `PORT <n>`, got {line:?}"));
        GrpcServer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn set(&mut self, service: &str, status: &str) {
        writeln!(self.stdin, "SET {service} {status}").expect("write command");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read answer");
        assert_eq!(line.trim(), "OK", "server answered {line:?}");
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tribune-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// ---------------------------------------------------------------- tests

#[test]
fn grpc_check_follows_the_served_status() {
    if !grpc_tests_can_run("grpc_check_follows_the_served_status") {
        return;
    }
    let mut server = GrpcServer::start(None);
    server.set("grpcsvc", "SERVING");
    let agent = Agent::start();
    let target = format!("127.0.0.1:{}/grpcsvc", server.port);
    let body = json!({
        "Name": "grpcsvc", "Port": server.port,
        "Check": {"CheckID": "g", "GRPC": target, "Interval": "1s", "Timeout": "3s"},
    });
    agent
        .put_json("/v1/agent/service/register", &body)
        .expect(200);

    let passing = wait_status(&agent, "g", "passing", SETTLE);
    assert_eq!(output(&passing), format!("gRPC check {target}: success"));
    assert_eq!(passing["Type"], "grpc");
    assert_eq!(passing_instances(&agent, "grpcsvc"), 1);

    server.set("grpcsvc", "NOT_SERVING");
    let critical = wait_status(&agent, "g", "critical", FLIP_BOUND);
    assert_eq!(
        output(&critical),
        format!("gRPC {target} serving status: NOT_SERVING")
    );
    assert_eq!(passing_instances(&agent, "grpcsvc"), 0);

    server.set("grpcsvc", "SERVING");
    wait_status(&agent, "g", "passing", FLIP_BOUND);
    assert_eq!(passing_instances(&agent, "grpcsvc"), 1);

    // The whole server (no /service) and a service it does not know.
    server.set("\"\"", "SERVING");
    let whole = format!("127.0.0.1:{}", server.port);
    let unknown = format!("127.0.0.1:{}/nope", server.port);
    for (id, grpc) in [("whole", &whole), ("unknown", &unknown)] {
        let body = json!({"CheckID": id, "Name": id, "GRPC": grpc, "Interval": "1s"});
        agent
            .put_json("/v1/agent/check/register", &body)
            .expect(200);
    }
    wait_status(&agent, "whole", "passing", SETTLE);
    // Registered critical with no output; the first run fills it in.
    let unknown = wait_for(SETTLE, "unknown-service check to run", || {
        check(&agent, "unknown").filter(|c| !output(c).is_empty())
    });
    assert_eq!(unknown["Status"], "critical");
    assert!(
        output(&unknown).contains("rpc error: code = NotFound"),
        "{unknown}"
    );
}

#[test]
fn grpc_check_errors_are_critical() {
    // No server needed: a closed port, and an HTTP/1 server that is not gRPC.
    let agent = Agent::start();
    let closed = support::free_port();
    let http1 = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http1_port = http1.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in http1.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    for (id, port) in [("closed", closed), ("http1", http1_port)] {
        let target = format!("127.0.0.1:{port}");
        let body =
            json!({"CheckID": id, "Name": id, "GRPC": target, "Interval": "1s", "Timeout": "2s"});
        agent
            .put_json("/v1/agent/check/register", &body)
            .expect(200);
    }
    let closed = wait_for(SETTLE, "closed-port check to run", || {
        check(&agent, "closed").filter(|c| !output(c).is_empty())
    });
    assert_eq!(closed["Status"], "critical");
    assert!(
        output(&closed).contains("rpc error: code = Unavailable")
            && output(&closed).contains("connection refused"),
        "{closed}"
    );
    let http1 = wait_for(SETTLE, "HTTP/1 check to run", || {
        check(&agent, "http1").filter(|c| !output(c).is_empty())
    });
    assert_eq!(http1["Status"], "critical");
    assert!(output(&http1).starts_with("rpc error: code = "), "{http1}");
}

#[test]
fn grpc_over_tls_needs_verification_or_skip_verify() {
    if !grpc_tests_can_run("grpc_over_tls_needs_verification_or_skip_verify") {
        return;
    }
    let certificate = self_signed();
    let dir = temp_dir("grpc-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &certificate.cert_pem).expect("write cert");
    std::fs::write(&key, &certificate.key_pem).expect("write key");
    let mut server = GrpcServer::start(Some((&cert, &key)));
    server.set("\"\"", "SERVING");
    let agent = Agent::start();
    let target = format!("127.0.0.1:{}", server.port);
    for (id, skip) in [("tls-skip", true), ("tls-verify", false)] {
        let body = json!({
            "CheckID": id, "Name": id, "GRPC": target, "GRPCUseTLS": true,
            "TLSSkipVerify": skip, "TLSServerName": "localhost", "Interval": "1s",
        });
        agent
            .put_json("/v1/agent/check/register", &body)
            .expect(200);
    }
    let passing = wait_status(&agent, "tls-skip", "passing", SETTLE);
    assert_eq!(output(&passing), format!("gRPC check {target}: success"));
    let failing = wait_for(SETTLE, "verifying check to run", || {
        check(&agent, "tls-verify").filter(|c| !output(c).is_empty())
    });
    assert_eq!(failing["Status"], "critical");
    assert!(output(&failing).contains("certificate"), "{failing}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- https

/// An HTTPS server (rustls, blocking) answering 200 to every request.
fn https_server(certificate: &SelfSigned) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certificate.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certificate.key_der.clone())),
        )
        .expect("server certificate");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "secure";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[test]
fn https_check_passes_with_skip_verify_and_fails_verification() {
    let certificate = self_signed();
    let port = https_server(&certificate);
    let agent = Agent::start();
    let url = format!("https://127.0.0.1:{port}/health");
    for (id, skip) in [("https-skip", true), ("https-verify", false)] {
        let body = json!({
            "CheckID": id, "Name": id, "HTTP": url, "TLSSkipVerify": skip, "Interval": "1s",
        });
        agent
            .put_json("/v1/agent/check/register", &body)
            .expect(200);
    }
    let passing = wait_status(&agent, "https-skip", "passing", SETTLE);
    assert_eq!(
        output(&passing),
        format!("HTTP GET {url}: 200 OK Output: secure")
    );
    let failing = wait_for(SETTLE, "verifying check to run", || {
        check(&agent, "https-verify").filter(|c| !output(c).is_empty())
    });
    assert_eq!(failing["Status"], "critical");
    assert_eq!(
        output(&failing),
        format!(
            "Get {url:?}: tls: failed to verify certificate: x509: certificate signed by unknown authority"
        )
    );
}

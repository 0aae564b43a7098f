//! gRPC health checks: one `grpc.health.v1.Health/Check` call over HTTP/2
//! (prior knowledge for plaintext, ALPN `h2` over TLS) on a fresh
//! connection, as Consul's `GrpcHealthProbe` makes with grpc-go.
//!
//! Outputs follow Consul: `gRPC check <target>: success`, `gRPC <target>
//! serving status: NOT_SERVING`, and grpc-go's error texts
//! (`rpc error: code = Unavailable desc = connection error: ...`).

use super::dial_error;
use super::grpc_wire::{code_name, decode_response, encode_request, percent_decode, ServingStatus};
use super::tls::{self, Alpn};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration as StdDuration;
use tribune_core::catalog::CheckStatus;
use tribune_core::checks::GrpcProbe;
use tribune_core::limits::GRPC_HEALTH_RESPONSE_BYTES_MAX;

/// How long a failed request waits for its connection's error.
const CONN_ERROR_WAIT: StdDuration = StdDuration::from_millis(100);
const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// A grpc-go status error (`rpc error: code = NotFound desc = ...`).
fn rpc_error(code: u32, desc: &str) -> String {
    format!("rpc error: code = {} desc = {desc}", code_name(code))
}

const UNAVAILABLE: u32 = 14;
const INTERNAL: u32 = 13;
const DEADLINE_EXCEEDED: u32 = 4;
const RESOURCE_EXHAUSTED: u32 = 8;

fn connection_error(why: &str) -> String {
    rpc_error(
        UNAVAILABLE,
        &format!("connection error: desc = {:?}", format!("transport: {why}")),
    )
}

/// Runs one probe within `timeout`.
pub async fn grpc(probe: &GrpcProbe, timeout: StdDuration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, call(probe)).await {
        Ok(Ok(ServingStatus::SERVING)) => (
            CheckStatus::Passing,
            format!("gRPC check {}: success", probe.target),
        ),
        Ok(Ok(status)) => (
            CheckStatus::Critical,
            format!("gRPC {} serving status: {status}", probe.target),
        ),
        Ok(Err(why)) => (CheckStatus::Critical, why),
        Err(_) => (
            CheckStatus::Critical,
            rpc_error(DEADLINE_EXCEEDED, "context deadline exceeded"),
        ),
    }
}

/// `host:port` (IPv6 hosts in brackets) into its parts.
fn split_host_port(server: &str) -> Result<(&str, u16), String> {
    let bad = || {
        connection_error(&format!(
            "Error while dialing: address {server}: missing port in address"
        ))
    };
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

async fn call(probe: &GrpcProbe) -> Result<ServingStatus, String> {
    let (server, service) = probe.server_and_service();
    let (host, port) = split_host_port(server)?;
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| {
            connection_error(&format!(
                "Error while dialing: dial tcp {server}: {}",
                dial_error(&e)
            ))
        })?;
    let scheme = if probe.tls.is_some() { "https" } else { "http" };
    let request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(format!("{scheme}://{server}{HEALTH_CHECK_PATH}"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .header(hyper::header::USER_AGENT, "Consul Health Check")
        .body(Full::new(Bytes::from(encode_request(service))))
        .map_err(|e| rpc_error(INTERNAL, &e.to_string()))?;
    let response = match &probe.tls {
        None => send(TokioIo::new(stream), request).await?,
        Some(options) => {
            let stream = tls::connect(stream, host, options, Alpn::H2)
                .await
                .map_err(|why| {
                    connection_error(&format!("authentication handshake failed: {why}"))
                })?;
            send(TokioIo::new(stream), request).await?
        }
    };
    read_response(response).await
}

/// An error with its sources, `outer: inner: ...` (hyper's own text is
/// only the outermost kind, e.g. "http2 error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// One request on an HTTP/2 connection of its own. When the request fails
/// because the connection did (a server that is not HTTP/2, say), the
/// connection's error is the one that explains it.
async fn send<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| connection_error(&error_chain(&e)))?;
    let (conn_failed, conn_error) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            let _ = conn_failed.send(error_chain(&e));
        }
    });
    match sender.send_request(request).await {
        Ok(response) => Ok(response),
        Err(e) => {
            let why = tokio::time::timeout(CONN_ERROR_WAIT, conn_error)
                .await
                .ok()
                .and_then(Result::ok);
            Err(match why {
                Some(why) => connection_error(&why),
                None => rpc_error(UNAVAILABLE, &error_chain(&e)),
            })
        }
    }
}

/// grpc-go's code for a non-200 HTTP status (its `HTTPStatusConvTab`).
fn http_status_code(status: u16) -> u32 {
    match status {
        400 => INTERNAL,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => UNAVAILABLE,
        _ => 2,
    }
}

/// `grpc-status` and `grpc-message` if the map has them.
fn grpc_status(headers: &HeaderMap) -> Option<(u32, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, message))
}

async fn read_response(response: hyper::Response<Incoming>) -> Result<ServingStatus, String> {
    let http_status = response.status();
    if http_status != hyper::StatusCode::OK {
        let desc = format!(
            "unexpected HTTP status code received from server: {} ({})",
            http_status.as_u16(),
            http_status.canonical_reason().unwrap_or("")
        );
        return Err(rpc_error(http_status_code(http_status.as_u16()), &desc));
    }
    // A "Trailers-Only" response carries its status in the headers.
    let mut status = grpc_status(response.headers());
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| rpc_error(UNAVAILABLE, &error_chain(&e)))?;
        if let Some(data) = frame.data_ref() {
            if kept.len() + data.len() > GRPC_HEALTH_RESPONSE_BYTES_MAX {
                return Err(rpc_error(
                    RESOURCE_EXHAUSTED,
                    &format!(
                        "grpc: received message larger than max ({GRPC_HEALTH_RESPONSE_BYTES_MAX} bytes)"
                    ),
                ));
            }
            kept.extend_from_slice(data);
        } else if let Some(trailers) = frame.trailers_ref() {
            status = status.or_else(|| grpc_status(trailers));
        }
    }
    match status {
        None => Err(rpc_error(
            INTERNAL,
            "server closed the stream without sending trailers",
        )),
        Some((0, _)) => decode_response(&kept).map_err(|e| {
            rpc_error(
                INTERNAL,
                &format!("grpc: failed to unmarshal the received message: {e}"),
            )
        }),
        Some((code, message)) => Err(rpc_error(code, &message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("127.0.0.1:50051"), Ok(("127.0.0.1", 50051)));
        assert_eq!(split_host_port("[::1]:1"), Ok(("::1", 1)));
        assert!(split_host_port("localhost")
            .unwrap_err()
            .contains("missing port"));
    }

    #[test]
    fn errors_read_like_grpc_go() {
        assert_eq!(
            connection_error("Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"),
            "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\""
        );
        assert_eq!(
            rpc_error(5, "unknown service"),
            "rpc error: code = NotFound desc = unknown service"
        );
    }
}

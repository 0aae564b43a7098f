//! Consul's HTTP API over hyper.
//!
//! One request: parse the path and query (core::api::query), read the token
//! through [`Ctx::token`] (the single place ACLs will hook in), route to a
//! handler module, and turn its [`Reply`] or [`HttpError`] into a response.
//! Errors become a status and Consul's plain-text body in one table
//! ([`errors`]).

mod agent;
mod blocking;
mod catalog;
mod errors;
mod event;
mod health;
mod keyring;
mod kv;
pub(crate) mod reply;
mod session;
mod snapshot;
mod status;
mod txn;

use crate::state::Node;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tribune_core::api::query::{parse_query, percent_decode, read_options, Query, ReadOptions};
use tribune_core::command::CommandResult;
use tribune_core::limits::{HTTP_CONNS_PER_CLIENT_MAX, HTTP_HEADER_READ_TIMEOUT};

pub use errors::HttpError;
pub use reply::Reply;

/// Replicates `command`; a failed apply or an uncommitted entry becomes the
/// HTTP error, so handlers only match the results they expect.
pub async fn write(ctx: &Ctx, command: tribune_core::Command) -> Result<CommandResult, HttpError> {
    match ctx.node.write(command).await? {
        CommandResult::Failed(e) => Err(e.into()),
        result => Ok(result),
    }
}

/// A result of the wrong kind for the command: a bug, reported as a 500.
pub fn unexpected(result: CommandResult) -> HttpError {
    HttpError::Internal(format!("unexpected result {result:?}"))
}

/// What every handler gets.
pub struct Ctx {
    pub node: Arc<Node>,
    pub method: Method,
    pub query: Query,
    token: Option<String>,
    body: Option<Incoming>,
    content_length: Option<u64>,
    /// The client's address (local script checks need a loopback caller).
    pub peer: std::net::SocketAddr,
}

impl Ctx {
    /// The caller's ACL token: `X-Consul-Token`, then `Authorization:
    /// Bearer`, then the deprecated `?token=`. Unused until ACLs land.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn read_options(&self) -> Result<ReadOptions, HttpError> {
        let options = read_options(&self.query)?;
        self.check_datacenter(options.datacenter.as_deref())?;
        Ok(options)
    }

    pub fn check_datacenter(&self, dc: Option<&str>) -> Result<(), HttpError> {
        match dc {
            Some(dc) if dc != self.node.identity.datacenter => Err(HttpError::NoPathToDatacenter),
            _ => Ok(()),
        }
    }

    /// Reads the body, refusing more than `max` bytes with `too_large`.
    pub async fn body(
        &mut self,
        max: usize,
        too_large: impl Fn(usize) -> HttpError,
    ) -> Result<Bytes, HttpError> {
        if let Some(len) = self.content_length {
            if len > max as u64 {
                return Err(too_large(usize::try_from(len).unwrap_or(usize::MAX)));
            }
        }
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        match Limited::new(body, max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(max + 1)),
            Err(e) => Err(HttpError::BadRequest(format!("Failed to read body: {e}"))),
        }
    }

    pub async fn json_body(&mut self) -> Result<Bytes, HttpError> {
        let max = tribune_core::limits::HTTP_JSON_BODY_BYTES_MAX;
        self.body(max, |len| {
            HttpError::Api(tribune_core::api::ApiError::BodyTooLarge { len, max })
        })
        .await
    }

    pub fn require(&self, allowed: &[Method]) -> Result<(), HttpError> {
        if allowed.contains(&self.method) {
            Ok(())
        } else {
            Err(HttpError::MethodNotAllowed(allowed.to_vec()))
        }
    }
}

fn extract_token(req: &Request<Incoming>, query: &Query) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("x-consul-token").filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    if let Some(auth) = header("authorization") {
        if let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) {
            return Some(token.to_string());
        }
    }
    query
        .get("token")
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

async fn handle(
    node: Arc<Node>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = match parse_query(&raw_query) {
        Ok(q) => q,
        Err(e) => return HttpError::Api(e).into_response(),
    };
    let path = match percent_decode(req.uri().path(), false) {
        Ok(p) => p,
        Err(e) => return HttpError::Api(e).into_response(),
    };
    let pretty = query.has("pretty");
    let content_length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let token = extract_token(&req, &query);
    let method = req.method().clone();
    let contact_of = node.clone();
    let ctx = Ctx {
        node,
        method,
        query,
        token,
        body: Some(req.into_body()),
        content_length,
        peer,
    };
    match route(ctx, &path).await {
        Ok(mut reply) => {
            if reply.index.is_some() {
                reply.contact = contact_of.leader_contact();
            }
            reply.into_response(pretty)
        }
        Err(e) => e.into_response(),
    }
}

async fn route(ctx: Ctx, path: &str) -> Result<Reply, HttpError> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return match path {
            "/" => Ok(Reply::text("Consul Agent (tribune)")),
            _ => Err(HttpError::NotFound),
        };
    };
    let (group, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match group {
        "kv" => kv::handle(ctx, tail).await,
        "txn" if tail.is_empty() => txn::handle(ctx).await,
        "catalog" => catalog::handle(ctx, tail).await,
        "health" => health::handle(ctx, tail).await,
        "agent" => agent::handle(ctx, tail).await,
        "session" => session::handle(ctx, tail).await,
        "event" => event::handle(ctx, tail).await,
        "snapshot" => snapshot::handle(ctx, tail).await,
        "status" => status::handle(ctx, tail),
        "operator" => status::operator(ctx, tail).await,
        _ => Err(HttpError::NotFound),
    }
}

/// Live connections per client IP, for Consul's per-client limit.
#[derive(Default)]
struct ConnCounts(Mutex<BTreeMap<IpAddr, usize>>);

/// Holds one slot of a client's connection count; frees it on drop.
struct ConnSlot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
}

impl ConnCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for `ip`, or `None` when it already holds the maximum.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut counts = self.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= HTTP_CONNS_PER_CLIENT_MAX {
            return None;
        }
        *count += 1;
        Some(ConnSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Consul's answer to a client over its connection limit.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "Your IP is issuing too many concurrent connections, please rate limit your calls\n";
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let counts = Arc::new(ConnCounts::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                crate::log::warn(&format!("http: accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = counts.acquire(peer.ip()) else {
            crate::log::debug(&format!("http: {} is over its connection limit", peer.ip()));
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(node, peer, req).await) }
            });
            let header_timeout =
                std::time::Duration::from_nanos(HTTP_HEADER_READ_TIMEOUT.as_nanos());
            let conn = http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                crate::log::debug(&format!("http: connection ended: {e}"));
            }
        });
    }
}

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

/// A request's body: streamed from the connection, or already read (a
/// request a client agent forwarded).
enum Body {
    Stream(Incoming),
    Read(Bytes),
}

/// What every handler gets.
pub struct Ctx {
    pub node: Arc<Node>,
    pub method: Method,
    pub query: Query,
    token: Option<String>,
    body: Option<Body>,
    content_length: Option<u64>,
    /// The client's address (local script checks need a loopback caller).
    pub peer: std::net::SocketAddr,
    /// The node of the agent the request came in on: this one, or the
    /// client agent that forwarded it.
    pub agent_node: String,
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
        let body = match self.body.take() {
            None => return Ok(Bytes::new()),
            Some(Body::Read(bytes)) if bytes.len() > max => return Err(too_large(bytes.len())),
            Some(Body::Read(bytes)) => return Ok(bytes),
            Some(Body::Stream(body)) => body,
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
    let token = extract_token(&req, &query);
    let restore_on_client = node.upstream().is_some() && restores_here(req.method(), &path);
    if (node.upstream().is_some() || remote_datacenter(&node, &query).is_some())
        && served_by_servers(&path)
        && !restore_on_client
    {
        return forward(&node, req, raw_query, &query, token).await;
    }
    let content_length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let method = req.method().clone();
    let agent_node = node.identity.node_name.clone();
    let ctx = Ctx {
        agent_node,
        node,
        method,
        query,
        token,
        body: Some(Body::Stream(req.into_body())),
        content_length,
        peer,
    };
    respond(ctx, &path).await
}

async fn respond(ctx: Ctx, path: &str) -> Response<Full<Bytes>> {
    let pretty = ctx.query.has("pretty");
    let contact_of = ctx.node.clone();
    match route(ctx, path).await {
        Ok(mut reply) => {
            if reply.index.is_some() {
                reply.contact = contact_of.leader_contact();
            }
            reply.into_response(pretty)
        }
        Err(e) => e.into_response(),
    }
}

/// The API groups a client agent hands to a server: everything that reads
/// or writes the cluster's replicated state. The agent's own endpoints
/// (`/v1/agent/...`) and its event ring are served locally.
fn served_by_servers(path: &str) -> bool {
    let group = path
        .strip_prefix("/v1/")
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    matches!(
        group,
        Some("kv" | "txn" | "catalog" | "health" | "session" | "snapshot" | "status" | "operator")
    )
}

/// A snapshot restore on a client agent is not forwarded whole: the agent
/// checks the archive and writes it to a server one command at a time
/// (`snapshot.rs`), so the archive is bounded by the restore limit, not by
/// one RPC frame or one call's deadline.
fn restores_here(method: &Method, path: &str) -> bool {
    method == Method::PUT && path == "/v1/snapshot"
}

/// The datacenter a request names with `?dc=` when it is not this one and
/// this server is in the WAN pool (so it can forward there).
fn remote_datacenter<'q>(node: &Node, query: &'q Query) -> Option<&'q str> {
    let dc = query.get("dc").filter(|dc| !dc.is_empty())?;
    (dc != node.identity.datacenter && node.wan().is_some()).then_some(dc)
}

/// Sends a forwarded request on: a client agent to its server, a server to
/// a server of the datacenter `?dc=` names.
async fn relay(
    node: &Node,
    call: &crate::raft::rpc::ServerRequest,
    query: &Query,
    read_only: bool,
    deadline: std::time::Duration,
) -> Result<crate::raft::rpc::ServerReply, HttpError> {
    if node.upstream().is_some() {
        return Ok(node.to_server(call, read_only, deadline).await?);
    }
    match remote_datacenter(node, query) {
        Some(dc) => match node.to_datacenter(dc, call, read_only, deadline).await {
            Some(answer) => Ok(answer?),
            None => Err(HttpError::NoPathToDatacenter),
        },
        None => Err(HttpError::Internal("nowhere to forward the request".into())),
    }
}

/// Relays a server's complete answer as this agent's response.
fn relayed(reply: crate::raft::rpc::ServerReply) -> Response<Full<Bytes>> {
    match reply {
        crate::raft::rpc::ServerReply::Http(answer) => {
            let mut builder = Response::builder().status(answer.status);
            for (name, value) in &answer.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder
                .body(Full::new(Bytes::from(answer.body)))
                .unwrap_or_else(|e| {
                    HttpError::Internal(format!("bad answer from the server: {e}")).into_response()
                })
        }
        other => HttpError::Internal(format!("unexpected answer from the server: {other:?}"))
            .into_response(),
    }
}

/// The deadline of one forwarded call: a blocking query's wait plus its
/// jitter (up to wait/16), else a call's timeout plus the hold for a
/// leader.
fn forward_deadline(query: &Query) -> std::time::Duration {
    use tribune_core::limits::RPC_CALL_TIMEOUT;
    let call_timeout = std::time::Duration::from_nanos(RPC_CALL_TIMEOUT.as_nanos());
    match read_options(query) {
        Ok(options) if options.min_index.is_some() => {
            let wait = std::time::Duration::from_nanos(options.wait.as_nanos());
            wait + wait / 16 + call_timeout
        }
        _ => call_timeout + crate::cluster::RPC_HOLD_TIMEOUT,
    }
}

/// A client agent's side of a cluster request (or a server's, for another
/// datacenter): sends it whole to a server and relays the answer, headers
/// included.
async fn forward(
    node: &Node,
    req: Request<Incoming>,
    raw_query: String,
    query: &Query,
    token: Option<String>,
) -> Response<Full<Bytes>> {
    use crate::raft::rpc::{HttpCall, ServerRequest};
    use tribune_core::limits::RPC_FRAME_BODY_BYTES_MAX;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Room for the rest of the frame; the server applies each endpoint's
    // own limit.
    let max = RPC_FRAME_BODY_BYTES_MAX - 64 * 1024;
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return HttpError::Api(tribune_core::api::ApiError::BodyTooLarge { len: max + 1, max })
                .into_response()
        }
        Err(e) => {
            return HttpError::BadRequest(format!("Failed to read body: {e}")).into_response()
        }
    };
    let call = ServerRequest::Http(HttpCall {
        method: method.to_string(),
        path,
        query: raw_query,
        token,
        body: body.to_vec(),
        agent_node: node.identity.node_name.clone(),
    });
    let read_only = method == Method::GET || method == Method::HEAD;
    match relay(node, &call, query, read_only, forward_deadline(query)).await {
        Ok(reply) => relayed(reply),
        Err(e) => e.into_response(),
    }
}

/// A server's side of a client agent's request: served by this server's
/// own API, the answer returned whole.
pub async fn serve_forwarded(
    node: Arc<Node>,
    call: crate::raft::rpc::HttpCall,
) -> crate::raft::rpc::HttpAnswer {
    let response = match forwarded_response(node, call).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(never) => match never {},
    };
    crate::raft::rpc::HttpAnswer {
        status,
        headers,
        body,
    }
}

async fn forwarded_response(
    node: Arc<Node>,
    call: crate::raft::rpc::HttpCall,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let query = parse_query(&call.query)?;
    let path = percent_decode(&call.path, false)?;
    let method = Method::from_bytes(call.method.as_bytes())
        .map_err(|e| HttpError::BadRequest(format!("bad method {:?}: {e}", call.method)))?;
    if !served_by_servers(&path) {
        return Err(HttpError::NotFound);
    }
    if remote_datacenter(&node, &query).is_some() {
        // A client's request for another datacenter: on to a server there.
        let read_only = method == Method::GET || method == Method::HEAD;
        let deadline = forward_deadline(&query);
        let call = crate::raft::rpc::ServerRequest::Http(call);
        return Ok(relayed(
            relay(&node, &call, &query, read_only, deadline).await?,
        ));
    }
    let ctx = Ctx {
        node,
        method,
        query,
        token: call.token,
        content_length: Some(call.body.len() as u64),
        body: Some(Body::Read(Bytes::from(call.body))),
        peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        agent_node: call.agent_node,
    };
    Ok(respond(ctx, &path).await)
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

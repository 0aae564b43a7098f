//! `/v1/event/fire/<name>` and `/v1/event/list` (Consul's user events).
//!
//! A fire goes out through the gossip pool when the agent has one (see
//! `crate::events`). Listing blocks like Consul's: the index is not
//! monotonic (it is derived from the last event's ID), so a reader blocks
//! while the index equals the one it passed, until an event is recorded
//! (fired here or received by gossip) or `wait` elapses.

use crate::http::blocking;
use crate::http::{Ctx, HttpError, Reply};
use hyper::Method;
use tribune_core::event::{Fire, EVENT_PAYLOAD_BYTES_MAX};

pub async fn handle(mut ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    match tail.split_once('/').unwrap_or((tail, "")) {
        ("fire", name) => fire(&mut ctx, name).await,
        ("list", "") => list(&ctx).await,
        _ => Err(HttpError::NotFound),
    }
}

async fn fire(ctx: &mut Ctx, name: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    if name.is_empty() {
        return Err(HttpError::BadRequest("Missing name".into()));
    }
    // Read a little past the limit so the error can say by how much.
    let payload = ctx
        .body(EVENT_PAYLOAD_BYTES_MAX * 2, |len| {
            HttpError::Internal(format!(
                "user event exceeds configured limit of {EVENT_PAYLOAD_BYTES_MAX} bytes before encoding ({len} bytes)"
            ))
        })
        .await?;
    let param = |key: &str| ctx.query.get(key).unwrap_or_default().to_string();
    let request = Fire {
        name: name.to_string(),
        payload: payload.to_vec(),
        node_filter: param("node"),
        service_filter: param("service"),
        tag_filter: param("tag"),
    };
    match crate::events::fire(&ctx.node, request).await {
        Ok(json) => Ok(Reply::raw_json(json)),
        Err(text) => Err(HttpError::Internal(text)),
    }
}

async fn list(ctx: &Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    let options = ctx.read_options()?;
    let name = ctx.query.get("name").filter(|n| !n.is_empty());
    let events = &ctx.node.events;
    let mut changed = events.subscribe();
    changed.borrow_and_update();
    let (mut body, mut index) = events.list(name);
    if let Some(wanted) = options.min_index.filter(|i| *i > 0) {
        let deadline = blocking::deadline(ctx, &options);
        while index == wanted {
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => (body, index) = events.list(name),
                _ => break,
            }
        }
    }
    Ok(Reply::raw_json(body).with_index(index, options.consistency))
}

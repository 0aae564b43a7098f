//! `/v1/status/leader` and `/v1/status/peers`: one server, which leads.

use crate::http::{Ctx, HttpError, Reply};
use hyper::Method;

pub fn handle(ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    let leader = ctx.node.identity.leader_addr();
    match tail {
        "leader" => Ok(Reply::json(&leader)),
        "peers" => Ok(Reply::json(&[leader])),
        _ => Err(HttpError::NotFound),
    }
}

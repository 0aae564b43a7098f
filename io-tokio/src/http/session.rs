//! `/v1/session/*`: create, destroy/<id>, renew/<id>, info/<id>,
//! node/<node>, list.

use crate::http::blocking;
use crate::http::{unexpected, write, Ctx, HttpError, Reply};
use hyper::Method;
use serde_json::json;
use tribune_core::api::body::decode_session_create;
use tribune_core::api::render::{self, SessionJson};
use tribune_core::command::CommandResult;
use tribune_core::ids::SessionId;
use tribune_core::watch::{Table, WatchTarget};
use tribune_core::Command;

pub async fn handle(mut ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    let (what, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match (what, arg.is_empty()) {
        ("create", true) => create(&mut ctx).await,
        ("destroy", false) => destroy(&ctx, arg).await,
        ("renew", false) => renew(&ctx, arg).await,
        ("info", false) => list(&ctx, Filter::Id(arg.parse().ok())).await,
        ("node", false) => list(&ctx, Filter::Node(arg.to_string())).await,
        ("list", true) => list(&ctx, Filter::All).await,
        _ => Err(HttpError::NotFound),
    }
}

async fn create(ctx: &mut Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    let body = ctx.json_body().await?;
    let session = decode_session_create(&body, &ctx.agent_node)?;
    match write(ctx, Command::SessionCreate(Box::new(session))).await? {
        CommandResult::SessionCreated(id) => Ok(Reply::json(&json!({ "ID": id.to_string() }))),
        other => Err(unexpected(other)),
    }
}

fn parse_id(text: &str) -> Result<SessionId, HttpError> {
    text.parse()
        .map_err(|_| HttpError::BadRequest(format!("Session ID {text:?} is not a valid UUID")))
}

async fn destroy(ctx: &Ctx, id: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    let id = parse_id(id)?;
    crate::http::catalog::done(ctx, Command::SessionDestroy { id }).await
}

async fn renew(ctx: &Ctx, id: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    let parsed = parse_id(id)?;
    match ctx.node.renew_session(parsed).await? {
        Some(session) => {
            let index = session.modify_index;
            Ok(Reply::json(&[render::session(&session)]).with_index(index, Default::default()))
        }
        None => Err(HttpError::NotFoundText(format!(
            "Session id '{id}' not found"
        ))),
    }
}

enum Filter {
    /// `None`: not a UUID, so no session can match.
    Id(Option<SessionId>),
    Node(String),
    All,
}

async fn list(ctx: &Ctx, filter: Filter) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    blocking::query(ctx, vec![WatchTarget::Table(Table::Sessions)], |inner| {
        let sessions = &inner.fsm.sessions;
        let rows: Vec<SessionJson> = match &filter {
            Filter::Id(None) => Vec::new(),
            Filter::Id(Some(id)) => sessions.get(*id).into_iter().map(render::session).collect(),
            Filter::Node(node) => sessions.on_node(node).map(render::session).collect(),
            Filter::All => sessions.by_id.values().map(render::session).collect(),
        };
        Ok((inner.fsm.indexes.sessions, Reply::json(&rows)))
    })
    .await
}

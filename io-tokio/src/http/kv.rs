//! `/v1/kv/<key>`: GET (single, `recurse`, `keys`, `raw`), PUT (`flags`,
//! `cas`, `acquire`, `release`), DELETE (`recurse`, `cas`).

use crate::http::blocking::{self, Answer};
use crate::http::{unexpected, write, Ctx, HttpError, Reply};
use crate::state::Inner;
use hyper::Method;
use tribune_core::api::body::validate_key;
use tribune_core::api::render;
use tribune_core::api::ApiError;
use tribune_core::command::{CommandResult, KvOp, KvVerb};
use tribune_core::ids::SessionId;
use tribune_core::limits::KV_VALUE_BYTES_MAX;
use tribune_core::watch::WatchTarget;
use tribune_core::Command;

pub async fn handle(mut ctx: Ctx, key: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET, Method::PUT, Method::DELETE])?;
    let key = key.to_string();
    match ctx.method {
        Method::GET => get(&ctx, key).await,
        Method::PUT => put(&mut ctx, key).await,
        _ => delete(&ctx, key).await,
    }
}

/// The index for a key or prefix: its own (live or tombstone), else the KV
/// table's, so a missing key never reports 0 and never goes backwards.
fn index_or_table(own: u64, inner: &Inner) -> u64 {
    if own > 0 {
        own
    } else {
        inner.fsm.indexes.kv
    }
}

async fn get(ctx: &Ctx, key: String) -> Result<Reply, HttpError> {
    let q = &ctx.query;
    if q.has("keys") {
        let separator = q
            .get("separator")
            .or(q.get("seperator"))
            .unwrap_or("")
            .to_string();
        let targets = vec![WatchTarget::KvPrefix(key.clone())];
        return blocking::query(ctx, targets, |inner| {
            let keys = inner.fsm.kv.keys(&key, &separator);
            let index = index_or_table(inner.fsm.kv.prefix_index(&key), inner);
            if keys.is_empty() && !key.is_empty() {
                return Ok((index, Reply::not_found()));
            }
            Ok((index, Reply::json(&keys)))
        })
        .await;
    }
    if q.has("recurse") {
        let targets = vec![WatchTarget::KvPrefix(key.clone())];
        return blocking::query(ctx, targets, |inner| list(inner, &key)).await;
    }
    let raw = q.has("raw");
    let targets = vec![WatchTarget::KvKey(key.clone())];
    blocking::query(ctx, targets, |inner| {
        let index = index_or_table(inner.fsm.kv.key_index(&key), inner);
        let reply = match inner.fsm.kv.get(&key) {
            None => Reply::not_found(),
            Some(entry) if raw => Reply::raw(&entry.value),
            Some(entry) => Reply::json(&[render::kv(&key, entry, true)]),
        };
        Ok((index, reply))
    })
    .await
}

fn list(inner: &Inner, prefix: &str) -> Result<Answer, HttpError> {
    let rows: Vec<_> = inner
        .fsm
        .kv
        .list(prefix)
        .map(|(k, e)| render::kv(k, e, true))
        .collect();
    let index = index_or_table(inner.fsm.kv.prefix_index(prefix), inner);
    if rows.is_empty() {
        return Ok((index, Reply::not_found()));
    }
    Ok((index, Reply::json(&rows)))
}

fn session_param(ctx: &Ctx, name: &str) -> Result<Option<SessionId>, HttpError> {
    match ctx.query.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| HttpError::Api(ApiError::InvalidSession(text.to_string()))),
    }
}

async fn put(ctx: &mut Ctx, key: String) -> Result<Reply, HttpError> {
    ctx.check_datacenter(ctx.query.get("dc"))?;
    validate_key(&key)?;
    let q = &ctx.query;
    let present = [q.has("cas"), q.has("acquire"), q.has("release")];
    if present.iter().filter(|p| **p).count() > 1 {
        return Err(ApiError::ConflictingFlags("cas, acquire and release are exclusive").into());
    }
    let flags = q.u64("flags", ApiError::InvalidFlags)?.unwrap_or(0);
    let cas = q.u64("cas", ApiError::InvalidCas)?;
    let acquire = session_param(ctx, "acquire")?;
    let release = session_param(ctx, "release")?;
    let value = ctx
        .body(KV_VALUE_BYTES_MAX, |len| {
            ApiError::ValueTooLarge { len }.into()
        })
        .await?;
    let (verb, session, index) = match (cas, acquire, release) {
        (Some(cas), _, _) => (KvVerb::Cas, None, cas),
        (_, Some(s), _) => (KvVerb::Lock, Some(s), 0),
        (_, _, Some(s)) => (KvVerb::Unlock, Some(s), 0),
        _ => (KvVerb::Set, None, 0),
    };
    let op = KvOp {
        verb,
        key,
        value: value.to_vec(),
        flags,
        index,
        session,
    };
    bool_result(ctx, op).await
}

async fn bool_result(ctx: &Ctx, op: KvOp) -> Result<Reply, HttpError> {
    match write(ctx, Command::Kv(op)).await? {
        CommandResult::Bool(ok) => Ok(Reply::bool(ok)),
        other => Err(unexpected(other)),
    }
}

async fn delete(ctx: &Ctx, key: String) -> Result<Reply, HttpError> {
    ctx.check_datacenter(ctx.query.get("dc"))?;
    let recurse = ctx.query.has("recurse");
    let cas = ctx.query.u64("cas", ApiError::InvalidCas)?;
    if recurse && cas.is_some() {
        return Err(ApiError::ConflictingFlags("cas and recurse are exclusive").into());
    }
    if !recurse {
        validate_key(&key)?;
    }
    let op = match cas {
        Some(index) => KvOp {
            index,
            ..KvOp::new(KvVerb::DeleteCas, key)
        },
        None if recurse => KvOp::new(KvVerb::DeleteTree, key),
        None => KvOp::new(KvVerb::Delete, key),
    };
    bool_result(ctx, op).await
}

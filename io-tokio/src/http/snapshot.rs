//! `/v1/snapshot`: `GET` returns the whole store as a checksummed archive
//! (`tribune_core::snapshot_archive`), `PUT` restores one.
//!
//! A restore validates the whole archive and store first, then writes it
//! through the log as `tribune_core::restore` commands (a begin, chunks of
//! at most `RESTORE_CHUNK_BYTES_MAX`, a commit), so every server replaces
//! its store at the same entry, `-dev` included. Only the commit changes
//! the store: a bad archive, or a failure part-way, changes nothing. A
//! client agent runs this handler itself (it is not forwarded whole), and
//! each command goes to a server as its own write.

use crate::http::{Ctx, HttpError, Reply};
use crate::state::Node;
use bytes::Bytes;
use hyper::Method;
use std::sync::Arc;
use tribune_core::command::{Command, CommandResult};
use tribune_core::limits::RESTORE_ARCHIVE_BYTES_MAX;
use tribune_core::snapshot_archive::{self, ArchiveMeta};

pub async fn handle(mut ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    if !tail.is_empty() {
        return Err(HttpError::NotFound);
    }
    ctx.require(&[Method::GET, Method::PUT])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    if ctx.method == Method::GET {
        let options = ctx.read_options()?;
        ctx.node.read_barrier(options.consistency).await?;
        return Ok(save(&ctx));
    }
    let body = ctx
        .body(RESTORE_ARCHIVE_BYTES_MAX, |len| {
            HttpError::Internal(format!(
                "snapshot of {len} bytes exceeds the limit of {RESTORE_ARCHIVE_BYTES_MAX} bytes"
            ))
        })
        .await?;
    snapshot_archive::restore(&body)
        .map_err(|e| HttpError::Internal(format!("failed to restore snapshot: {e}")))?;
    // Its own task: a client that hangs up does not stop a restore half-way.
    let restore = tokio::spawn(write_restore(ctx.node.clone(), body));
    restore
        .await
        .map_err(|e| HttpError::Internal(format!("snapshot restore stopped: {e}")))??;
    Ok(Reply::empty())
}

/// Writes `archive` through the log, one command at a time; on a failure
/// before the commit, drops what was staged (best effort: the next
/// restore's begin drops it too).
async fn write_restore(node: Arc<Node>, archive: Bytes) -> Result<(), HttpError> {
    let id = node.random_below(u64::MAX);
    for command in tribune_core::restore::commands(id, &archive) {
        let commit = matches!(command, Command::RestoreCommit { .. });
        let error = match node.write(command).await {
            Ok(CommandResult::Failed(e)) => HttpError::from(e),
            Ok(_) => continue,
            Err(e) => HttpError::from(e),
        };
        if !commit {
            if let Err(e) = node.write(Command::RestoreAbort { id }).await {
                crate::log::warn(&format!("snapshot restore {id:016x}: abort failed: {e:?}"));
            }
        }
        return Err(error);
    }
    Ok(())
}

fn save(ctx: &Ctx) -> Reply {
    let identity = &ctx.node.identity;
    let (index, state) = ctx
        .node
        .read(|inner| (inner.fsm.last_applied, inner.fsm.snapshot()));
    let meta = ArchiveMeta {
        index,
        term: 1,
        created_unix_ms: crate::clock::unix_millis(),
        datacenter: identity.datacenter.clone(),
        node: identity.node_name.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut reply = Reply::raw(&snapshot_archive::encode(&meta, &state));
    reply.content_type = "application/octet-stream";
    reply.with_index(index, Default::default())
}

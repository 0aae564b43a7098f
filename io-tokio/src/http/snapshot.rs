//! `/v1/snapshot`: `GET` returns the whole store as a checksummed archive
//! (`tribune_core::snapshot_archive`), `PUT` restores one. A restore
//! validates the whole archive and store first; a bad one changes nothing.

use crate::http::{Ctx, HttpError, Reply};
use hyper::Method;
use tribune_core::limits::RAFT_SNAPSHOT_BYTES_MAX;
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
    if ctx.node.cluster().is_some() {
        // Replacing one server's store would make it diverge from the
        // others; a restore must travel through the Raft log, which is not
        // built yet. Refused before the body is read.
        return Err(HttpError::Internal(
            "snapshot restore into a Raft server is not supported yet (it must travel \
             through the Raft log); a -dev agent restores snapshots"
                .into(),
        ));
    }
    let body = ctx
        .body(RAFT_SNAPSHOT_BYTES_MAX, |len| {
            HttpError::Internal(format!(
                "snapshot of {len} bytes exceeds the limit of {RAFT_SNAPSHOT_BYTES_MAX} bytes"
            ))
        })
        .await?;
    let (_, fsm) = snapshot_archive::restore(&body)
        .map_err(|e| HttpError::Internal(format!("failed to restore snapshot: {e}")))?;
    ctx.node.restore(fsm);
    Ok(Reply::empty())
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

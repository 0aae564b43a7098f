//! Blocking queries (Consul's `?index=&wait=`): run the query; if its index
//! is not above the client's, wait on the query's watch targets until an
//! apply touches them or `wait` (plus up to wait/16 jitter) elapses, then run
//! it again. A return does not promise a change, as in Consul.
//!
//! Agent endpoints block on a content hash instead (`?hash=`, answered with
//! `X-Consul-ContentHash`), as Consul's do: the agent's local view has no
//! raft index of its own.

use crate::http::{Ctx, HttpError, Reply};
use crate::state::Inner;
use tribune_core::api::query::ReadOptions;
use tribune_core::limits::BLOCKING_JITTER_DIVISOR;
use tribune_core::watch::WatchTarget;

/// A query's answer: its index and the reply to send.
pub type Answer = (u64, Reply);

pub(crate) fn deadline(ctx: &Ctx, options: &ReadOptions) -> tokio::time::Instant {
    let wait_ns = options.wait.as_nanos();
    let jitter_ns = ctx.node.random_below(wait_ns / BLOCKING_JITTER_DIVISOR);
    tokio::time::Instant::now() + std::time::Duration::from_nanos(wait_ns.saturating_add(jitter_ns))
}

/// FNV-1a over the body, in hex: a cheap, stable content hash.
fn content_hash(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Hash-based blocking for agent endpoints: `targets` are the tables that
/// agent changes reach (its services and checks are synced to the catalog).
pub async fn by_hash(
    ctx: &Ctx,
    targets: Vec<WatchTarget>,
    run: impl Fn(&Inner) -> Reply,
) -> Result<Reply, HttpError> {
    let options: ReadOptions = ctx.read_options()?;
    let wanted = ctx
        .query
        .get("hash")
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let node = &ctx.node;
    let deadline = deadline(ctx, &options);
    loop {
        let watch = wanted.as_ref().and_then(|_| node.watch(targets.clone()));
        let mut reply = node.read(&run);
        let hash = content_hash(&reply.body);
        let unchanged = wanted.as_deref() == Some(hash.as_str());
        reply.content_hash = Some(hash);
        let (id, fired) = match watch {
            Some(registered) if unchanged => registered,
            Some((id, _)) => {
                node.unwatch(id);
                return Ok(reply);
            }
            None => return Ok(reply),
        };
        if tokio::time::timeout_at(deadline, fired).await.is_err() {
            node.unwatch(id);
            return Ok(reply);
        }
    }
}

pub async fn query(
    ctx: &Ctx,
    targets: Vec<WatchTarget>,
    run: impl Fn(&Inner) -> Result<Answer, HttpError>,
) -> Result<Reply, HttpError> {
    let options: ReadOptions = ctx.read_options()?;
    let node = &ctx.node;
    node.read_barrier(options.consistency).await?;
    let Some(min_index) = options.min_index else {
        let (index, reply) = node.read(&run)?;
        return Ok(reply.with_index(index, options.consistency));
    };
    let deadline = deadline(ctx, &options);
    // A snapshot restore replaces the store, whose indexes may then be lower
    // than the client's: that is a change too, answered at once.
    let generation = node.generation();
    loop {
        // Register before querying so no apply can slip between the two.
        let watch = node.watch(targets.clone());
        let (index, reply) = match node.read(&run) {
            Ok(answer) => answer,
            Err(e) => {
                if let Some((id, _)) = watch {
                    node.unwatch(id);
                }
                return Err(e);
            }
        };
        let Some((id, fired)) = watch else {
            // Waiter bound reached: answer now; clients must cope anyway.
            return Ok(reply.with_index(index, options.consistency));
        };
        if index.max(1) > min_index || node.generation() != generation {
            node.unwatch(id);
            return Ok(reply.with_index(index, options.consistency));
        }
        if tokio::time::timeout_at(deadline, fired).await.is_err() {
            node.unwatch(id);
            let (index, reply) = node.read(&run)?;
            return Ok(reply.with_index(index, options.consistency));
        }
    }
}

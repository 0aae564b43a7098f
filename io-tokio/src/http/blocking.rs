//! Blocking queries (Consul's `?index=&wait=`): run the query; if its index
//! is not above the client's, wait on the query's watch targets until an
//! apply touches them or `wait` (plus up to wait/16 jitter) elapses, then run
//! it again. A return does not promise a change, as in Consul.

use crate::http::{Ctx, HttpError, Reply};
use crate::state::Inner;
use tribune_core::api::query::ReadOptions;
use tribune_core::limits::BLOCKING_JITTER_DIVISOR;
use tribune_core::watch::WatchTarget;

/// A query's answer: its index and the reply to send.
pub type Answer = (u64, Reply);

pub async fn query(
    ctx: &Ctx,
    targets: Vec<WatchTarget>,
    run: impl Fn(&Inner) -> Result<Answer, HttpError>,
) -> Result<Reply, HttpError> {
    let options: ReadOptions = ctx.read_options()?;
    let node = &ctx.node;
    let Some(min_index) = options.min_index else {
        let (index, reply) = node.read(&run)?;
        return Ok(reply.with_index(index, options.consistency));
    };
    let wait_ns = options.wait.as_nanos();
    let jitter_ns = node.random_below(wait_ns / BLOCKING_JITTER_DIVISOR);
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_nanos(wait_ns.saturating_add(jitter_ns));
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
        if index.max(1) > min_index {
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

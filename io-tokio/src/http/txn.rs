//! `/v1/txn`: up to 64 KV operations applied atomically. Read-only txns are
//! answered from the local state without a log entry, as in Consul.

use crate::http::{unexpected, write, Ctx, HttpError, Reply};
use hyper::Method;
use tribune_core::api::body::decode_txn;
use tribune_core::api::render::{self, TxnErrorJson, TxnResponseJson};
use tribune_core::command::{CommandResult, TxnOutcome};
use tribune_core::Command;

pub async fn handle(mut ctx: Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    let body = ctx.json_body().await?;
    let ops = decode_txn(&body)?;
    let outcome = if ops.iter().all(|op| op.verb.is_read()) {
        let options = ctx.read_options()?;
        let (index, outcome) = ctx
            .node
            .read(|inner| (inner.fsm.indexes.kv, inner.fsm.read_txn(&ops)));
        return Ok(reply(&outcome).with_index(index, options.consistency));
    } else {
        match write(&ctx, Command::Txn(ops)).await? {
            CommandResult::Txn(outcome) => outcome,
            other => return Err(unexpected(other)),
        }
    };
    Ok(reply(&outcome))
}

fn reply(outcome: &TxnOutcome) -> Reply {
    match outcome {
        TxnOutcome::Committed(rows) => Reply::json(&TxnResponseJson {
            results: Some(render::txn_results(rows)),
            errors: None,
        }),
        TxnOutcome::RolledBack(errors) => Reply::json(&TxnResponseJson {
            results: None,
            errors: Some(
                errors
                    .iter()
                    .map(|e| TxnErrorJson {
                        op_index: e.op_index,
                        what: e.what.clone(),
                    })
                    .collect(),
            ),
        })
        .with_status(409),
    }
}

//! `/v1/health/*`: node/<n>, checks/<service>, service/<service> (with
//! `passing` and `tag`), state/<any|passing|warning|critical>.

use crate::http::blocking;
use crate::http::catalog::tagged_instances;
use crate::http::{Ctx, HttpError, Reply};
use crate::state::Inner;
use hyper::Method;
use tribune_core::api::render::{self, CheckJson, HealthServiceJson};
use tribune_core::api::ApiError;
use tribune_core::catalog::CheckStatus;
use tribune_core::watch::{Table, WatchTarget};

pub async fn handle(ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    let (what, arg) = tail.split_once('/').unwrap_or((tail, ""));
    if arg.is_empty() {
        return Err(HttpError::NotFound);
    }
    match what {
        "node" => node(&ctx, arg).await,
        "checks" => checks(&ctx, arg).await,
        "service" => service(&ctx, arg).await,
        "state" => state(&ctx, arg).await,
        _ => Err(HttpError::NotFound),
    }
}

fn all_tables() -> Vec<WatchTarget> {
    vec![
        WatchTarget::Table(Table::Checks),
        WatchTarget::Table(Table::Services),
        WatchTarget::Table(Table::Nodes),
    ]
}

fn health_index(inner: &Inner) -> u64 {
    let i = &inner.fsm.indexes;
    i.checks.max(i.services).max(i.nodes)
}

async fn node(ctx: &Ctx, name: &str) -> Result<Reply, HttpError> {
    blocking::query(ctx, vec![WatchTarget::Table(Table::Checks)], |inner| {
        let rows: Vec<CheckJson> = inner
            .fsm
            .catalog
            .node_checks(name)
            .map(render::check)
            .collect();
        Ok((inner.fsm.indexes.checks, Reply::json(&rows)))
    })
    .await
}

async fn checks(ctx: &Ctx, service: &str) -> Result<Reply, HttpError> {
    blocking::query(ctx, vec![WatchTarget::Table(Table::Checks)], |inner| {
        let rows: Vec<CheckJson> = inner
            .fsm
            .catalog
            .checks
            .values()
            .filter(|c| c.service_name == service)
            .map(render::check)
            .collect();
        Ok((inner.fsm.indexes.checks, Reply::json(&rows)))
    })
    .await
}

async fn service(ctx: &Ctx, name: &str) -> Result<Reply, HttpError> {
    let tags: Vec<&str> = ctx.query.all("tag");
    let passing = ctx.query.flag("passing");
    blocking::query(ctx, all_tables(), |inner| {
        let catalog = &inner.fsm.catalog;
        let mut rows: Vec<HealthServiceJson> = Vec::new();
        for service in tagged_instances(inner, name, &tags) {
            let Some(node) = catalog.nodes.get(&service.node) else {
                continue;
            };
            let checks: Vec<_> = catalog.service_health_checks(service).collect();
            // `?passing` keeps instances whose every check passes.
            if passing && checks.iter().any(|c| c.status != CheckStatus::Passing) {
                continue;
            }
            rows.push(HealthServiceJson {
                node: render::node(node),
                service: render::service(service, None),
                checks: checks.into_iter().map(render::check).collect(),
            });
        }
        Ok((health_index(inner), Reply::json(&rows)))
    })
    .await
}

async fn state(ctx: &Ctx, state: &str) -> Result<Reply, HttpError> {
    let wanted = match state {
        "any" => None,
        "passing" | "warning" | "critical" => CheckStatus::parse(state),
        other => return Err(ApiError::InvalidState(other.to_string()).into()),
    };
    blocking::query(ctx, vec![WatchTarget::Table(Table::Checks)], |inner| {
        let rows: Vec<CheckJson> = inner
            .fsm
            .catalog
            .checks
            .values()
            .filter(|c| match wanted {
                None => true,
                Some(CheckStatus::Critical) => c.status.is_critical(),
                Some(s) => c.status == s,
            })
            .map(render::check)
            .collect();
        Ok((inner.fsm.indexes.checks, Reply::json(&rows)))
    })
    .await
}

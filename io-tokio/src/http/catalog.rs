//! `/v1/catalog/*`: register, deregister, datacenters, nodes, services,
//! service/<name>, node/<name>.

use crate::http::blocking;
use crate::http::{unexpected, write, Ctx, HttpError, Reply};
use crate::state::Inner;
use hyper::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use tribune_core::api::body::{decode_catalog_deregister, decode_catalog_register};
use tribune_core::api::render::{self, NodeJson, ServiceJson};
use tribune_core::catalog::Service;
use tribune_core::command::CommandResult;
use tribune_core::watch::{Table, WatchTarget};
use tribune_core::Command;

pub async fn handle(mut ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    let (what, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match (what, arg.is_empty()) {
        ("register", true) => register(&mut ctx).await,
        ("deregister", true) => deregister(&mut ctx).await,
        ("datacenters", true) => {
            ctx.require(&[Method::GET])?;
            Ok(Reply::json(&datacenters(&ctx).await))
        }
        ("nodes", true) => nodes(&ctx).await,
        ("services", true) => services(&ctx).await,
        ("service", false) => service(&ctx, arg).await,
        ("node", false) => node(&ctx, arg).await,
        _ => Err(HttpError::NotFound),
    }
}

/// Every datacenter the WAN pool shows (alive servers' `dc` tags), this
/// one first, then by name (Consul orders by estimated round-trip time,
/// which tribune does not track yet).
async fn datacenters(ctx: &Ctx) -> Vec<String> {
    let mine = ctx.node.identity.datacenter.clone();
    let mut others = std::collections::BTreeSet::new();
    if let Some(wan) = ctx.node.wan() {
        for member in wan.members().await {
            let alive = member.status == tribune_core::gossip::MemberStatus::Alive;
            if let (true, Some(dc)) = (alive, member.tags.get("dc")) {
                others.insert(dc.clone());
            }
        }
    }
    others.remove(&mine);
    std::iter::once(mine).chain(others).collect()
}

/// Writes a command whose success Consul answers with `true`.
pub async fn done(ctx: &Ctx, command: Command) -> Result<Reply, HttpError> {
    match write(ctx, command).await? {
        CommandResult::Done | CommandResult::Bool(true) => Ok(Reply::bool(true)),
        other => Err(unexpected(other)),
    }
}

async fn register(ctx: &mut Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    let body = ctx.json_body().await?;
    let reg = decode_catalog_register(&body, &ctx.node.identity.datacenter)?;
    ctx.check_datacenter(Some(reg.node.datacenter.as_str()))?;
    done(ctx, Command::Register(Box::new(reg))).await
}

async fn deregister(ctx: &mut Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    let body = ctx.json_body().await?;
    let (node, service_id, check_id) = decode_catalog_deregister(&body)?;
    let command = Command::Deregister {
        node,
        service_id,
        check_id,
    };
    done(ctx, command).await
}

async fn nodes(ctx: &Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    blocking::query(ctx, vec![WatchTarget::Table(Table::Nodes)], |inner| {
        let rows: Vec<NodeJson> = inner.fsm.catalog.nodes.values().map(render::node).collect();
        Ok((inner.fsm.indexes.nodes, Reply::json(&rows)))
    })
    .await
}

async fn services(ctx: &Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    blocking::query(ctx, vec![WatchTarget::Table(Table::Services)], |inner| {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for service in inner.fsm.catalog.services.values() {
            let tags = out.entry(&service.name).or_default();
            for tag in &service.tags {
                if !tags.contains(&tag.as_str()) {
                    tags.push(tag);
                }
            }
        }
        Ok((inner.fsm.indexes.services, Reply::json(&out)))
    })
    .await
}

/// Instances of `name` carrying every tag in `tags` (Consul ANDs `?tag=`).
pub fn tagged_instances<'a>(inner: &'a Inner, name: &'a str, tags: &'a [&str]) -> Vec<&'a Service> {
    inner
        .fsm
        .catalog
        .service_instances(name)
        .filter(|s| tags.iter().all(|t| s.tags.iter().any(|have| have == t)))
        .collect()
}

fn service_index(inner: &Inner) -> u64 {
    let i = &inner.fsm.indexes;
    i.services.max(i.nodes)
}

async fn service(ctx: &Ctx, name: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    let tags: Vec<&str> = ctx.query.all("tag");
    let targets = vec![
        WatchTarget::Table(Table::Services),
        WatchTarget::Table(Table::Nodes),
    ];
    blocking::query(ctx, targets, |inner| {
        let rows: Vec<_> = tagged_instances(inner, name, &tags)
            .into_iter()
            .filter_map(|s| {
                let node = inner.fsm.catalog.nodes.get(&s.node)?;
                Some(render::catalog_service(node, s))
            })
            .collect();
        Ok((service_index(inner), Reply::json(&rows)))
    })
    .await
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServicesJson<'a> {
    node: NodeJson<'a>,
    services: BTreeMap<&'a str, ServiceJson<'a>>,
}

async fn node(ctx: &Ctx, name: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    let targets = vec![
        WatchTarget::Table(Table::Services),
        WatchTarget::Table(Table::Nodes),
    ];
    blocking::query(ctx, targets, |inner| {
        let catalog = &inner.fsm.catalog;
        let index = service_index(inner);
        let Some(node) = catalog.nodes.get(name) else {
            return Ok((index, Reply::json(&serde_json::Value::Null)));
        };
        let services = catalog
            .node_services(name)
            .map(|s| (s.id.as_str(), render::service(s, None)))
            .collect();
        Ok((
            index,
            Reply::json(&NodeServicesJson {
                node: render::node(node),
                services,
            }),
        ))
    })
    .await
}

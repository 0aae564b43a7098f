//! `/v1/agent/*`: the local agent's view and its services and checks.

use crate::http::blocking;
use crate::http::{Ctx, HttpError, Reply};
use crate::state::Identity;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tribune_core::agent::Origin;
use tribune_core::api::body::{decode_agent_service, decode_check_register, decode_check_update};
use tribune_core::api::render;
use tribune_core::catalog::CheckStatus;
use tribune_core::gossip::SerfMember;
use tribune_core::watch::{Table, WatchTarget};

pub async fn handle(mut ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    let (what, arg) = tail.split_once('/').unwrap_or((tail, ""));
    match what {
        "self" => get_only(&ctx, || {
            let (services, checks, ttls) = ctx.node.read(|inner| {
                let checks = inner.agent.checks();
                let ttls = checks.values().filter(|c| c.ttl().is_some()).count();
                (inner.agent.service_count(), checks.len(), ttls)
            });
            let mut reply = agent_self(&ctx.node.identity, services, checks, ttls);
            if let Some(cluster) = ctx.node.cluster() {
                // A server in a cluster: its Raft figures, and not dev mode.
                let mut value: serde_json::Value =
                    serde_json::from_slice(&reply.body).unwrap_or_default();
                value["Config"]["DevMode"] = false.into();
                value["Stats"]["raft"] = serde_json::to_value(cluster.stats()).unwrap_or_default();
                let leading = matches!(cluster.leader(), crate::cluster::LeaderIs::Me);
                value["Stats"]["consul"]["leader"] = leading.to_string().into();
                value["Stats"]["consul"]["leader_addr"] = cluster
                    .leader_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
                    .into();
                if let Some(gossip) = ctx.node.gossip() {
                    value["Stats"]["serf_lan"]["encrypted"] = gossip.encrypted().to_string().into();
                }
                reply = Reply::json(&value);
            }
            if let Some(upstream) = ctx.node.upstream() {
                // A client agent: no Raft, the servers it knows.
                let mut value: serde_json::Value =
                    serde_json::from_slice(&reply.body).unwrap_or_default();
                value["Config"]["DevMode"] = false.into();
                value["Config"]["Server"] = false.into();
                value["Stats"]["consul"] = json!({
                    "server": "false",
                    "known_servers": upstream.known().len().to_string(),
                });
                reply = Reply::json(&value);
            }
            reply
        }),
        "force-leave" if !arg.is_empty() => {
            ctx.require(&[Method::PUT])?;
            let Some(gossip) = ctx.node.gossip() else {
                return Err(HttpError::Internal(format!(
                    "agent: No node found with name '{arg}'"
                )));
            };
            gossip
                .force_leave(arg, ctx.query.has("prune"))
                .await
                .map_err(HttpError::Internal)?;
            Ok(Reply::empty())
        }
        "members" if ctx.query.has("wan") => {
            ctx.require(&[Method::GET])?;
            // Clients (and servers without a WAN pool) list no WAN members.
            let members: Vec<Value> = match ctx.node.wan() {
                Some(wan) => wan.members().await.iter().map(serf_member).collect(),
                None => Vec::new(),
            };
            Ok(Reply::json(&members))
        }
        "members" => {
            ctx.require(&[Method::GET])?;
            Ok(match ctx.node.gossip() {
                Some(gossip) => {
                    let members: Vec<Value> =
                        gossip.members().await.iter().map(serf_member).collect();
                    Reply::json(&members)
                }
                // `-dev` runs no gossip pool: the agent is its only member.
                None => Reply::json(&[member(&ctx.node.identity)]),
            })
        }
        "join" if !arg.is_empty() => {
            ctx.require(&[Method::PUT])?;
            join(&ctx, arg).await
        }
        "leave" => {
            ctx.require(&[Method::PUT])?;
            leave(&ctx).await
        }
        "services" => {
            ctx.require(&[Method::GET])?;
            services(&ctx).await
        }
        "checks" => {
            ctx.require(&[Method::GET])?;
            checks(&ctx).await
        }
        "service" => service(&mut ctx, arg).await,
        "check" => check(&mut ctx, arg).await,
        "maintenance" if arg.is_empty() => node_maintenance(&ctx),
        "reload" if arg.is_empty() => {
            ctx.require(&[Method::PUT])?;
            crate::agent::reload(&ctx.node).map_err(HttpError::Internal)?;
            Ok(Reply::empty())
        }
        _ => Err(HttpError::NotFound),
    }
}

fn get_only(ctx: &Ctx, f: impl FnOnce() -> Reply) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    Ok(f())
}

/// One serf member as `/v1/agent/members` shows it.
pub fn member(id: &Identity) -> Value {
    json!({
        "Name": id.node_name,
        "Addr": id.bind_addr,
        "Port": id.serf_lan_port,
        "Tags": {
            "role": "consul",
            "dc": id.datacenter,
            "id": id.node_id,
            "port": id.server_port.to_string(),
            "build": env!("CARGO_PKG_VERSION"),
            "vsn": "2",
            "vsn_min": "2",
            "vsn_max": "3",
            "raft_vsn": "3",
            "bootstrap": "1",
            "segment": "",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// A member of the gossip pool as `/v1/agent/members` shows it.
pub fn serf_member(m: &SerfMember) -> Value {
    let v = m.vsn;
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": m.tags,
        "Status": m.status as u8,
        "ProtocolMin": v[0],
        "ProtocolMax": v[1],
        "ProtocolCur": v[2],
        "DelegateMin": v[3],
        "DelegateMax": v[4],
        "DelegateCur": v[5],
    })
}

/// `PUT /v1/agent/join/<addr>`: joins the LAN pool through `addr`
/// (`host[:port]`, the port defaulting to this agent's serf LAN port).
async fn join(ctx: &Ctx, addr: &str) -> Result<Reply, HttpError> {
    let wan = ctx.query.has("wan") && ctx.query.get("wan") != Some("0");
    let pool = match wan {
        true => ctx.node.wan(),
        false => ctx.node.gossip(),
    };
    let Some(gossip) = pool else {
        return Err(HttpError::Internal(match (wan, ctx.node.identity.server) {
            (true, false) => "Must be a server to join WAN cluster".into(),
            (true, true) => "this server runs no WAN pool (serf_wan port is -1)".into(),
            _ => "this agent runs no gossip pool (-dev agents do not gossip)".into(),
        }));
    };
    let default_port = match wan {
        true => gossip.local_addr().port(),
        false => ctx.node.identity.serf_lan_port,
    };
    let target = crate::gossip::resolve(addr, default_port)
        .await
        .map_err(HttpError::Internal)?;
    gossip
        .join(vec![target])
        .await
        .map_err(HttpError::Internal)?;
    Ok(Reply::empty())
}

fn agent_self(id: &Identity, services: usize, checks: usize, ttls: usize) -> Reply {
    Reply::json(&json!({
        "Config": {
            "Datacenter": id.datacenter,
            "PrimaryDatacenter": id.datacenter,
            "NodeName": id.node_name,
            "NodeID": id.node_id,
            "Server": true,
            "Revision": "",
            "Version": env!("CARGO_PKG_VERSION"),
            "BuildDate": "",
        },
        "DebugConfig": {
            "Datacenter": id.datacenter,
            "NodeName": id.node_name,
            "ServerMode": true,
            "DevMode": true,
            "ClientAddrs": [id.http_addr],
        },
        "Coord": null,
        "Member": member(id),
        "Stats": {
            "agent": {"check_monitors": "0", "check_ttls": ttls.to_string(),
                      "checks": checks.to_string(), "services": services.to_string()},
            "build": {"prerelease": "", "revision": "", "version": env!("CARGO_PKG_VERSION")},
            "consul": {"server": "true", "leader": "true", "bootstrap": "true",
                        "known_datacenters": "1", "leader_addr": id.leader_addr()},
            "runtime": {"arch": std::env::consts::ARCH, "os": std::env::consts::OS,
                         "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string()},
        },
        "Meta": {},
        "xDS": null,
    }))
}

async fn services(ctx: &Ctx) -> Result<Reply, HttpError> {
    let dc = ctx.node.identity.datacenter.clone();
    let targets = vec![WatchTarget::Table(Table::Services)];
    blocking::by_hash(ctx, targets, |inner| {
        let out: BTreeMap<&str, _> = inner
            .agent
            .services()
            .map(|(id, s)| (id.as_str(), render::service(s, Some(&dc))))
            .collect();
        Reply::json(&out)
    })
    .await
}

async fn checks(ctx: &Ctx) -> Result<Reply, HttpError> {
    let targets = vec![WatchTarget::Table(Table::Checks)];
    blocking::by_hash(ctx, targets, |inner| {
        let out: BTreeMap<&str, _> = inner
            .agent
            .checks()
            .iter()
            .map(|(id, c)| (id.as_str(), render::check(&c.check)))
            .collect();
        Reply::json(&out)
    })
    .await
}

async fn service(ctx: &mut Ctx, tail: &str) -> Result<Reply, HttpError> {
    let (what, id) = tail.split_once('/').unwrap_or((tail, ""));
    ctx.require(&[Method::PUT])?;
    match (what, id.is_empty()) {
        ("register", true) => {
            let body = ctx.json_body().await?;
            let reg = decode_agent_service(&body)?;
            let now = crate::clock::now();
            let origin = origin(ctx);
            ctx.node
                .with_agent(|agent| agent.add_service(now, reg.service, reg.checks, origin))?;
            Ok(Reply::empty())
        }
        ("maintenance", false) => {
            let (enable, reason) = maintenance_params(ctx)?;
            let now = crate::clock::now();
            ctx.node.with_agent(|agent| {
                if enable {
                    agent.enable_service_maintenance(now, id, &reason)
                } else {
                    agent.disable_service_maintenance(id)
                }
            })?;
            Ok(Reply::empty())
        }
        ("maintenance", true) => Err(HttpError::BadRequest("Missing service ID".into())),
        ("deregister", false) => {
            ctx.node.with_agent(|agent| agent.remove_service(id))?;
            Ok(Reply::empty())
        }
        _ => Err(HttpError::NotFound),
    }
}

async fn check(ctx: &mut Ctx, tail: &str) -> Result<Reply, HttpError> {
    let (what, id) = tail.split_once('/').unwrap_or((tail, ""));
    ctx.require(&[Method::PUT])?;
    let now = crate::clock::now();
    let note = ctx.query.get("note").unwrap_or("").to_string();
    let status = match what {
        "register" if id.is_empty() => {
            let body = ctx.json_body().await?;
            let spec = decode_check_register(&body)?;
            let origin = origin(ctx);
            ctx.node
                .with_agent(|agent| agent.add_check(now, spec, origin))?;
            return Ok(Reply::empty());
        }
        "deregister" if !id.is_empty() => {
            ctx.node.with_agent(|agent| agent.remove_check(id))?;
            return Ok(Reply::empty());
        }
        "update" if !id.is_empty() => {
            let body = ctx.json_body().await?;
            let (status, output) = decode_check_update(&body)?;
            ctx.node
                .with_agent(|agent| agent.update_ttl(now, id, status, output))?;
            return Ok(Reply::empty());
        }
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        _ => return Err(HttpError::NotFound),
    };
    if id.is_empty() {
        return Err(HttpError::NotFound);
    }
    ctx.node
        .with_agent(|agent| agent.update_ttl(now, id, status, note))?;
    Ok(Reply::empty())
}

/// Where an API registration comes from: `enable_local_script_checks`
/// allows scripts only from loopback callers.
fn origin(ctx: &Ctx) -> Origin {
    Origin::Api {
        loopback: ctx.peer.ip().is_loopback(),
    }
}

/// `?enable=` (required, Go `strconv.ParseBool` spellings) and `?reason=`.
fn maintenance_params(ctx: &Ctx) -> Result<(bool, String), HttpError> {
    let raw = ctx
        .query
        .get("enable")
        .ok_or_else(|| HttpError::BadRequest("Missing value for enable".into()))?;
    let enable = match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        other => {
            return Err(HttpError::BadRequest(format!(
                "Invalid value for enable: {other:?}"
            )))
        }
    };
    Ok((enable, ctx.query.get("reason").unwrap_or("").to_string()))
}

/// `PUT /v1/agent/maintenance?enable=&reason=`.
fn node_maintenance(ctx: &Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::PUT])?;
    let (enable, reason) = maintenance_params(ctx)?;
    let now = crate::clock::now();
    ctx.node.with_agent(|agent| {
        if enable {
            agent.enable_node_maintenance(now, &reason);
        } else {
            agent.disable_node_maintenance();
        }
    });
    Ok(Reply::empty())
}

/// `PUT /v1/agent/leave`: a server first leaves the Raft configuration
/// (through the leader), then the agent shuts down, as Consul's does.
async fn leave(ctx: &Ctx) -> Result<Reply, HttpError> {
    if let Some(cluster) = ctx.node.cluster() {
        let id = cluster.me.id;
        ctx.node
            .to_leader(crate::raft::rpc::ServerRequest::RemoveServer { id })
            .await?;
        crate::log::info("agent: left the raft configuration");
    }
    if let Some(gossip) = ctx.node.gossip() {
        // serf's graceful leave: the pool records us `left`, not failed.
        match gossip.leave().await {
            Ok(()) => crate::log::info("agent: left the gossip pool"),
            Err(e) => crate::log::warn(&format!("agent: gossip leave: {e}")),
        }
    }
    crate::log::info("agent: graceful leave complete, shutting down");
    tokio::spawn(async {
        // Lets the answer reach the client first.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::process::exit(0);
    });
    Ok(Reply::empty())
}

//! `/v1/status/leader`, `/v1/status/peers` and `/v1/operator/raft/*`
//! (`/v1/operator/keyring` is in [`super::keyring`]).
//!
//! A `-dev` agent is a one-server cluster that leads; a server in a Raft
//! cluster answers from its view of the configuration.

use crate::http::{Ctx, HttpError, Reply};
use crate::raft::rpc::ServerRequest;
use hyper::Method;
use serde::Serialize;

pub fn handle(ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET])?;
    ctx.check_datacenter(ctx.query.get("dc"))?;
    let (leader, peers) = match ctx.node.cluster() {
        None => {
            let me = ctx.node.identity.leader_addr();
            (me.clone(), vec![me])
        }
        Some(cluster) => {
            let leader = cluster
                .leader_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let (servers, _) = cluster.configuration();
            let peers = servers
                .iter()
                .filter(|p| p.voter)
                .map(|p| p.addr.to_string())
                .collect();
            (leader, peers)
        }
    };
    match tail {
        "leader" => Ok(Reply::json(&leader)),
        "peers" => Ok(Reply::json(&peers)),
        _ => Err(HttpError::NotFound),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: &'static str,
    voter: bool,
    last_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfiguration {
    servers: Vec<RaftServer>,
    index: u64,
}

/// `/v1/operator/...`.
pub async fn operator(ctx: Ctx, tail: &str) -> Result<Reply, HttpError> {
    ctx.check_datacenter(ctx.query.get("dc"))?;
    match tail {
        "raft/configuration" => {
            ctx.require(&[Method::GET])?;
            let options = ctx.read_options()?;
            ctx.node.read_barrier(options.consistency).await?;
            let (config, applied) = configuration(&ctx);
            Ok(Reply::json(&config).with_index(applied, options.consistency))
        }
        "raft/peer" => {
            ctx.require(&[Method::DELETE])?;
            remove_peer(&ctx).await
        }
        "keyring" => super::keyring::handle(ctx).await,
        _ => Err(HttpError::NotFound),
    }
}

fn configuration(ctx: &Ctx) -> (RaftConfiguration, u64) {
    let applied = ctx.node.read(|inner| inner.fsm.last_applied);
    match ctx.node.cluster() {
        None => {
            let identity = &ctx.node.identity;
            let me = RaftServer {
                id: identity.node_id.clone(),
                node: identity.node_name.clone(),
                address: identity.leader_addr(),
                leader: true,
                protocol_version: "3",
                voter: true,
                last_index: applied,
            };
            let config = RaftConfiguration {
                servers: vec![me],
                index: 1,
            };
            (config, applied)
        }
        Some(cluster) => {
            let (peers, index) = cluster.configuration();
            let last_index = cluster.last_log_index();
            let servers = peers
                .into_iter()
                .map(|p| RaftServer {
                    id: format!("{:016x}", p.id),
                    node: p.name,
                    address: p.addr.to_string(),
                    leader: p.leader,
                    protocol_version: "3",
                    voter: p.voter,
                    last_index,
                })
                .collect();
            (RaftConfiguration { servers, index }, applied)
        }
    }
}

/// `DELETE /v1/operator/raft/peer?id=|address=`.
async fn remove_peer(ctx: &Ctx) -> Result<Reply, HttpError> {
    let id = ctx.query.get("id").filter(|v| !v.is_empty());
    let address = ctx.query.get("address").filter(|v| !v.is_empty());
    let target = match (id, address) {
        (Some(_), Some(_)) => {
            return Err(HttpError::BadRequest(
                "Must specify only one of ?id or ?address".into(),
            ))
        }
        (None, None) => {
            return Err(HttpError::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into(),
            ))
        }
        (id, address) => (id, address),
    };
    let Some(cluster) = ctx.node.cluster() else {
        return Err(HttpError::Internal(
            "a -dev agent is a single-server cluster; it has no peer to remove".into(),
        ));
    };
    let (peers, _) = cluster.configuration();
    let found = peers.iter().find(|p| match target {
        (Some(id), _) => format!("{:016x}", p.id) == id.to_ascii_lowercase(),
        (_, Some(address)) => p.addr.to_string() == address,
        _ => false,
    });
    let Some(peer) = found else {
        let what = match target {
            (Some(id), _) => format!("id {id:?}"),
            (_, address) => format!("address {:?}", address.unwrap_or_default()),
        };
        return Err(HttpError::Internal(format!(
            "{what} was not found in the Raft configuration"
        )));
    };
    ctx.node
        .to_leader(ServerRequest::RemoveServer { id: peer.id })
        .await?;
    Ok(Reply::empty())
}

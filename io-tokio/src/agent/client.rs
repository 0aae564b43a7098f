//! Starting a client agent: it joins the LAN gossip pool and sends every
//! request for the cluster's state to a server it finds there.

use super::config::AgentConfig;
use super::server::{listen, retry_join, start_lan};
use crate::state::Node;
use crate::upstream::Upstream;
use std::sync::Arc;
use tribune_core::gossip::SerfConfig;

/// Joins the pool (in the background, retrying) and connects the node to
/// the servers the pool shows.
pub async fn start(
    config: &AgentConfig,
    node: &Arc<Node>,
    node_id: &str,
    seed: u64,
) -> Result<(), String> {
    let lan_listener = listen(&config.bind_addr, config.serf_lan_port, "serf LAN").await?;
    // No RPC hook: a client serves no server RPC.
    let gossip = start_lan(
        config,
        node,
        lan_serf_config(config, node_id),
        lan_listener,
        None,
    )
    .await?;
    let upstream = Arc::new(Upstream::new(config.datacenter.clone(), seed));
    node.attach_upstream(upstream.clone());
    tokio::spawn(upstream.follow(gossip.clone()));
    if config.join.is_empty() {
        crate::log::warn(
            "agent: no -join or -retry-join address: this client finds no servers until \
             another agent joins it (`tribune join`)",
        );
    } else {
        tokio::spawn(retry_join(
            gossip,
            config.join.clone(),
            config.serf_lan_port,
        ));
    }
    Ok(())
}

/// serf's LAN configuration with Consul's client tags (`client_serf.go`).
fn lan_serf_config(config: &AgentConfig, node_id: &str) -> SerfConfig {
    let mut serf = SerfConfig::lan();
    serf.tags = super::server::agent_tags(config, node_id, "node");
    serf
}

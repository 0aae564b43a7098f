//! Starting a client agent: it joins the LAN gossip pool and sends every
//! request for the cluster's state to a server it finds there.

use super::config::AgentConfig;
use super::server::{advertise_ip, listen, retry_join};
use crate::gossip::{Gossip, GossipConfig};
use crate::state::Node;
use crate::upstream::Upstream;
use std::net::SocketAddr;
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
    let lan_addr = lan_listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let data_dir = std::path::Path::new(config.data_dir.as_deref().unwrap_or("."));
    let (keyring, encryption) = crate::keyring::setup(config, data_dir)?;
    let mut serf = lan_serf_config(config, node_id);
    serf.keyring = keyring;
    let gossip_config = GossipConfig {
        name: config.node_name.clone(),
        advertise: SocketAddr::new(advertise_ip(lan_addr.ip()), lan_addr.port()),
        serf,
        label: String::new(),
        encryption,
    };
    // No RPC hook: a client serves no server RPC.
    let gossip = Gossip::start(gossip_config, lan_listener, None).await?;
    node.attach_gossip(gossip.clone());
    tokio::spawn(crate::events::ingest(node.clone(), &gossip));
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

//! The DNS request path as a fuzz target: any bytes go through
//! [`handle_packet`] against a node with a few registered services, over UDP
//! (plain and EDNS-sized) and TCP. Besides not panicking, every response
//! must decode and fit the transport's limit. `fuzz/fuzz_targets/dns_packet.rs`
//! calls this, and `io-tokio/tests/fuzz_corpora.rs` replays the corpus.

use super::{handle_packet, TCP_MESSAGE_BYTES_MAX};
use crate::state::{Identity, Node};
use hickory_proto::op::Message;
use std::sync::{Arc, OnceLock};
use tribune_core::agent::LocalAgent;
use tribune_core::catalog::{Node as CatalogNode, Service};
use tribune_core::dns::DnsConfig;

fn fixture() -> &'static Arc<Node> {
    static NODE: OnceLock<Arc<Node>> = OnceLock::new();
    NODE.get_or_init(|| {
        let identity = Identity {
            node_name: "n1".into(),
            node_id: "00000000-0000-0000-0000-000000000001".into(),
            datacenter: "dc1".into(),
            bind_addr: "127.0.0.1".into(),
            server_port: 8300,
            serf_lan_port: 8301,
            http_addr: "127.0.0.1:8500".into(),
            server: true,
            args: Vec::new(),
        };
        let catalog_node = CatalogNode {
            id: identity.node_id.clone(),
            name: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: Default::default(),
            meta: [("rack".to_string(), "r1".to_string())]
                .into_iter()
                .collect(),
            create_index: 0,
            modify_index: 0,
        };
        let node = Node::new(identity, LocalAgent::new(catalog_node, 1), 1);
        node.with_agent(|agent| {
            for i in 0..12u16 {
                let service = Service {
                    node: String::new(),
                    id: format!("web-{i}"),
                    name: "web".into(),
                    kind: String::new(),
                    tags: vec![format!("v{}", i % 3)],
                    address: if i % 2 == 0 {
                        format!("10.0.0.{i}")
                    } else {
                        String::new()
                    },
                    tagged_addresses: Default::default(),
                    meta: Default::default(),
                    port: 8000 + i,
                    weights: Default::default(),
                    enable_tag_override: false,
                    create_index: 0,
                    modify_index: 0,
                };
                let origin = tribune_core::agent::Origin::ConfigFile;
                let added = agent.add_service(crate::clock::now(), service, Vec::new(), origin);
                assert!(added.is_ok(), "fixture service registers");
            }
        });
        node
    })
}

/// Runs one input; panics only if a response breaks a property.
pub fn dns_packet(data: &[u8]) {
    let node = fixture();
    let mut config = DnsConfig::new("dc1");
    config.alt_domain = Some("alt.example".into());
    for (limit, cap) in [
        (512, Some(512)),
        (4096, Some(4096)),
        (TCP_MESSAGE_BYTES_MAX, None),
    ] {
        if let Some(response) = handle_packet(node, &config, data, cap) {
            assert!(
                response.len() <= limit,
                "{} bytes over a {limit}-byte limit",
                response.len()
            );
            assert!(
                Message::from_vec(&response).is_ok(),
                "the response does not decode"
            );
        }
    }
}

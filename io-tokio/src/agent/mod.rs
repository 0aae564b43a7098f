//! `tribune agent`: starts the node, its timers and the HTTP API.

pub mod config;

use crate::state::{Identity, Node};
use config::AgentConfig;
use std::net::SocketAddr;
use tribune_core::agent::LocalAgent;
use tribune_core::catalog::Node as CatalogNode;
use tribune_core::rng::Rng;

/// Runs the agent until SIGINT/SIGTERM. Returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let config = match AgentConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    if let Err(e) = crate::log::set_level(&config.log_level) {
        eprintln!("==> {e}");
        return 1;
    }
    if !config.dev {
        eprintln!(
            "==> tribune agent needs -dev for now: multi-server Raft and client agents \
             (-server, -data-dir, -join) are not implemented yet"
        );
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> Error starting runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: AgentConfig) -> i32 {
    let started = std::time::Instant::now();
    let seed = crate::clock::os_seed();
    let mut rng = Rng::from_seed(seed);
    let node_id = rng.uuid().to_string();
    let http_addr: SocketAddr = match format!("{}:{}", config.client_addr, config.http_port).parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("==> Invalid HTTP address: {e}");
            return 1;
        }
    };
    let listener = match tokio::net::TcpListener::bind(http_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("==> Error starting agent: failed to listen on {http_addr}: {e}");
            return 1;
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let identity = Identity {
        node_name: config.node_name.clone(),
        node_id: node_id.clone(),
        datacenter: config.datacenter.clone(),
        bind_addr: config.bind_addr.clone(),
        server_port: config.server_port,
        serf_lan_port: config.serf_lan_port,
        http_addr: bound.clone(),
    };
    let local = LocalAgent::new(CatalogNode {
        id: node_id.clone(),
        name: config.node_name.clone(),
        address: config.bind_addr.clone(),
        datacenter: config.datacenter.clone(),
        tagged_addresses: [
            ("lan".to_string(), config.bind_addr.clone()),
            ("wan".to_string(), config.bind_addr.clone()),
        ]
        .into_iter()
        .collect(),
        meta: [("consul-network-segment".to_string(), String::new())]
            .into_iter()
            .collect(),
        create_index: 0,
        modify_index: 0,
    });
    let node = Node::new(identity, local, rng.next_u64());
    tokio::spawn(node.clone().run_timers());
    print_banner(&config, &node_id, &bound);
    crate::log::info(&format!(
        "agent: started in {} µs; rng seed {seed:#018x}",
        started.elapsed().as_micros()
    ));
    tokio::spawn(crate::http::serve(listener, node));
    wait_for_shutdown().await;
    crate::log::info("agent: caught signal, shutting down");
    0
}

fn print_banner(config: &AgentConfig, node_id: &str, http: &str) {
    println!("==> Starting tribune agent...");
    println!("              Version: '{}'", env!("CARGO_PKG_VERSION"));
    println!("              Node ID: '{node_id}'");
    println!("            Node name: '{}'", config.node_name);
    println!(
        "           Datacenter: '{}' (Segment: '<all>')",
        config.datacenter
    );
    println!("               Server: true (Bootstrap: false)");
    println!(
        "          Client Addr: [{}] (HTTP: {}, HTTPS: -1, gRPC: -1, DNS: -1)",
        config.client_addr,
        http.rsplit(':').next().unwrap_or("")
    );
    println!(
        "         Cluster Addr: {} (LAN: -1, WAN: -1)",
        config.bind_addr
    );
    println!("       Gossip Encrypt: false");
    println!();
    println!("==> tribune agent running! HTTP API at http://{http}");
    println!(
        "    In-memory dev mode: nothing is persisted. DNS, gossip and gRPC are not served yet."
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

//! `tribune agent`: starts the node, its timers, the HTTP API and DNS.

mod client;
pub mod config;
mod server;
pub mod watches;

use crate::state::{Identity, Node};
use config::AgentConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tribune_core::agent::LocalAgent;
use tribune_core::catalog::Node as CatalogNode;
use tribune_core::dns::DnsConfig;
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
    if !config.dev && config.data_dir.is_none() {
        eprintln!("==> data_dir cannot be empty");
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
    runtime.block_on(serve(config, args.to_vec()))
}

/// Re-reads the config files the agent was started with and makes the
/// config-defined services and checks match them (SIGHUP,
/// `PUT /v1/agent/reload`). Other settings need a restart.
pub fn reload(node: &Node) -> Result<(), String> {
    let config = AgentConfig::from_args(&node.identity.args)?;
    let now = crate::clock::now();
    node.with_agent(|agent| agent.reload(now, config.services, config.checks))
        .map_err(|e| format!("Failed reloading services: {e}"))?;
    crate::log::info("agent: reloaded configuration");
    Ok(())
}

/// Reloads on every SIGHUP, as Consul does.
async fn reload_on_hangup(node: Arc<Node>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        crate::log::warn("agent: cannot listen for SIGHUP; reload with `tribune reload`");
        return;
    };
    while hangups.recv().await.is_some() {
        crate::log::info("agent: caught signal: hangup, reloading");
        if let Err(e) = reload(&node) {
            crate::log::warn(&format!("agent: reload failed: {e}"));
        }
    }
}

async fn serve(config: AgentConfig, args: Vec<String>) -> i32 {
    let started = std::time::Instant::now();
    let seed = crate::clock::os_seed();
    let mut rng = Rng::from_seed(seed);
    let node_id = match &config.data_dir {
        Some(dir) if !config.dev => match server::node_id(dir, &mut rng) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("==> {e}");
                return 1;
            }
        },
        _ => rng.uuid().to_string(),
    };
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
    let dns_sockets = match config.dns_port {
        None => None,
        Some(port) => match bind_dns(port, http_addr).await {
            Ok(sockets) => Some(sockets),
            Err(e) => {
                eprintln!("==> Error starting agent: {e}");
                return 1;
            }
        },
    };
    let dns_port = dns_sockets
        .as_ref()
        .and_then(|(udp, _)| udp.local_addr().ok())
        .map(|a| i32::from(a.port()))
        .unwrap_or(-1);
    let identity = Identity {
        node_name: config.node_name.clone(),
        node_id: node_id.clone(),
        datacenter: config.datacenter.clone(),
        bind_addr: config.bind_addr.clone(),
        server_port: config.server_port,
        serf_lan_port: config.serf_lan_port,
        http_addr: bound.clone(),
        server: config.dev || config.server,
        args,
    };
    // The address gossip announces, so the node's own registration and the
    // leader's (from the pool) agree.
    let address = match config.bind_addr.parse::<std::net::IpAddr>() {
        Ok(ip) => server::advertise_ip(ip).to_string(),
        Err(_) => config.bind_addr.clone(),
    };
    let mut local = LocalAgent::new(
        CatalogNode {
            id: node_id.clone(),
            name: config.node_name.clone(),
            address: address.clone(),
            datacenter: config.datacenter.clone(),
            tagged_addresses: [
                ("lan".to_string(), address.clone()),
                ("wan".to_string(), address.clone()),
            ]
            .into_iter()
            .collect(),
            meta: [("consul-network-segment".to_string(), String::new())]
                .into_iter()
                .collect(),
            create_index: 0,
            modify_index: 0,
        },
        rng.next_u64(),
    );
    local.set_script_policy(config.script_policy);
    let node = if config.dev {
        Node::new(identity, local, rng.next_u64())
    } else {
        let (node, proposals) = Node::new_replicated(identity, local, rng.next_u64());
        let started = match config.server {
            true => server::start(&config, &node, &node_id).await,
            false => client::start(&config, &node, &node_id, rng.next_u64()).await,
        };
        if let Err(e) = started {
            eprintln!("==> Error starting agent: {e}");
            return 1;
        }
        tokio::spawn(node.clone().run_proposals(proposals));
        node
    };
    let (runs, run_requests) = tokio::sync::mpsc::unbounded_channel();
    node.set_check_runner(runs);
    tokio::spawn(crate::checks::dispatch(node.clone(), run_requests));
    let now = crate::clock::now();
    let (services, checks) = (config.services.clone(), config.checks.clone());
    if let Err(e) = node.with_agent(|agent| agent.reload(now, services, checks)) {
        eprintln!("==> Error starting agent: Failed to register services from config: {e}");
        return 1;
    }
    tokio::spawn(node.clone().run_timers());
    tokio::spawn(crate::anti_entropy::run(
        node.clone(),
        config.ae_interval,
        rng.next_u64(),
    ));
    tokio::spawn(reload_on_hangup(node.clone()));
    let encrypted = node.gossip().is_some_and(|g| g.encrypted());
    print_banner(&config, &node_id, &bound, dns_port, encrypted);
    crate::log::info(&format!(
        "agent: started in {} µs; rng seed {seed:#018x}",
        started.elapsed().as_micros()
    ));
    if let Some((dns_udp, dns_tcp)) = dns_sockets {
        let dns_config = Arc::new(dns_config(&config));
        let spawned = dns_udp.into_std().and_then(|socket| {
            crate::dns::spawn_udp_threads(socket, node.clone(), dns_config.clone())
        });
        if let Err(e) = spawned {
            eprintln!("==> Error starting agent: DNS over UDP: {e}");
            return 1;
        }
        tokio::spawn(crate::dns::serve_tcp(dns_tcp, node.clone(), dns_config));
    }
    tokio::spawn(crate::http::serve(listener, node));
    watches::start(config.watches.clone(), &bound);
    wait_for_shutdown().await;
    crate::log::info("agent: caught signal, shutting down");
    0
}

/// Binds DNS on UDP and TCP, the same port on both (Consul serves both on
/// 8600). Port 0 lets UDP pick a free port and TCP take the same one; if
/// that TCP port is busy, another pick is tried a few times.
async fn bind_dns(port: u16, http_addr: SocketAddr) -> Result<(UdpSocket, TcpListener), String> {
    let wanted = SocketAddr::new(http_addr.ip(), port);
    let attempts = if port == 0 { 8 } else { 1 };
    let mut last_error = String::new();
    for _ in 0..attempts {
        let udp = UdpSocket::bind(wanted)
            .await
            .map_err(|e| format!("failed to listen on {wanted} (DNS, udp): {e}"))?;
        let addr = udp
            .local_addr()
            .map_err(|e| format!("failed to read the DNS address: {e}"))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = format!("failed to listen on {addr} (DNS, tcp): {e}"),
        }
    }
    Err(last_error)
}

fn dns_config(config: &AgentConfig) -> DnsConfig {
    let mut dns = DnsConfig::new(&config.datacenter);
    dns.domain = config.domain.clone();
    dns.alt_domain = config.alt_domain.clone();
    dns.recursors = config.recursors.clone();
    dns.recursor_timeout = config.recursor_timeout;
    let options = &config.dns;
    dns.node_ttl_secs = options.node_ttl_secs;
    dns.service_ttls = options.service_ttls.clone();
    dns.service_ttl_secs = dns.service_ttls.remove("*").unwrap_or(0);
    dns.only_passing = options.only_passing;
    dns.enable_truncate = options.enable_truncate;
    dns.udp_answer_limit = options.udp_answer_limit;
    dns.a_record_limit = options.a_record_limit;
    dns
}

fn print_banner(config: &AgentConfig, node_id: &str, http: &str, dns_port: i32, encrypted: bool) {
    println!("==> Starting tribune agent...");
    println!("              Version: '{}'", env!("CARGO_PKG_VERSION"));
    println!("              Node ID: '{node_id}'");
    println!("            Node name: '{}'", config.node_name);
    println!(
        "           Datacenter: '{}' (Segment: '<all>')",
        config.datacenter
    );
    println!(
        "               Server: {} (Bootstrap: {})",
        config.dev || config.server,
        config.bootstrap_expect.is_some()
    );
    println!(
        "          Client Addr: [{}] (HTTP: {}, HTTPS: -1, gRPC: -1, DNS: {dns_port})",
        config.client_addr,
        http.rsplit(':').next().unwrap_or("")
    );
    // The dev agent runs no gossip pool; clients run no WAN pool.
    let lan = match config.dev {
        true => -1,
        false => i32::from(config.serf_lan_port),
    };
    let wan = match (config.server && !config.dev, config.serf_wan_port) {
        (true, Some(port)) => i32::from(port),
        _ => -1,
    };
    println!(
        "         Cluster Addr: {} (LAN: {lan}, WAN: {wan})",
        config.bind_addr
    );
    println!("       Gossip Encrypt: {encrypted}");
    println!();
    println!("==> tribune agent running! HTTP API at http://{http}");
    if config.dev {
        println!(
            "    In-memory dev mode: nothing is persisted. Gossip and gRPC are not served yet."
        );
    } else if !config.server {
        println!(
            "    Client agent: serf LAN gossip on {}:{}, requests for the cluster's state go to \
             the servers found there; data in {}.",
            config.bind_addr,
            config.serf_lan_port,
            config.data_dir.as_deref().unwrap_or("")
        );
    } else {
        println!(
            "    Raft server: RPC on {}:{}, serf LAN gossip and join exchange on {}:{}, data in {}.",
            config.bind_addr,
            config.server_port,
            config.bind_addr,
            config.serf_lan_port,
            config.data_dir.as_deref().unwrap_or("")
        );
    }
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

//! `tribune agent` configuration: Consul's single-dash flags plus JSON and
//! HCL config files (`-config-file`, `-config-dir`) and `-hcl` fragments,
//! flags winning over files. HCL is turned into the JSON value of the same
//! config (`tribune_core::hcl`), so both formats share every rule below.

use crate::cli::flags::{parse, FlagSpec, Parsed};
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use tribune_core::agent::ScriptPolicy;
use tribune_core::api::body::{
    bad_check_key, bad_service_key, decode_agent_service_value, decode_check_value,
};
use tribune_core::api::ApiError;
use tribune_core::catalog::Service;
use tribune_core::checks::CheckSpec;
use tribune_core::dns::RECURSOR_TIMEOUT_DEFAULT;
use tribune_core::hcl;
use tribune_core::limits::CONFIG_FILE_BYTES_MAX;
use tribune_core::time::{parse_duration, Duration};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub dev: bool,
    pub server: bool,
    pub node_name: String,
    pub datacenter: String,
    pub bind_addr: String,
    pub client_addr: String,
    pub http_port: u16,
    /// `None` when disabled (`-dns-port=-1`, `ports.dns = -1`, as Consul).
    pub dns_port: Option<u16>,
    pub serf_lan_port: u16,
    /// `None` when disabled (`-serf-wan-port=-1`, `ports.serf_wan = -1`,
    /// as Consul): the server joins no WAN pool.
    pub serf_wan_port: Option<u16>,
    pub server_port: u16,
    pub grpc_port: u16,
    pub data_dir: Option<String>,
    /// `-bootstrap-expect`: form a cluster once this many servers know
    /// each other (`-bootstrap` is 1). `None`: join an existing cluster.
    pub bootstrap_expect: Option<u32>,
    /// `-retry-join` and `-join` addresses (another agent's LAN address).
    pub join: Vec<String>,
    /// `-retry-join-wan` and `-join-wan` addresses (another server's WAN
    /// address, port 8302 by default); servers only.
    pub join_wan: Vec<String>,
    /// Take a Raft snapshot after this many entries (Consul's
    /// `raft_snapshot_threshold`, 16384).
    pub raft_snapshot_threshold: u64,
    /// Entries kept behind a snapshot for slow followers (Consul's
    /// `raft_trailing_logs`, 10240).
    pub raft_trailing_logs: u64,
    /// Also take a snapshot once this many bytes were appended to the Raft
    /// log since the last one (`raft_snapshot_bytes`, 256 MiB; tribune's,
    /// Consul snapshots by entry count only): a few huge entries must not
    /// grow the log without bound.
    pub raft_snapshot_bytes: u64,
    /// `performance.raft_multiplier` (1–10): scales Raft's heartbeat and
    /// election timeouts, as in Consul. Default 2: heartbeats every
    /// 100 ms, elections after 1.2–1.6 s of silence (openraft's leader
    /// lease, 800 ms, then a random 400–800 ms).
    pub raft_multiplier: u32,
    pub log_level: String,
    /// DNS domain, lowercase, without the final dot (`-domain`, `consul`).
    pub domain: String,
    /// A second domain answered like `domain` (`-alt-domain`).
    pub alt_domain: Option<String>,
    /// `-enable-script-checks` / `-enable-local-script-checks`.
    pub script_policy: ScriptPolicy,
    /// Services (with their checks) and checks defined in config files.
    pub services: Vec<(Service, Vec<CheckSpec>)>,
    pub checks: Vec<CheckSpec>,
    /// `watches` from config files, run by the agent.
    pub watches: Vec<super::watches::WatchSpec>,
    /// Anti-entropy full-sync interval (default 1 min).
    pub ae_interval: tribune_core::time::Duration,
    /// Upstream DNS servers, in order: `recursors` from files, then each
    /// `-recursor` (Consul appends both). Port 53 unless given.
    pub recursors: Vec<SocketAddr>,
    /// `dns_config.recursor_timeout` (Consul's default 2s).
    pub recursor_timeout: Duration,
    /// The rest of `dns_config`.
    pub dns: DnsOptions,
    /// `-encrypt` / `encrypt`: the base64 gossip key (checked here; a
    /// keyring file in the data directory wins over it at start).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` / `encrypt_verify_outgoing` (default on).
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
}

const VALUE_FLAGS: [&str; 23] = [
    "node",
    "datacenter",
    "bind",
    "client",
    "http-port",
    "dns-port",
    "serf-lan-port",
    "serf-wan-port",
    "server-port",
    "grpc-port",
    "data-dir",
    "config-file",
    "config-dir",
    "log-level",
    "domain",
    "alt-domain",
    "recursor",
    "bootstrap-expect",
    "retry-join",
    "join",
    "retry-join-wan",
    "join-wan",
    "encrypt",
];

fn specs() -> Vec<FlagSpec> {
    let mut specs: Vec<FlagSpec> = VALUE_FLAGS
        .iter()
        .map(|name| FlagSpec {
            name,
            takes_value: true,
        })
        .collect();
    specs.push(FlagSpec {
        name: "dev",
        takes_value: false,
    });
    for name in [
        "server",
        "bootstrap",
        "enable-script-checks",
        "enable-local-script-checks",
    ] {
        specs.push(FlagSpec {
            name,
            takes_value: false,
        });
    }
    // `-hcl '<fragment>'`, repeatable, as Consul.
    specs.push(FlagSpec {
        name: "hcl",
        takes_value: true,
    });
    specs
}

/// The subset of Consul's config-file keys the agent uses so far.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    node_name: Option<String>,
    datacenter: Option<String>,
    bind_addr: Option<String>,
    client_addr: Option<String>,
    data_dir: Option<String>,
    log_level: Option<String>,
    server: Option<bool>,
    bootstrap: Option<bool>,
    bootstrap_expect: Option<u32>,
    retry_join: Option<Vec<String>>,
    start_join: Option<Vec<String>>,
    retry_join_wan: Option<Vec<String>>,
    start_join_wan: Option<Vec<String>>,
    raft_snapshot_threshold: Option<u64>,
    raft_trailing_logs: Option<u64>,
    raft_snapshot_bytes: Option<u64>,
    performance: FilePerformance,
    domain: Option<String>,
    alt_domain: Option<String>,
    recursors: Option<Vec<String>>,
    dns_config: FileDnsConfig,
    ports: FilePorts,
    enable_script_checks: Option<bool>,
    enable_local_script_checks: Option<bool>,
    #[serde(alias = "Service")]
    service: Option<Value>,
    #[serde(alias = "Services")]
    services: Option<Vec<Value>>,
    #[serde(alias = "Check")]
    check: Option<Value>,
    #[serde(alias = "Checks")]
    checks: Option<Vec<Value>>,
    watches: Option<Vec<Value>>,
    /// Anti-entropy full-sync interval (Consul's undocumented `ae_interval`).
    ae_interval: Option<String>,
    encrypt: Option<String>,
    encrypt_verify_incoming: Option<bool>,
    encrypt_verify_outgoing: Option<bool>,
}

/// Services and checks collected from every config file, in file order.
#[derive(Default)]
struct Definitions {
    services: Vec<(Service, Vec<CheckSpec>)>,
    checks: Vec<CheckSpec>,
    watches: Vec<super::watches::WatchSpec>,
}

/// The line of the first `"key"` in `text` (1-based), or for HCL of the
/// first bare `key` followed by `=` or `{`, to point at a bad key in a
/// config file.
fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let last = path.rsplit(['.', ']']).find(|s| !s.is_empty())?;
    let last = last.split('[').next()?;
    let needle = format!("\"{last}\"");
    let at = text.find(&needle).or_else(|| bare_key_at(text, last))?;
    Some(text[..at].matches('\n').count() + 1)
}

fn bare_key_at(text: &str, key: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    text.match_indices(key).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + key.len()..].trim_start_matches([' ', '\t']);
        !before.is_some_and(is_ident) && (after.starts_with('=') || after.starts_with('{'))
    })
}

fn definition_error(
    name: &str,
    text: &str,
    what: &str,
    key: Option<String>,
    e: ApiError,
) -> String {
    let why = match e {
        ApiError::BodyDecode(why) => why,
        other => other.to_string(),
    };
    match key {
        Some(key) => {
            let path = format!("{what}.{key}");
            match line_of_key(text, &key) {
                Some(line) => format!("Error parsing {name}: {path} (line {line}): {why}"),
                None => format!("Error parsing {name}: {path}: {why}"),
            }
        }
        None => format!("Error parsing {name}: {what}: {why}"),
    }
}

/// Decodes a file's `service`/`services`/`check`/`checks` with the same
/// decoders as the agent API, so both accept the same definitions.
fn load_definitions(
    name: &str,
    text: &str,
    file: &mut FileConfig,
    into: &mut Definitions,
) -> Result<(), String> {
    let services = file
        .service
        .take()
        .map(|s| ("service".to_string(), s))
        .into_iter()
        .chain(
            file.services
                .take()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("services[{i}]"), s)),
        );
    for (what, value) in services {
        let reg = decode_agent_service_value(value.clone())
            .map_err(|e| definition_error(name, text, &what, bad_service_key(&value), e))?;
        into.services.push((reg.service, reg.checks));
    }
    let checks = file
        .check
        .take()
        .map(|c| ("check".to_string(), c))
        .into_iter()
        .chain(
            file.checks
                .take()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("checks[{i}]"), c)),
        );
    for (what, value) in checks {
        let spec = decode_check_value(value.clone())
            .map_err(|e| definition_error(name, text, &what, bad_check_key(&value), e))?;
        into.checks.push(spec);
    }
    for (i, value) in file.watches.take().unwrap_or_default().iter().enumerate() {
        let spec = super::watches::decode(value)
            .map_err(|e| format!("Error parsing {name}: watches[{i}]: {e}"))?;
        into.watches.push(spec);
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilePerformance {
    raft_multiplier: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileDnsConfig {
    recursor_timeout: Option<String>,
    node_ttl: Option<String>,
    service_ttl: Option<std::collections::BTreeMap<String, String>>,
    only_passing: Option<bool>,
    enable_truncate: Option<bool>,
    udp_answer_limit: Option<u32>,
    a_record_limit: Option<u32>,
    /// Accepted for compatibility: DNS reads are always served from the
    /// local state (stale allowed), Consul's default.
    allow_stale: Option<bool>,
    max_stale: Option<String>,
}

/// `dns_config` settings the DNS server uses (Consul's defaults when unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsOptions {
    pub node_ttl_secs: u32,
    /// `service_ttl`, `*` included.
    pub service_ttls: std::collections::BTreeMap<String, u32>,
    pub only_passing: bool,
    pub enable_truncate: bool,
    pub udp_answer_limit: usize,
    pub a_record_limit: usize,
}

/// A `dns_config` TTL: a Go duration, whole seconds on the wire.
fn ttl_secs(key: &str, text: &str) -> Result<u32, String> {
    let d = parse_duration(text)
        .map_err(|_| format!("dns_config.{key}: {text:?} is not a duration"))?;
    u32::try_from(d.as_secs()).map_err(|_| format!("dns_config.{key}: {text:?} is too long"))
}

fn dns_options(file: &FileDnsConfig) -> Result<DnsOptions, String> {
    let mut service_ttls = std::collections::BTreeMap::new();
    for (service, ttl) in file.service_ttl.iter().flatten() {
        service_ttls.insert(
            service.clone(),
            ttl_secs(&format!("service_ttl.{service}"), ttl)?,
        );
    }
    let udp_answer_limit = match file.udp_answer_limit {
        Some(0) => return Err("dns_config.udp_answer_limit: must be at least 1".into()),
        Some(n) => n as usize,
        None => tribune_core::dns::UDP_ANSWER_LIMIT_DEFAULT,
    };
    Ok(DnsOptions {
        node_ttl_secs: match &file.node_ttl {
            Some(text) => ttl_secs("node_ttl", text)?,
            None => 0,
        },
        service_ttls,
        only_passing: file.only_passing.unwrap_or(false),
        enable_truncate: file.enable_truncate.unwrap_or(false),
        udp_answer_limit,
        a_record_limit: file.a_record_limit.unwrap_or(0) as usize,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilePorts {
    http: Option<i32>,
    dns: Option<i32>,
    serf_lan: Option<i32>,
    serf_wan: Option<i32>,
    server: Option<i32>,
    grpc: Option<i32>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tribune-dev".to_string())
}

fn port(text: &str, flag: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("invalid value {text:?} for flag -{flag}: must be a port number"))
}

fn file_port(value: Option<i32>, default: u16, key: &str) -> Result<u16, String> {
    match value {
        None => Ok(default),
        // Consul uses -1 for "disabled"; nothing listens on these yet.
        Some(-1) => Ok(0),
        Some(v) => u16::try_from(v).map_err(|_| format!("ports.{key}: {v} is not a port number")),
    }
}

/// A recursor address: an IP, with a port or port 53 (`8.8.8.8`,
/// `127.0.0.1:5353`, `::1`, `[::1]:5353`), as Consul's `-recursor`.
fn recursor(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("-recursor: {text:?} is not an IP address or IP:port"))
}

/// A DNS domain as core wants it: lowercase, no final dot (Consul accepts
/// `consul` and `consul.` alike). Labels must fit DNS (1-63 bytes of
/// letters, digits, `-` and `_`).
fn dns_domain(text: &str, flag: &str) -> Result<String, String> {
    let domain = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if domain.len() > 253 || !domain.split('.').all(valid_label) {
        return Err(format!("-{flag}: {text:?} is not a valid DNS domain"));
    }
    Ok(domain)
}

/// The formats a config text may be in, chosen by file extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Hcl,
}

fn load_file(path: &Path, into: &mut FileConfig, defs: &mut Definitions) -> Result<(), String> {
    let name = path.display();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Format::Json,
        Some("hcl") => Format::Hcl,
        _ => return Err(format!("{name}: config files must end in .json or .hcl")),
    };
    let text = std::fs::read(path).map_err(|e| format!("Error reading {name}: {e}"))?;
    load_text(&name.to_string(), &text, format, into, defs)
}

/// One config text (a file, or a `-hcl` fragment named `name`): HCL is
/// parsed to the JSON value of the same config, then both formats go
/// through the same keys and definition decoders.
fn load_text(
    name: &str,
    text: &[u8],
    format: Format,
    into: &mut FileConfig,
    defs: &mut Definitions,
) -> Result<(), String> {
    if text.len() > CONFIG_FILE_BYTES_MAX {
        return Err(format!(
            "Error parsing {name}: {} bytes, over the {CONFIG_FILE_BYTES_MAX} allowed",
            text.len()
        ));
    }
    let mut file: FileConfig = match format {
        Format::Json => {
            serde_json::from_slice(text).map_err(|e| format!("Error parsing {name}: {e}"))?
        }
        Format::Hcl => {
            let text = std::str::from_utf8(text)
                .map_err(|e| format!("Error parsing {name}: not UTF-8: {e}"))?;
            let value = hcl::parse(text).map_err(|e| format!("Error parsing {name}:{e}"))?;
            serde_json::from_value(value).map_err(|e| format!("Error parsing {name}: {e}"))?
        }
    };
    let text = String::from_utf8_lossy(text);
    load_definitions(name, &text, &mut file, defs)?;
    macro_rules! take {
        ($($field:ident),*) => { $( if file.$field.is_some() { into.$field = file.$field; } )* };
    }
    take!(
        node_name,
        datacenter,
        bind_addr,
        client_addr,
        data_dir,
        log_level,
        server,
        bootstrap,
        bootstrap_expect,
        raft_snapshot_threshold,
        raft_trailing_logs,
        raft_snapshot_bytes,
        domain,
        alt_domain,
        enable_script_checks,
        enable_local_script_checks,
        ae_interval,
        encrypt,
        encrypt_verify_incoming,
        encrypt_verify_outgoing
    );
    for (from, to) in [
        (file.retry_join, &mut into.retry_join),
        (file.start_join, &mut into.start_join),
        (file.retry_join_wan, &mut into.retry_join_wan),
        (file.start_join_wan, &mut into.start_join_wan),
    ] {
        if let Some(addrs) = from {
            to.get_or_insert_with(Vec::new).extend(addrs);
        }
    }
    if let Some(recursors) = file.recursors {
        into.recursors
            .get_or_insert_with(Vec::new)
            .extend(recursors);
    }
    macro_rules! take_dns {
        ($($field:ident),*) => { $( if file.dns_config.$field.is_some() { into.dns_config.$field = file.dns_config.$field; } )* };
    }
    take_dns!(
        recursor_timeout,
        node_ttl,
        service_ttl,
        only_passing,
        enable_truncate,
        udp_answer_limit,
        a_record_limit,
        allow_stale,
        max_stale
    );
    macro_rules! take_port {
        ($($field:ident),*) => { $( if file.ports.$field.is_some() { into.ports.$field = file.ports.$field; } )* };
    }
    take_port!(http, dns, serf_lan, serf_wan, server, grpc);
    if file.performance.raft_multiplier.is_some() {
        into.performance.raft_multiplier = file.performance.raft_multiplier;
    }
    Ok(())
}

fn load_files(parsed: &Parsed) -> Result<(FileConfig, Definitions), String> {
    let mut config = FileConfig::default();
    let mut defs = Definitions::default();
    for file in parsed.all("config-file") {
        load_file(Path::new(file), &mut config, &mut defs)?;
    }
    for dir in parsed.all("config-dir") {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("Error reading {dir}: {e}"))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl")))
            .collect();
        paths.sort();
        for path in paths {
            load_file(&path, &mut config, &mut defs)?;
        }
    }
    // Consul merges `-hcl` fragments after every file.
    for fragment in parsed.all("hcl") {
        load_text(
            "-hcl",
            fragment.as_bytes(),
            Format::Hcl,
            &mut config,
            &mut defs,
        )?;
    }
    Ok((config, defs))
}

impl AgentConfig {
    pub fn from_args(args: &[String]) -> Result<AgentConfig, String> {
        let parsed = parse(args, &specs())?;
        if let Some(extra) = parsed.positional.first() {
            return Err(format!("unexpected argument {extra:?}"));
        }
        let (file, defs) = load_files(&parsed)?;
        let script_policy =
            if parsed.flag("enable-script-checks") || file.enable_script_checks.unwrap_or(false) {
                ScriptPolicy::Enabled
            } else if parsed.flag("enable-local-script-checks")
                || file.enable_local_script_checks.unwrap_or(false)
            {
                ScriptPolicy::LocalOnly
            } else {
                ScriptPolicy::Disabled
            };
        let text = |flag: &str, from_file: &Option<String>, default: &str| -> String {
            parsed
                .value(flag)
                .map(str::to_string)
                .or_else(|| from_file.clone())
                .unwrap_or_else(|| default.to_string())
        };
        let flag_port = |flag: &str, from_file: Option<i32>, default: u16, key: &str| match parsed
            .value(flag)
        {
            Some(v) => port(v, flag),
            None => file_port(from_file, default, key),
        };
        let config = AgentConfig {
            dev: parsed.flag("dev"),
            server: parsed.flag("server") || file.server.unwrap_or(false),
            node_name: text("node", &file.node_name, &hostname()),
            datacenter: text("datacenter", &file.datacenter, "dc1"),
            bind_addr: text("bind", &file.bind_addr, "127.0.0.1"),
            client_addr: text("client", &file.client_addr, "127.0.0.1"),
            http_port: flag_port("http-port", file.ports.http, 8500, "http")?,
            dns_port: match (parsed.value("dns-port"), file.ports.dns) {
                (Some("-1"), _) | (None, Some(-1)) => None,
                (_, from_file) => Some(flag_port("dns-port", from_file, 8600, "dns")?),
            },
            serf_lan_port: flag_port("serf-lan-port", file.ports.serf_lan, 8301, "serf_lan")?,
            serf_wan_port: match (parsed.value("serf-wan-port"), file.ports.serf_wan) {
                (Some("-1"), _) | (None, Some(-1)) => None,
                (_, from_file) => Some(flag_port("serf-wan-port", from_file, 8302, "serf_wan")?),
            },
            server_port: flag_port("server-port", file.ports.server, 8300, "server")?,
            grpc_port: flag_port("grpc-port", file.ports.grpc, 8502, "grpc")?,
            data_dir: parsed
                .value("data-dir")
                .map(str::to_string)
                .or(file.data_dir),
            bootstrap_expect: match (parsed.value("bootstrap-expect"), file.bootstrap_expect) {
                (Some(v), _) => {
                    Some(v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("-bootstrap-expect: {v:?} is not a positive number")
                    })?)
                }
                (None, Some(0)) => return Err("bootstrap_expect must be positive".into()),
                (None, Some(n)) => Some(n),
                (None, None) if parsed.flag("bootstrap") || file.bootstrap.unwrap_or(false) => {
                    Some(1)
                }
                (None, None) => None,
            },
            join: (file.retry_join.iter().flatten())
                .chain(file.start_join.iter().flatten())
                .chain(parsed.all("retry-join"))
                .chain(parsed.all("join"))
                .cloned()
                .collect(),
            join_wan: (file.retry_join_wan.iter().flatten())
                .chain(file.start_join_wan.iter().flatten())
                .chain(parsed.all("retry-join-wan"))
                .chain(parsed.all("join-wan"))
                .cloned()
                .collect(),
            raft_snapshot_threshold: file.raft_snapshot_threshold.unwrap_or(16384).max(1),
            raft_trailing_logs: file.raft_trailing_logs.unwrap_or(10240),
            raft_snapshot_bytes: file
                .raft_snapshot_bytes
                .unwrap_or(256 * 1024 * 1024)
                .max(1024 * 1024),
            raft_multiplier: match file.performance.raft_multiplier {
                None => 2,
                Some(m @ 1..=10) => m,
                Some(m) => {
                    return Err(format!(
                        "performance.raft_multiplier cannot be {m}. Must be between 1 and 10"
                    ))
                }
            },
            log_level: text("log-level", &file.log_level, "info"),
            domain: dns_domain(&text("domain", &file.domain, "consul"), "domain")?,
            alt_domain: match parsed.value("alt-domain").or(file.alt_domain.as_deref()) {
                Some(name) => Some(dns_domain(name, "alt-domain")?),
                None => None,
            },
            script_policy,
            services: defs.services,
            checks: defs.checks,
            watches: defs.watches,
            ae_interval: match &file.ae_interval {
                None => tribune_core::anti_entropy::SYNC_INTERVAL,
                Some(text) => match tribune_core::time::parse_duration(text) {
                    Ok(d) if d.as_nanos() > 0 => d,
                    _ => return Err(format!("ae_interval: invalid duration {text:?}")),
                },
            },
            recursors: (file.recursors.iter().flatten())
                .chain(parsed.all("recursor"))
                .map(|text| recursor(text))
                .collect::<Result<_, _>>()?,
            recursor_timeout: match &file.dns_config.recursor_timeout {
                Some(text) => parse_duration(text)
                    .ok()
                    .filter(|d| *d > Duration::ZERO)
                    .ok_or_else(|| {
                        format!("dns_config.recursor_timeout: {text:?} is not a duration")
                    })?,
                None => RECURSOR_TIMEOUT_DEFAULT,
            },
            dns: dns_options(&file.dns_config)?,
            encrypt: match parsed.value("encrypt").or(file.encrypt.as_deref()) {
                Some(key) => {
                    crate::keyring::decode_encrypt(key)
                        .map_err(|e| format!("encrypt has invalid key: {e}"))?;
                    Some(key.trim().to_string())
                }
                None => None,
            },
            encrypt_verify_incoming: file.encrypt_verify_incoming.unwrap_or(true),
            encrypt_verify_outgoing: file.encrypt_verify_outgoing.unwrap_or(true),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.datacenter.is_empty()
            || !self
                .datacenter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "Datacenter must be alpha-numeric with underscores and hypens: {:?}",
                self.datacenter
            ));
        }
        if self.alt_domain.as_ref() == Some(&self.domain) {
            return Err(format!(
                "alt_domain cannot be the same as domain: {:?}",
                self.domain
            ));
        }
        if self.node_name.is_empty() {
            return Err("Node name cannot be empty".into());
        }
        for (what, addr) in [("bind", &self.bind_addr), ("client", &self.client_addr)] {
            if addr.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("-{what}: {addr:?} is not an IP address"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_flags() {
        let c = AgentConfig::from_args(&args(&["-dev"])).expect("valid");
        assert!(c.dev);
        assert_eq!(
            (c.http_port, c.dns_port, c.datacenter.as_str()),
            (8500, Some(8600), "dc1")
        );
        let off = AgentConfig::from_args(&args(&["-dev", "-dns-port=-1"])).expect("valid");
        assert_eq!(off.dns_port, None, "-1 disables DNS, as in Consul");
        assert_eq!(c.client_addr, "127.0.0.1");
        let c = AgentConfig::from_args(&args(&[
            "--dev",
            "-http-port=9000",
            "-node",
            "n1",
            "-datacenter=east",
        ]))
        .expect("valid");
        assert_eq!(
            (c.http_port, c.node_name.as_str(), c.datacenter.as_str()),
            (9000, "n1", "east")
        );
    }

    #[test]
    fn dns_domains() {
        let c = AgentConfig::from_args(&args(&["-dev"])).expect("valid");
        assert_eq!((c.domain.as_str(), c.alt_domain), ("consul", None));
        let c = AgentConfig::from_args(&args(&[
            "-dev",
            "-domain=Example.COM.",
            "-alt-domain",
            "alt",
        ]))
        .expect("valid");
        assert_eq!(
            (c.domain.as_str(), c.alt_domain.as_deref()),
            ("example.com", Some("alt"))
        );
        for bad in [
            "-domain=",
            "-domain=a..b",
            "-domain=a b",
            "-alt-domain=consul",
        ] {
            assert!(
                AgentConfig::from_args(&args(&["-dev", bad])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(AgentConfig::from_args(&args(&["-dev", "-http-port=x"])).is_err());
        assert!(AgentConfig::from_args(&args(&["-dev", "-bogus"])).is_err());
        assert!(AgentConfig::from_args(&args(&["-dev", "-client=nope"])).is_err());
        assert!(AgentConfig::from_args(&args(&["-dev", "-datacenter=a b"])).is_err());
    }

    #[test]
    fn config_files_fill_in_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("tribune-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("a.json");
        std::fs::write(
            &file,
            r#"{"node_name":"from-file","datacenter":"dc9","ports":{"http":8555}}"#,
        )
        .expect("write");
        let c = AgentConfig::from_args(&args(&[
            "-dev",
            "-config-dir",
            dir.to_str().expect("utf8"),
            "-datacenter=dc2",
        ]))
        .expect("valid");
        assert_eq!(
            (c.node_name.as_str(), c.datacenter.as_str(), c.http_port),
            ("from-file", "dc2", 8555)
        );
        std::fs::write(dir.join("b.json"), "{not json").expect("write");
        assert!(AgentConfig::from_args(&args(&[
            "-dev",
            "-config-dir",
            dir.to_str().expect("utf8")
        ]))
        .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hcl_files_and_fragments_use_the_json_rules() {
        let dir = std::env::temp_dir().join(format!("tribune-config-hcl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("a.hcl");
        std::fs::write(
            &file,
            "node_name = \"from-hcl\"\nports {\n  http = 8555\n  dns = -1\n}\n\
             service {\n  name = \"web\"\n  port = 80\n  check { ttl = \"30s\" }\n}\n\
             service { name = \"db\" }\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf8");
        let c = AgentConfig::from_args(&args(&["-dev", "-config-file", path])).expect("valid");
        assert_eq!(
            (c.node_name.as_str(), c.http_port, c.dns_port),
            ("from-hcl", 8555, None)
        );
        let names: Vec<&str> = c.services.iter().map(|(s, _)| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"], "repeated service blocks are a list");
        assert_eq!(c.services[0].1.len(), 1, "web's TTL check");
        let c = AgentConfig::from_args(&args(&[
            "-dev",
            "-config-file",
            path,
            "-hcl",
            "datacenter = \"dc7\"",
            "-hcl=node_name = \"frag\"",
        ]))
        .expect("valid");
        assert_eq!(
            (c.datacenter.as_str(), c.node_name.as_str()),
            ("dc7", "frag")
        );

        std::fs::write(&file, "node_name = \"x\"\n  ports = {http = 8s}\n").expect("write");
        let e = AgentConfig::from_args(&args(&["-dev", "-config-file", path])).unwrap_err();
        assert!(
            e.starts_with(&format!("Error parsing {path}:2:19: ")),
            "{e}"
        );
        std::fs::write(
            &file,
            "service {\n  name = \"web\"\n  port = \"eighty\"\n}\n",
        )
        .expect("write");
        let e = AgentConfig::from_args(&args(&["-dev", "-config-file", path])).unwrap_err();
        assert!(
            e.starts_with(&format!("Error parsing {path}: service.port (line 3): ")),
            "{e}"
        );
        let e = AgentConfig::from_args(&args(&["-dev", "-hcl", "ports {"])).unwrap_err();
        assert!(e.starts_with("Error parsing -hcl:1:7: "), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn encrypt_keys_from_flags_and_files() {
        let key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
        let plain = AgentConfig::from_args(&args(&["-dev"])).expect("valid");
        assert_eq!(plain.encrypt, None);
        assert!(plain.encrypt_verify_incoming && plain.encrypt_verify_outgoing);
        let flag = format!("-encrypt={key}");
        let c = AgentConfig::from_args(&args(&["-dev", &flag])).expect("valid");
        assert_eq!(c.encrypt.as_deref(), Some(key));
        let c = AgentConfig::from_args(&args(&[
            "-dev",
            "-hcl",
            "encrypt = \"AAAAAAAAAAAAAAAAAAAAAA==\"\nencrypt_verify_incoming = false",
        ]))
        .expect("valid");
        assert_eq!(c.encrypt.as_deref(), Some("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!c.encrypt_verify_incoming && c.encrypt_verify_outgoing);
        for bad in ["-encrypt=AAAA", "-encrypt=not base64!", "-encrypt="] {
            let e = AgentConfig::from_args(&args(&["-dev", bad])).unwrap_err();
            assert!(e.starts_with("encrypt has invalid key: "), "{bad}: {e}");
        }
    }

    #[test]
    fn recursors_from_files_then_flags() {
        let dir =
            std::env::temp_dir().join(format!("tribune-recursor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("dns.json");
        std::fs::write(
            &file,
            r#"{"recursors":["10.0.0.1"],"dns_config":{"recursor_timeout":"500ms"}}"#,
        )
        .expect("write");
        let c = AgentConfig::from_args(&args(&[
            "-dev",
            "-config-file",
            file.to_str().expect("utf8"),
            "-recursor=127.0.0.1:5353",
            "-recursor",
            "::1",
        ]))
        .expect("valid");
        let expected: Vec<SocketAddr> = ["10.0.0.1:53", "127.0.0.1:5353", "[::1]:53"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        assert_eq!(c.recursors, expected);
        assert_eq!(c.recursor_timeout, Duration::from_millis(500));
        let plain = AgentConfig::from_args(&args(&["-dev"])).expect("valid");
        assert!(plain.recursors.is_empty());
        assert_eq!(plain.recursor_timeout, RECURSOR_TIMEOUT_DEFAULT);
        assert!(AgentConfig::from_args(&args(&["-dev", "-recursor=dns.google"])).is_err());
        std::fs::write(&file, r#"{"dns_config":{"recursor_timeout":"soon"}}"#).expect("write");
        let file_arg = file.to_str().expect("utf8");
        assert!(AgentConfig::from_args(&args(&["-dev", "-config-file", file_arg])).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}

//! `tribune agent` configuration: Consul's single-dash flags plus JSON config
//! files (`-config-file`, `-config-dir`), flags winning over files.

use crate::cli::flags::{parse, FlagSpec, Parsed};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use tribune_core::dns::RECURSOR_TIMEOUT_DEFAULT;
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
    pub serf_wan_port: u16,
    pub server_port: u16,
    pub grpc_port: u16,
    pub data_dir: Option<String>,
    pub log_level: String,
    /// DNS domain, lowercase, without the final dot (`-domain`, `consul`).
    pub domain: String,
    /// A second domain answered like `domain` (`-alt-domain`).
    pub alt_domain: Option<String>,
    /// Upstream DNS servers, in order: `recursors` from files, then each
    /// `-recursor` (Consul appends both). Port 53 unless given.
    pub recursors: Vec<SocketAddr>,
    /// `dns_config.recursor_timeout` (Consul's default 2s).
    pub recursor_timeout: Duration,
}

const VALUE_FLAGS: [&str; 17] = [
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
    specs.push(FlagSpec {
        name: "server",
        takes_value: false,
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
    domain: Option<String>,
    alt_domain: Option<String>,
    recursors: Option<Vec<String>>,
    dns_config: FileDnsConfig,
    ports: FilePorts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileDnsConfig {
    recursor_timeout: Option<String>,
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

fn load_file(path: &Path, into: &mut FileConfig) -> Result<(), String> {
    let name = path.display();
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {}
        Some("hcl") => {
            return Err(format!(
                "{name}: HCL config files are not supported yet; write the same keys as JSON"
            ))
        }
        _ => return Err(format!("{name}: config files must end in .json")),
    }
    let text = std::fs::read(path).map_err(|e| format!("Error reading {name}: {e}"))?;
    let file: FileConfig =
        serde_json::from_slice(&text).map_err(|e| format!("Error parsing {name}: {e}"))?;
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
        domain,
        alt_domain
    );
    if let Some(recursors) = file.recursors {
        into.recursors
            .get_or_insert_with(Vec::new)
            .extend(recursors);
    }
    if file.dns_config.recursor_timeout.is_some() {
        into.dns_config.recursor_timeout = file.dns_config.recursor_timeout;
    }
    macro_rules! take_port {
        ($($field:ident),*) => { $( if file.ports.$field.is_some() { into.ports.$field = file.ports.$field; } )* };
    }
    take_port!(http, dns, serf_lan, serf_wan, server, grpc);
    Ok(())
}

fn load_files(parsed: &Parsed) -> Result<FileConfig, String> {
    let mut config = FileConfig::default();
    for file in parsed.all("config-file") {
        load_file(Path::new(file), &mut config)?;
    }
    for dir in parsed.all("config-dir") {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("Error reading {dir}: {e}"))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl")))
            .collect();
        paths.sort();
        for path in paths {
            load_file(&path, &mut config)?;
        }
    }
    Ok(config)
}

impl AgentConfig {
    pub fn from_args(args: &[String]) -> Result<AgentConfig, String> {
        let parsed = parse(args, &specs())?;
        if let Some(extra) = parsed.positional.first() {
            return Err(format!("unexpected argument {extra:?}"));
        }
        let file = load_files(&parsed)?;
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
            serf_wan_port: flag_port("serf-wan-port", file.ports.serf_wan, 8302, "serf_wan")?,
            server_port: flag_port("server-port", file.ports.server, 8300, "server")?,
            grpc_port: flag_port("grpc-port", file.ports.grpc, 8502, "grpc")?,
            data_dir: parsed
                .value("data-dir")
                .map(str::to_string)
                .or(file.data_dir),
            log_level: text("log-level", &file.log_level, "info"),
            domain: dns_domain(&text("domain", &file.domain, "consul"), "domain")?,
            alt_domain: match parsed.value("alt-domain").or(file.alt_domain.as_deref()) {
                Some(name) => Some(dns_domain(name, "alt-domain")?),
                None => None,
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

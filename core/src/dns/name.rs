//! Parsing a queried name into what it asks for (Consul's DNS name forms).
//!
//! Names are read case-insensitively, from the right: the domain (`consul`
//! or the alt domain), then an optional datacenter, then the kind
//! (`service`, `node`, `addr`, `query`), then what the kind needs:
//!
//! ```text
//! [<tag>.]<service>.service[.<dc>].<domain>
//! _<service>._<tag>.service[.<dc>].<domain>     (RFC 2782; _tcp/_udp = no tag)
//! <node>.node[.<dc>].<domain>
//! <8 or 32 hex digits>.addr[.<dc>].<domain>
//! <reversed IPv4>.in-addr.arpa, <reversed nibbles>.ip6.arpa   (PTR)
//! ```

use super::DnsConfig;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a name asks for. Names are lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The domain itself (`consul.`): SOA and NS live here.
    Apex,
    Service {
        service: String,
        tag: Option<String>,
        datacenter: String,
    },
    Node {
        node: String,
        datacenter: String,
    },
    Addr {
        ip: IpAddr,
        datacenter: String,
    },
    /// Prepared queries (`<name>.query.consul`): not implemented yet.
    PreparedQuery {
        name: String,
    },
    /// A reverse lookup.
    Ptr(IpAddr),
    /// In our domain but no such form (`foo.bar.consul`).
    Invalid,
    /// Not our domain: refused (no recursors).
    NotOurs,
}

/// A parsed name and the domain it was asked under (answers use it, so
/// `alt_domain` queries get `alt_domain` targets, as in Consul 1.11+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedName {
    pub lookup: Lookup,
    pub domain: String,
}

const KINDS: [&str; 4] = ["service", "node", "addr", "query"];

pub fn parse(name: &str, config: &DnsConfig) -> ParsedName {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if let Some(ip) = parse_ptr(&lower) {
        return ParsedName {
            lookup: Lookup::Ptr(ip),
            domain: config.domain.clone(),
        };
    }
    let domains = std::iter::once(&config.domain).chain(config.alt_domain.as_ref());
    for domain in domains {
        let rest = if lower == *domain {
            Some("")
        } else {
            lower
                .strip_suffix(domain.as_str())
                .and_then(|r| r.strip_suffix('.'))
        };
        if let Some(rest) = rest {
            let lookup = parse_in_domain(rest, &config.datacenter);
            return ParsedName {
                lookup,
                domain: domain.clone(),
            };
        }
    }
    ParsedName {
        lookup: Lookup::NotOurs,
        domain: config.domain.clone(),
    }
}

fn parse_in_domain(rest: &str, local_dc: &str) -> Lookup {
    if rest.is_empty() {
        return Lookup::Apex;
    }
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Lookup::Invalid;
    }
    let last = labels.len() - 1;
    let (kind_at, datacenter) = if KINDS.contains(&labels[last]) {
        (last, local_dc.to_string())
    } else if last >= 1 && KINDS.contains(&labels[last - 1]) {
        (last - 1, labels[last].to_string())
    } else if labels.len() == 2 && labels.iter().all(|l| l.starts_with('_')) {
        // RFC 2782 without the `service` label: _web._tcp.consul
        return rfc2782(&labels, local_dc.to_string());
    } else {
        return Lookup::Invalid;
    };
    let head = &labels[..kind_at];
    if head.is_empty() {
        return Lookup::Invalid;
    }
    match labels[kind_at] {
        "service" => service(head, datacenter),
        "node" => Lookup::Node {
            node: head.join("."),
            datacenter,
        },
        "addr" if head.len() == 1 => match parse_hex_ip(head[0]) {
            Some(ip) => Lookup::Addr { ip, datacenter },
            None => Lookup::Invalid,
        },
        "query" => Lookup::PreparedQuery {
            name: head.join("."),
        },
        _ => Lookup::Invalid,
    }
}

fn service(head: &[&str], datacenter: String) -> Lookup {
    match head {
        [service] => Lookup::Service {
            service: service.to_string(),
            tag: None,
            datacenter,
        },
        [a, b] if a.starts_with('_') && b.starts_with('_') => rfc2782(head, datacenter),
        [tag, service] => Lookup::Service {
            service: service.to_string(),
            tag: Some(tag.to_string()),
            datacenter,
        },
        _ => Lookup::Invalid,
    }
}

/// `_<service>._<tag>`: `_tcp` and `_udp` are protocols, not tags.
fn rfc2782(head: &[&str], datacenter: String) -> Lookup {
    let service = head[0].trim_start_matches('_').to_string();
    let tag = head[1].trim_start_matches('_');
    let tag = (!matches!(tag, "tcp" | "udp")).then(|| tag.to_string());
    if service.is_empty() {
        return Lookup::Invalid;
    }
    Lookup::Service {
        service,
        tag,
        datacenter,
    }
}

/// `7f000001` → 127.0.0.1; 32 hex digits → an IPv6 address.
pub fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        _ => None,
    }
}

/// The `.addr` label for an address (the inverse of [`parse_hex_ip`]).
pub fn hex_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

fn parse_ptr(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = Vec::with_capacity(4);
        for label in rest.split('.') {
            octets.push(label.parse().ok()?);
        }
        let octets: [u8; 4] = octets.try_into().ok()?;
        let [d, c, b, a] = octets;
        return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let hex: String = nibbles.iter().rev().copied().collect();
    u128::from_str_radix(&hex, 16)
        .ok()
        .map(|v| IpAddr::V6(Ipv6Addr::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Lookup {
        let mut config = DnsConfig::new("dc1");
        config.alt_domain = Some("alt.example".into());
        parse(name, &config).lookup
    }

    fn svc(service: &str, tag: Option<&str>, dc: &str) -> Lookup {
        Lookup::Service {
            service: service.into(),
            tag: tag.map(str::to_string),
            datacenter: dc.into(),
        }
    }

    #[test]
    fn name_forms() {
        let table: Vec<(&str, Lookup)> = vec![
            ("web.service.consul.", svc("web", None, "dc1")),
            ("WEB.Service.CONSUL", svc("web", None, "dc1")),
            ("web.service.dc2.consul.", svc("web", None, "dc2")),
            ("v1.web.service.consul.", svc("web", Some("v1"), "dc1")),
            ("v1.web.service.dc2.consul.", svc("web", Some("v1"), "dc2")),
            ("_web._tcp.service.consul.", svc("web", None, "dc1")),
            ("_web._v1.service.consul.", svc("web", Some("v1"), "dc1")),
            ("_web._tcp.consul.", svc("web", None, "dc1")),
            ("node.service.consul.", svc("node", None, "dc1")),
            (
                "n1.node.consul.",
                Lookup::Node {
                    node: "n1".into(),
                    datacenter: "dc1".into(),
                },
            ),
            (
                "n1.node.dc3.consul.",
                Lookup::Node {
                    node: "n1".into(),
                    datacenter: "dc3".into(),
                },
            ),
            (
                "7f000001.addr.dc1.consul.",
                Lookup::Addr {
                    ip: "127.0.0.1".parse().expect("ip"),
                    datacenter: "dc1".into(),
                },
            ),
            (
                "pg.query.consul.",
                Lookup::PreparedQuery { name: "pg".into() },
            ),
            ("consul.", Lookup::Apex),
            ("web.service.alt.example.", svc("web", None, "dc1")),
            (
                "1.0.0.127.in-addr.arpa.",
                Lookup::Ptr("127.0.0.1".parse().expect("ip")),
            ),
            ("foo.consul.", Lookup::Invalid),
            ("a.b.c.service.consul.", Lookup::Invalid),
            ("service.consul.", Lookup::Invalid),
            ("zz.addr.consul.", Lookup::Invalid),
            ("a..service.consul.", Lookup::Invalid),
            ("example.com.", Lookup::NotOurs),
            ("notconsul.", Lookup::NotOurs),
            ("1.2.3.in-addr.arpa.", Lookup::NotOurs),
        ];
        for (name, want) in table {
            assert_eq!(lookup(name), want, "{name}");
        }
    }

    #[test]
    fn alt_domain_is_remembered() {
        let mut config = DnsConfig::new("dc1");
        config.alt_domain = Some("alt.example".into());
        assert_eq!(
            parse("web.service.alt.example", &config).domain,
            "alt.example"
        );
        assert_eq!(parse("web.service.consul", &config).domain, "consul");
    }

    #[test]
    fn hex_addresses_round_trip() {
        for ip in ["10.1.2.3", "255.255.255.255", "::1", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(parse_hex_ip(&hex_ip(ip)), Some(ip));
        }
        assert_eq!(parse_hex_ip("7f00001"), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        assert_eq!(parse_ptr(v6), Some("2001:db8::1".parse().expect("ip")));
    }
}

//! Consul's DNS interface without the wire format: which records answer a
//! question (name parsing in [`name`], answer selection in [`answer`]). The
//! shell decodes packets (hickory-proto), asks [`answer::answer`] under the
//! state lock, and encodes the result; truncation to the UDP size is the
//! shell's, since only it knows the encoded sizes.
//!
//! Behaviour follows Consul's DNS (see `../shared/CONSUL-REFERENCE.md` §3):
//! TTL 0 by default, a fresh shuffle on every answer, instances with a
//! critical check left out, NXDOMAIN + SOA when nothing matches, NOERROR + SOA
//! (NODATA) for names that exist without records of the asked type.
//!
//! Names outside the domains go to the configured recursors (the shell does
//! the exchange; core only decides, see [`Answer::forward`]), and so do
//! reverse lookups that match nothing here, as Consul's `handlePtr`
//! recurses; with no recursors they are refused.

pub mod answer;
pub mod cache;
pub mod name;
#[cfg(test)]
mod tests;

use crate::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Consul's default `dns_config.recursor_timeout`.
pub const RECURSOR_TIMEOUT_DEFAULT: Duration = Duration::from_millis(2_000);

/// Consul's default `dns_config.udp_answer_limit`.
pub const UDP_ANSWER_LIMIT_DEFAULT: usize = 3;
/// Consul caps `udp_answer_limit` at this (`maxUDPAnswerLimit`).
pub const UDP_ANSWER_LIMIT_MAX: usize = 8;

/// What the agent's DNS server is configured with (Consul's `dns_config`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    /// The domain, lowercase, without the trailing dot (`consul`).
    pub domain: String,
    /// `alt_domain`, same form, if any.
    pub alt_domain: Option<String>,
    /// The agent's datacenter.
    pub datacenter: String,
    pub node_ttl_secs: u32,
    /// `dns_config.service_ttl["*"]`: the TTL of services without their own.
    pub service_ttl_secs: u32,
    /// `dns_config.service_ttl` entries other than `*`: exact names, or
    /// prefixes ending in `*` (`db*`); the longest match wins, as Consul.
    pub service_ttls: std::collections::BTreeMap<String, u32>,
    /// Answers kept in a plain (non-EDNS) UDP response
    /// (`dns_config.udp_answer_limit`, Consul's default 3).
    pub udp_answer_limit: usize,
    /// Set the TC bit when a UDP answer was cut (`dns_config.enable_truncate`).
    pub enable_truncate: bool,
    /// Leave out instances with a warning check too.
    pub only_passing: bool,
    /// Cap on A/AAAA answers after the shuffle (`a_record_limit`); 0 = none.
    pub a_record_limit: usize,
    /// Upstream DNS servers for names outside the domains (`recursors`,
    /// `-recursor`), tried in order. Empty: such names are refused.
    pub recursors: Vec<SocketAddr>,
    /// How long each recursor gets to answer (`dns_config.recursor_timeout`).
    pub recursor_timeout: Duration,
}

impl DnsConfig {
    /// The TTL of `service`'s records: its own entry, else the longest
    /// matching `prefix*` entry, else `*` (Consul's `GetTTLForService`).
    pub fn service_ttl(&self, service: &str) -> u32 {
        if let Some(ttl) = self.service_ttls.get(service) {
            return *ttl;
        }
        self.service_ttls
            .iter()
            .filter_map(|(pattern, ttl)| {
                let prefix = pattern.strip_suffix('*')?;
                service.starts_with(prefix).then_some((prefix.len(), *ttl))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(self.service_ttl_secs, |(_, ttl)| ttl)
    }

    /// Answers kept in a plain UDP response: `udp_answer_limit`, within
    /// Consul's bounds.
    pub fn udp_answers(&self) -> usize {
        self.udp_answer_limit.clamp(1, UDP_ANSWER_LIMIT_MAX)
    }

    pub fn new(datacenter: &str) -> DnsConfig {
        DnsConfig {
            domain: "consul".into(),
            alt_domain: None,
            datacenter: datacenter.into(),
            node_ttl_secs: 0,
            service_ttl_secs: 0,
            service_ttls: std::collections::BTreeMap::new(),
            udp_answer_limit: UDP_ANSWER_LIMIT_DEFAULT,
            enable_truncate: false,
            only_passing: false,
            a_record_limit: 0,
            recursors: Vec::new(),
            recursor_timeout: RECURSOR_TIMEOUT_DEFAULT,
        }
    }
}

/// Query types tribune answers; anything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QType {
    A,
    Aaaa,
    Srv,
    Txt,
    Ptr,
    Any,
    Soa,
    Ns,
    Other(u16),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// The queried name as received (any case, with or without the final dot).
    pub name: String,
    pub qtype: QType,
    /// The most service answers the transport will carry (Consul's
    /// `udp_answer_limit` for UDP without EDNS), or `None` for all. Core
    /// stops there, so a 100-instance service asked over plain UDP costs
    /// the work of a few instances, not of all of them.
    pub answer_limit: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        /// Fully qualified, with the final dot.
        target: String,
    },
    Txt(Vec<String>),
    Ptr(String),
    Cname(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    Ns(String),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Fully qualified, with the final dot.
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
}

/// The answer to one question. `authoritative` is set for names in the
/// agent's domains.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub rcode: Rcode,
    pub authoritative: bool,
    /// The RA bit: set on every answer when recursors are configured, as
    /// Consul does.
    pub recursion_available: bool,
    /// Not answered here: the shell relays the question to the recursors
    /// (the other fields are then unused).
    pub forward: bool,
    /// More healthy instances existed than `answer_limit` let through
    /// (the TC bit, with `enable_truncate`).
    pub truncated: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    pub fn rcode(rcode: Rcode) -> Answer {
        Answer {
            rcode,
            authoritative: false,
            recursion_available: false,
            forward: false,
            truncated: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    /// The question goes to the recursors.
    pub fn forward() -> Answer {
        Answer {
            recursion_available: true,
            forward: true,
            ..Answer::rcode(Rcode::NoError)
        }
    }
}

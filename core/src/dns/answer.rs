//! Answer selection: which records answer a question, from the applied
//! state. Pure: the shuffle draws from the caller's seeded RNG and the SOA
//! serial (Consul's unix time) arrives as data.

use super::cache::{Instance, ServiceCache};
use super::name::{parse, Lookup};
use super::{Answer, DnsConfig, QType, Question, RData, Rcode, Record};
use crate::catalog::{CheckStatus, Node};
use crate::fsm::Fsm;
use crate::rng::Rng;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Answers `question` from the applied state.
pub fn answer(
    fsm: &Fsm,
    config: &DnsConfig,
    question: &Question,
    serial: u32,
    rng: &mut Rng,
) -> Answer {
    answer_cached(
        fsm,
        config,
        question,
        serial,
        rng,
        &mut ServiceCache::default(),
    )
}

/// [`answer`] with the caller's [`ServiceCache`], which a server keeps
/// between queries so that service answers only draw instances.
pub fn answer_cached(
    fsm: &Fsm,
    config: &DnsConfig,
    question: &Question,
    serial: u32,
    rng: &mut Rng,
    cache: &mut ServiceCache,
) -> Answer {
    let parsed = parse(&question.name, config);
    let ctx = Ctx {
        fsm,
        config,
        domain: &parsed.domain,
        qname: fqdn(&question.name),
        qtype: question.qtype,
        serial,
    };
    let recursion = !config.recursors.is_empty();
    let mut out = match &parsed.lookup {
        Lookup::NotOurs if recursion => return Answer::forward(),
        Lookup::NotOurs => return Answer::rcode(Rcode::Refused),
        Lookup::Apex => ctx.apex(),
        Lookup::Service {
            service,
            tag,
            datacenter,
        } => {
            let limit = question.answer_limit.unwrap_or(usize::MAX);
            let draw = Draw { limit, rng, cache };
            ctx.service(service, tag.as_deref(), datacenter, draw)
        }
        Lookup::Node { node, datacenter } => ctx.node(node, datacenter),
        Lookup::Addr { ip, datacenter } => ctx.addr(*ip, datacenter),
        Lookup::Ptr(ip) => match ctx.ptr(*ip) {
            // Nothing here has that address: someone upstream may know it.
            miss if recursion && miss.rcode == Rcode::NxDomain => return Answer::forward(),
            found => found,
        },
        Lookup::PreparedQuery { .. } | Lookup::Invalid => ctx.nxdomain(),
    };
    out.authoritative = true;
    out.recursion_available = recursion;
    out
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

struct Ctx<'a> {
    fsm: &'a Fsm,
    config: &'a DnsConfig,
    domain: &'a str,
    qname: String,
    qtype: QType,
    serial: u32,
}

impl Ctx<'_> {
    fn soa(&self) -> Record {
        let domain = self.domain;
        Record {
            name: format!("{domain}."),
            ttl: 0,
            data: RData::Soa {
                mname: format!("ns.{domain}."),
                rname: format!("hostmaster.{domain}."),
                serial: self.serial,
                refresh: 3600,
                retry: 600,
                expire: 86_400,
                minimum: 0,
            },
        }
    }

    fn nxdomain(&self) -> Answer {
        let mut out = Answer::rcode(Rcode::NxDomain);
        out.authority.push(self.soa());
        out
    }

    /// NOERROR with nothing of the asked type: the SOA says so (NODATA).
    fn finish(&self, mut out: Answer) -> Answer {
        if out.answers.is_empty() {
            out.authority.push(self.soa());
        }
        out
    }

    fn known_dc(&self, datacenter: &str) -> bool {
        datacenter.eq_ignore_ascii_case(&self.config.datacenter)
    }

    fn apex(&self) -> Answer {
        let mut out = Answer::rcode(Rcode::NoError);
        match self.qtype {
            QType::Soa => out.answers.push(self.soa()),
            QType::Ns | QType::Any => out.answers.push(Record {
                name: self.qname.clone(),
                ttl: 0,
                data: RData::Ns(format!("ns.{}.", self.domain)),
            }),
            _ => {}
        }
        self.finish(out)
    }

    /// An address record for `address` if the question asks for its family;
    /// a hostname becomes a CNAME for A/AAAA/ANY questions.
    fn address_record(&self, name: &str, address: &str, ttl: u32) -> Option<Record> {
        let data = match (address.parse::<IpAddr>(), self.qtype) {
            (Ok(IpAddr::V4(v4)), QType::A | QType::Any) => RData::A(v4),
            (Ok(IpAddr::V6(v6)), QType::Aaaa | QType::Any) => RData::Aaaa(v6),
            (Ok(_), _) => return None,
            (Err(_), QType::A | QType::Aaaa | QType::Any) if !address.is_empty() => {
                RData::Cname(fqdn(address))
            }
            (Err(_), _) => return None,
        };
        Some(Record {
            name: name.to_string(),
            ttl,
            data,
        })
    }

    fn node(&self, name: &str, datacenter: &str) -> Answer {
        let Some(node) = self.find_node(name).filter(|_| self.known_dc(datacenter)) else {
            return self.nxdomain();
        };
        let ttl = self.config.node_ttl_secs;
        let mut out = Answer::rcode(Rcode::NoError);
        out.answers
            .extend(self.address_record(&self.qname, &node.address, ttl));
        if matches!(self.qtype, QType::Txt | QType::Any) {
            out.answers.extend(node_meta_txt(node, &self.qname, ttl));
        }
        self.finish(out)
    }

    fn find_node(&self, name: &str) -> Option<&Node> {
        let nodes = &self.fsm.catalog.nodes;
        nodes
            .get(name)
            .or_else(|| nodes.values().find(|n| n.name.eq_ignore_ascii_case(name)))
    }

    fn addr(&self, ip: IpAddr, datacenter: &str) -> Answer {
        if !self.known_dc(datacenter) {
            return self.nxdomain();
        }
        let mut out = Answer::rcode(Rcode::NoError);
        let ttl = self.config.node_ttl_secs;
        out.answers
            .extend(self.address_record(&self.qname, &ip.to_string(), ttl));
        self.finish(out)
    }

    fn ptr(&self, ip: IpAddr) -> Answer {
        let (dc, domain) = (&self.config.datacenter, self.domain);
        let mut names: Vec<String> = Vec::new();
        for node in self.fsm.catalog.nodes.values() {
            if node.address.parse::<IpAddr>() == Ok(ip) {
                names.push(format!("{}.node.{dc}.{domain}.", node.name));
            }
        }
        for service in self.fsm.catalog.services.values() {
            let name = format!("{}.service.{dc}.{domain}.", service.name);
            if service.address.parse::<IpAddr>() == Ok(ip) && !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return self.nxdomain();
        }
        let mut out = Answer::rcode(Rcode::NoError);
        if matches!(self.qtype, QType::Ptr | QType::Any) {
            let ttl = self.config.node_ttl_secs;
            out.answers.extend(names.into_iter().map(|target| Record {
                name: self.qname.clone(),
                ttl,
                data: RData::Ptr(target),
            }));
        }
        self.finish(out)
    }

    /// Instances of a service, in random order: the instances with the name
    /// are shuffled lazily, Fisher–Yates one position at a time, and each
    /// drawn instance is checked for tag and health until `limit` healthy
    /// ones are found. Filtering a uniformly random order keeps the order
    /// uniform over the healthy ones, and stopping early means a capped
    /// answer (plain UDP) draws a few instances, not all of them.
    fn healthy<'c>(
        &self,
        all: &'c [Instance],
        tag: Option<&str>,
        limit: usize,
        rng: &mut Rng,
    ) -> (Vec<&'c Instance>, bool) {
        let mut candidates: Vec<&Instance> = all.iter().collect();
        // A/AAAA answers carry each address once, so a limit counts
        // distinct addresses (nothing to count without a limit).
        let distinct = self.qtype != QType::Srv && limit != usize::MAX;
        let mut addresses = BTreeSet::new();
        let mut out = Vec::new();
        let eligible = |instance: &Instance| {
            let tagged =
                tag.is_none_or(|tag| instance.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)));
            let worst = instance.worst;
            let excluded =
                worst.is_critical() || (self.config.only_passing && worst == CheckStatus::Warning);
            tagged && !excluded
        };
        for i in 0..candidates.len() {
            let enough = if distinct { addresses.len() } else { out.len() };
            if enough >= limit {
                // Stopped early: was anything left out? (Only asked when
                // the limit bit, so an uncapped answer costs nothing more.)
                let more = candidates[i..]
                    .iter()
                    .any(|c| eligible(c) && (!distinct || !addresses.contains(c.address.as_str())));
                return (out, more);
            }
            let j = i + rng.below((candidates.len() - i) as u64) as usize;
            candidates.swap(i, j);
            let instance = candidates[i];
            if eligible(instance) {
                if distinct {
                    addresses.insert(instance.address.as_str());
                }
                out.push(instance);
            }
        }
        (out, false)
    }

    fn service(
        &self,
        service: &str,
        tag: Option<&str>,
        datacenter: &str,
        draw: Draw<'_>,
    ) -> Answer {
        if !self.known_dc(datacenter) {
            return self.nxdomain();
        }
        let all = draw
            .cache
            .instances(self.fsm, &self.config.datacenter, service);
        let (instances, more) = self.healthy(all, tag, draw.limit, draw.rng);
        if instances.is_empty() {
            return self.nxdomain();
        }
        let mut out = Answer::rcode(Rcode::NoError);
        out.truncated = more;
        let ttl = self.config.service_ttl(service);
        if self.qtype == QType::Srv {
            self.srv_records(&instances, ttl, &mut out);
        } else {
            self.service_addresses(&instances, ttl, &mut out);
        }
        self.finish(out)
    }

    fn service_addresses(&self, instances: &[&Instance], ttl: u32, out: &mut Answer) {
        let mut seen = BTreeSet::new();
        for instance in instances {
            if !seen.insert(instance.address.as_str()) {
                continue;
            }
            out.answers
                .extend(self.address_record(&self.qname, &instance.address, ttl));
        }
        let limit = self.config.a_record_limit;
        if limit > 0 && out.answers.len() > limit {
            out.answers.truncate(limit);
        }
    }

    /// `1 <weight> <port> <target>`, with the target's address in the
    /// additional section: `<node>.node.<dc>.<domain>` for instances on the
    /// node's address, `<hex>.addr.<dc>.<domain>` for an own IP address.
    fn srv_records(&self, instances: &[&Instance], ttl: u32, out: &mut Answer) {
        let mut additional_names = BTreeSet::new();
        for instance in instances {
            let weight = match instance.worst {
                CheckStatus::Warning => instance.weights.warning,
                _ => instance.weights.passing,
            };
            let target = match &instance.target_in_domain {
                Some(prefix) => format!("{prefix}.{}.", self.domain),
                None => fqdn(&instance.address),
            };
            out.answers.push(Record {
                name: self.qname.clone(),
                ttl,
                data: RData::Srv {
                    priority: 1,
                    weight: u16::try_from(weight).unwrap_or(u16::MAX),
                    port: instance.port,
                    target: target.clone(),
                },
            });
            let (Some(ip), Some(prefix)) = (instance.ip, &instance.target_in_domain) else {
                continue;
            };
            // Instances sharing a node share a target: one A record for it.
            if additional_names.insert(prefix.as_str()) {
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(v4),
                    IpAddr::V6(v6) => RData::Aaaa(v6),
                };
                out.additional.push(Record {
                    name: target,
                    ttl,
                    data,
                });
            }
        }
    }
}

/// How to draw a service's instances: at most `limit` healthy ones, with
/// `rng`, from `cache`.
struct Draw<'d> {
    limit: usize,
    rng: &'d mut Rng,
    cache: &'d mut ServiceCache,
}

/// Node meta as TXT (RFC 1464 `key=value`; Consul drops the key for
/// `rfc1035-` keys).
fn node_meta_txt(node: &Node, name: &str, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| {
            let text = match k.strip_prefix("rfc1035-") {
                Some(_) => v.clone(),
                None => format!("{k}={v}"),
            };
            Record {
                name: name.to_string(),
                ttl,
                data: RData::Txt(vec![text]),
            }
        })
        .collect()
}

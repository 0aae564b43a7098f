//! What a service answer needs of each instance, computed once per catalog
//! change instead of once per query.
//!
//! perf on `web.service.consul` SRV put over a quarter of a DNS thread in
//! answer selection, most of it B-tree searches with string compares for
//! each drawn instance (its row, its node, its node's checks) and parsing
//! its address. A [`ServiceCache`] keeps, per service name, each instance's
//! worst check status, address (parsed) and SRV target, valid while the
//! catalog's node, service and check tables keep their indexes (every
//! change to them moves one, see `fsm::TableIndexes`): the first query
//! after a change recomputes the names it asks for, the next ones only
//! draw. Health filtering and the shuffle stay per query, so a health change
//! shows on the very next answer.
//!
//! The cache is plain data owned by its user (one per DNS thread), so no
//! lock guards it. It holds only names the catalog has, so it is bounded by
//! the catalog. It assumes indexes identify the catalog's content, as they
//! do for one replicated log; whoever replaces the FSM wholesale (a
//! restore) should drop its caches.

use crate::catalog::{CheckStatus, Weights};
use crate::fsm::Fsm;
use crate::ids::RaftIndex;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One instance as answers use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub tags: Vec<String>,
    /// The worst of its checks and its node's checks.
    pub worst: CheckStatus,
    /// Where it is reached: its own address, else its node's.
    pub address: String,
    /// `address` parsed, when it is an IP.
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub weights: Weights,
    /// The SRV target without the domain: `<node>.node.<dc>` when on the
    /// node's address, `<hex>.addr.<dc>` for an own IP; `None` when the
    /// service's address is a hostname (the target is then that name).
    pub target_in_domain: Option<String>,
}

/// Instances by lowercased service name, for one state of the catalog.
#[derive(Clone, Debug, Default)]
pub struct ServiceCache {
    /// The node, service and check table indexes the entries hold for.
    at: Option<[RaftIndex; 3]>,
    by_name: BTreeMap<String, Vec<Instance>>,
}

impl ServiceCache {
    /// The instances of `name` (lowercase) in `fsm`'s catalog, in the
    /// catalog's order; empty for an unknown name.
    pub fn instances(&mut self, fsm: &Fsm, datacenter: &str, name: &str) -> &[Instance] {
        let now = [fsm.indexes.nodes, fsm.indexes.services, fsm.indexes.checks];
        if self.at != Some(now) {
            self.by_name.clear();
            self.at = Some(now);
        }
        if !self.by_name.contains_key(name) {
            let instances = compute(fsm, datacenter, name);
            if instances.is_empty() {
                // Not cached: unknown names must not grow the cache.
                return &[];
            }
            self.by_name.insert(name.to_string(), instances);
        }
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }
}

fn compute(fsm: &Fsm, datacenter: &str, name: &str) -> Vec<Instance> {
    let catalog = &fsm.catalog;
    let mut out = Vec::new();
    for key in catalog.instance_keys(name) {
        let Some(service) = catalog.services.get(key) else {
            continue;
        };
        let Some(node) = catalog.nodes.get(&service.node) else {
            continue;
        };
        let worst = catalog
            .service_health_checks(service)
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Passing);
        let own_ip = service.address.parse::<IpAddr>().ok();
        let (address, target_in_domain) = match own_ip {
            Some(ip) => (
                service.address.clone(),
                Some(format!("{}.addr.{datacenter}", super::name::hex_ip(ip))),
            ),
            None if service.address.is_empty() => (
                node.address.clone(),
                Some(format!("{}.node.{datacenter}", node.name)),
            ),
            None => (service.address.clone(), None),
        };
        out.push(Instance {
            tags: service.tags.clone(),
            worst,
            ip: address.parse().ok(),
            address,
            port: service.port,
            weights: service.weights,
            target_in_domain,
        });
    }
    out
}

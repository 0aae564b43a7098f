//! The catalog: nodes, services and checks, as Consul's `catalog` tables.
//!
//! A registration upserts a node, optionally one service, and any checks
//! (Consul's `ensureRegistrationTxn`). Rows that do not change keep their
//! `ModifyIndex`, so idempotent re-registration does not wake watchers.

use crate::ids::RaftIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub type Meta = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Meta,
    pub meta: Meta,
    pub create_index: RaftIndex,
    pub modify_index: RaftIndex,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub node: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: Meta,
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: RaftIndex,
    pub modify_index: RaftIndex,
}

/// A check's state. Order matters: worse states sort higher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
    Maintenance,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Maintenance => "maintenance",
        }
    }
    /// Parses an API status; `maintenance` is only set by the agent itself.
    pub fn parse(text: &str) -> Option<CheckStatus> {
        match text {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
    /// Critical for session invalidation and health filtering.
    pub fn is_critical(self) -> bool {
        matches!(self, CheckStatus::Critical | CheckStatus::Maintenance)
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Maintenance => "critical",
            other => other.as_str(),
        })
    }
}

/// How a check is run; shown to users as `Definition` and `Type`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    pub http: String,
    pub tcp: String,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub check_type: String,
    pub definition: CheckDefinition,
    pub create_index: RaftIndex,
    pub modify_index: RaftIndex,
}

/// Catalog register request (Consul's `structs.RegisterRequest`), already
/// validated by the API layer. Indexes inside are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub node: Node,
    pub skip_node_update: bool,
    pub service: Option<Service>,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CatalogError {
    MissingNode,
    MissingAddress,
    ServiceUnknown {
        check_id: String,
        service_id: String,
    },
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogError::MissingNode => f.write_str("Must provide node"),
            CatalogError::MissingAddress => f.write_str("Must provide address"),
            CatalogError::ServiceUnknown {
                check_id,
                service_id,
            } => write!(
                f,
                "Unknown service ID {service_id:?} for check ID {check_id:?}"
            ),
        }
    }
}

/// The three catalog tables, keyed for ordered, deterministic iteration,
/// plus a derived index of service instances by lowercased name (what DNS
/// and the health endpoints look up), so a lookup does not scan every
/// service. The index is not serialized: a snapshot holds the three tables
/// and deserializing rebuilds it. The tables are only changed through
/// `register`/`deregister_*`, which keep the index in step; `validate`
/// checks that it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CatalogTables", into = "CatalogTables")]
pub struct Catalog {
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<(String, String), Service>,
    pub checks: BTreeMap<(String, String), Check>,
    /// Lowercased service name -> the `(node, id)` keys of its instances,
    /// sorted.
    by_name: BTreeMap<String, Vec<(String, String)>>,
}

/// What a snapshot holds of the catalog: the tables, without the index.
#[derive(Clone, Serialize, Deserialize)]
struct CatalogTables {
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<(String, String), Service>,
    checks: BTreeMap<(String, String), Check>,
}

impl From<CatalogTables> for Catalog {
    fn from(tables: CatalogTables) -> Catalog {
        let mut catalog = Catalog {
            nodes: tables.nodes,
            services: tables.services,
            checks: tables.checks,
            by_name: BTreeMap::new(),
        };
        catalog.by_name = catalog.build_name_index();
        catalog
    }
}

impl From<Catalog> for CatalogTables {
    fn from(catalog: Catalog) -> CatalogTables {
        CatalogTables {
            nodes: catalog.nodes,
            services: catalog.services,
            checks: catalog.checks,
        }
    }
}

/// Which tables a catalog write touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub nodes: bool,
    pub services: bool,
    pub checks: bool,
}

fn upsert<K: Ord + Clone, V: Clone + PartialEq>(
    table: &mut BTreeMap<K, V>,
    key: K,
    mut row: V,
    index: RaftIndex,
    indexes: impl Fn(&mut V) -> (&mut RaftIndex, &mut RaftIndex),
) -> bool {
    match table.get(&key) {
        Some(old) => {
            let mut old_cmp = old.clone();
            let (old_create, old_modify) = {
                let (c, m) = indexes(&mut old_cmp);
                (*c, *m)
            };
            {
                let (c, m) = indexes(&mut row);
                *c = old_create;
                *m = old_modify;
            }
            if old_cmp == row {
                return false;
            }
            *indexes(&mut row).1 = index;
            table.insert(key, row);
            true
        }
        None => {
            {
                let (c, m) = indexes(&mut row);
                *c = index;
                *m = index;
            }
            table.insert(key, row);
            true
        }
    }
}

impl Catalog {
    /// A catalog holding only `node` and its services and checks, rows and
    /// indexes as they are here (what a client agent's anti-entropy
    /// compares against).
    pub fn node_slice(&self, node: &str) -> Catalog {
        let owned = |key: &(String, String)| key.0 == node;
        Catalog::from(CatalogTables {
            nodes: self
                .nodes
                .get(node)
                .map(|n| (node.to_string(), n.clone()))
                .into_iter()
                .collect(),
            services: self
                .services
                .iter()
                .filter(|(k, _)| owned(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            checks: self
                .checks
                .iter()
                .filter(|(k, _)| owned(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Applies a registration. Validation happens before any change, so an
    /// error leaves the catalog untouched.
    pub fn register(
        &mut self,
        index: RaftIndex,
        reg: &Registration,
    ) -> Result<(Touched, Vec<(String, String)>), CatalogError> {
        let node_name = reg.node.name.clone();
        if node_name.is_empty() {
            return Err(CatalogError::MissingNode);
        }
        let node_exists = self.nodes.contains_key(&node_name);
        if reg.node.address.is_empty() && !(reg.skip_node_update && node_exists) {
            return Err(CatalogError::MissingAddress);
        }
        for check in &reg.checks {
            let service_known = check.service_id.is_empty()
                || reg
                    .service
                    .as_ref()
                    .is_some_and(|s| s.id == check.service_id)
                || self
                    .services
                    .contains_key(&(node_name.clone(), check.service_id.clone()));
            if !service_known {
                return Err(CatalogError::ServiceUnknown {
                    check_id: check.check_id.clone(),
                    service_id: check.service_id.clone(),
                });
            }
        }
        let mut touched = Touched::default();
        if !(reg.skip_node_update && node_exists) {
            touched.nodes |= upsert(
                &mut self.nodes,
                node_name.clone(),
                reg.node.clone(),
                index,
                |n| (&mut n.create_index, &mut n.modify_index),
            );
        }
        if let Some(service) = &reg.service {
            let mut service = service.clone();
            service.node = node_name.clone();
            let key = (node_name.clone(), service.id.clone());
            let old_name = self.services.get(&key).map(|old| old.name.clone());
            let new_name = service.name.clone();
            let changed = upsert(&mut self.services, key.clone(), service, index, |s| {
                (&mut s.create_index, &mut s.modify_index)
            });
            if old_name.as_deref() != Some(new_name.as_str()) {
                if let Some(old_name) = old_name {
                    self.unindex(&old_name, &key);
                }
                self.index(&new_name, key);
            }
            touched.services |= changed;
        }
        let mut critical = Vec::new();
        for check in &reg.checks {
            let mut check = check.clone();
            check.node = node_name.clone();
            if let Some(service) = self
                .services
                .get(&(node_name.clone(), check.service_id.clone()))
            {
                check.service_name = service.name.clone();
                check.service_tags = service.tags.clone();
            }
            if check.status.is_critical() {
                critical.push((node_name.clone(), check.check_id.clone()));
            }
            let key = (node_name.clone(), check.check_id.clone());
            touched.checks |= upsert(&mut self.checks, key, check, index, |c| {
                (&mut c.create_index, &mut c.modify_index)
            });
        }
        Ok((touched, critical))
    }

    /// Removes a whole node with its services and checks. Returns the
    /// removed check IDs (sessions bound to them must go).
    pub fn deregister_node(&mut self, node: &str) -> (Touched, Vec<String>) {
        let mut touched = Touched {
            nodes: self.nodes.remove(node).is_some(),
            ..Touched::default()
        };
        let services: Vec<_> = self.node_services(node).map(|s| s.id.clone()).collect();
        for id in services {
            touched.services |= self.remove_service(&(node.to_string(), id));
        }
        let checks: Vec<String> = self.node_checks(node).map(|c| c.check_id.clone()).collect();
        for id in &checks {
            touched.checks |= self
                .checks
                .remove(&(node.to_string(), id.clone()))
                .is_some();
        }
        (touched, checks)
    }

    /// Removes one service and the checks bound to it.
    pub fn deregister_service(&mut self, node: &str, service_id: &str) -> (Touched, Vec<String>) {
        let mut touched = Touched {
            services: self.remove_service(&(node.to_string(), service_id.to_string())),
            ..Touched::default()
        };
        let checks: Vec<String> = self
            .node_checks(node)
            .filter(|c| c.service_id == service_id)
            .map(|c| c.check_id.clone())
            .collect();
        for id in &checks {
            touched.checks |= self
                .checks
                .remove(&(node.to_string(), id.clone()))
                .is_some();
        }
        (touched, checks)
    }

    pub fn deregister_check(&mut self, node: &str, check_id: &str) -> Touched {
        Touched {
            checks: self
                .checks
                .remove(&(node.to_string(), check_id.to_string()))
                .is_some(),
            ..Touched::default()
        }
    }

    pub fn node_services<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        let start = (node.to_string(), String::new());
        self.services
            .range(start..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, s)| s)
    }

    pub fn node_checks<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        let start = (node.to_string(), String::new());
        self.checks
            .range(start..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, c)| c)
    }

    /// Instances of service `name`, ordered by node then ID.
    pub fn service_instances<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.instance_keys(name)
            .iter()
            .filter_map(|key| self.services.get(key))
            .filter(move |s| s.name == name)
    }

    /// The `(node, id)` keys of the instances whose name equals `name`
    /// ignoring ASCII case, sorted; empty for an unknown name. O(log n).
    pub fn instance_keys(&self, name: &str) -> &[(String, String)] {
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_name.get(&name.to_ascii_lowercase())
        } else {
            self.by_name.get(name)
        };
        found.map_or(&[], Vec::as_slice)
    }

    fn index(&mut self, name: &str, key: (String, String)) {
        let keys = self.by_name.entry(name.to_ascii_lowercase()).or_default();
        if let Err(at) = keys.binary_search(&key) {
            keys.insert(at, key);
        }
    }

    fn unindex(&mut self, name: &str, key: &(String, String)) {
        let lower = name.to_ascii_lowercase();
        if let Some(keys) = self.by_name.get_mut(&lower) {
            if let Ok(at) = keys.binary_search(key) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.by_name.remove(&lower);
            }
        }
    }

    /// Removes a service row and its index entry; whether it was there.
    fn remove_service(&mut self, key: &(String, String)) -> bool {
        match self.services.remove(key) {
            Some(service) => {
                self.unindex(&service.name, key);
                true
            }
            None => false,
        }
    }

    fn build_name_index(&self) -> BTreeMap<String, Vec<(String, String)>> {
        let mut by_name: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        // `services` iterates in key order, so every list comes out sorted.
        for (key, service) in &self.services {
            by_name
                .entry(service.name.to_ascii_lowercase())
                .or_default()
                .push(key.clone());
        }
        by_name
    }

    /// Checks that decide the health of `service`: its node's node-level
    /// checks plus the checks bound to it.
    pub fn service_health_checks<'a>(
        &'a self,
        service: &'a Service,
    ) -> impl Iterator<Item = &'a Check> + 'a {
        self.node_checks(&service.node)
            .filter(move |c| c.service_id.is_empty() || c.service_id == service.id)
    }

    /// Checks the tables' consistency, as an error (restore uses this on
    /// untrusted snapshots). `last_applied` bounds every index.
    pub fn validate(&self, last_applied: RaftIndex) -> Result<(), String> {
        let indexes_ok = |create: RaftIndex, modify: RaftIndex| {
            create > 0 && create <= modify && modify <= last_applied
        };
        for (name, node) in &self.nodes {
            if *name != node.name || !indexes_ok(node.create_index, node.modify_index) {
                return Err(format!("node {name:?} is stored inconsistently"));
            }
        }
        for ((node, id), service) in &self.services {
            if !self.nodes.contains_key(node) {
                return Err(format!("service {id:?} on missing node {node:?}"));
            }
            if (&service.node, &service.id) != (node, id) {
                return Err(format!("service {id:?} stored under another key"));
            }
            if !indexes_ok(service.create_index, service.modify_index) {
                return Err(format!("service {id:?} has bad indexes"));
            }
        }
        for ((node, id), check) in &self.checks {
            if !self.nodes.contains_key(node) {
                return Err(format!("check {id:?} on missing node {node:?}"));
            }
            if (&check.node, &check.check_id) != (node, id) {
                return Err(format!("check {id:?} stored under another key"));
            }
            if !indexes_ok(check.create_index, check.modify_index) {
                return Err(format!("check {id:?} has bad indexes"));
            }
            let service_key = (node.clone(), check.service_id.clone());
            if !check.service_id.is_empty() && !self.services.contains_key(&service_key) {
                return Err(format!("check {id:?} bound to a missing service"));
            }
        }
        if self.by_name != self.build_name_index() {
            return Err("the service name index is out of step with the services".into());
        }
        Ok(())
    }

    /// Panics on a broken internal assumption.
    pub fn check_invariants(&self, last_applied: RaftIndex) {
        if let Err(why) = self.validate(last_applied) {
            panic!("catalog invariant broken: {why}");
        }
    }
}

#[cfg(test)]
mod slice_tests {
    use crate::fuzzing::{fixture, FIXTURE_NODE};

    #[test]
    fn node_slice_holds_one_nodes_rows_only() {
        let (fsm, _) = fixture();
        let mut catalog = fsm.catalog.clone();
        let mut other = catalog.nodes[FIXTURE_NODE].clone();
        other.name = "other".into();
        catalog.nodes.insert("other".into(), other);
        let slice = catalog.node_slice(FIXTURE_NODE);
        assert_eq!(slice.nodes.keys().collect::<Vec<_>>(), vec![FIXTURE_NODE]);
        assert!(!slice.services.is_empty() && !slice.checks.is_empty());
        assert_eq!(
            slice.services.len(),
            catalog.node_services(FIXTURE_NODE).count()
        );
        assert_eq!(
            slice.checks.len(),
            catalog.node_checks(FIXTURE_NODE).count()
        );
        slice.check_invariants(fsm.last_applied);
        assert!(catalog.node_slice("nobody").nodes.is_empty());
    }
}

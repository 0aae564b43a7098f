//! Response shapes, field for field as Consul's JSON (PascalCase, the same
//! types, `null` where Consul sends `null`).

use crate::catalog::{Check, Node, Service, ServiceAddress, Weights};
use crate::command::TxnKvResult;
use crate::kv::KvEntry;
use crate::session::Session;
use crate::time::format_duration;
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;

fn b64(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        Some(base64::engine::general_purpose::STANDARD.encode(value))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvJson<'a> {
    pub lock_index: u64,
    pub key: &'a str,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn kv<'a>(key: &'a str, entry: &KvEntry, include_value: bool) -> KvJson<'a> {
    KvJson {
        lock_index: entry.lock_index,
        key,
        flags: entry.flags,
        value: if include_value {
            b64(&entry.value)
        } else {
            None
        },
        session: entry.session.map(|s| s.to_string()),
        create_index: entry.create_index,
        modify_index: entry.modify_index,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResultJson<'a> {
    #[serde(rename = "KV")]
    pub kv: KvJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnErrorJson {
    pub op_index: usize,
    pub what: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponseJson<'a> {
    pub results: Option<Vec<TxnResultJson<'a>>>,
    pub errors: Option<Vec<TxnErrorJson>>,
}

pub fn txn_results(rows: &[TxnKvResult]) -> Vec<TxnResultJson<'_>> {
    rows.iter()
        .map(|r| TxnResultJson {
            kv: kv(&r.key, &r.entry, r.include_value),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeJson<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: &'a BTreeMap<String, String>,
    pub meta: &'a BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn node(n: &Node) -> NodeJson<'_> {
    NodeJson {
        id: &n.id,
        node: &n.name,
        address: &n.address,
        datacenter: &n.datacenter,
        tagged_addresses: &n.tagged_addresses,
        meta: &n.meta,
        create_index: n.create_index,
        modify_index: n.modify_index,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsJson {
    pub passing: u32,
    pub warning: u32,
}

fn weights(w: Weights) -> WeightsJson {
    WeightsJson {
        passing: w.passing,
        warning: w.warning,
    }
}

#[derive(Serialize)]
pub struct ServiceAddressJson<'a> {
    #[serde(rename = "Address")]
    pub address: &'a str,
    #[serde(rename = "Port")]
    pub port: u16,
}

fn tagged(map: &BTreeMap<String, ServiceAddress>) -> BTreeMap<&str, ServiceAddressJson<'_>> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                ServiceAddressJson {
                    address: &v.address,
                    port: v.port,
                },
            )
        })
        .collect()
}

/// `/v1/catalog/service/<name>` rows.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceJson<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: &'a BTreeMap<String, String>,
    pub node_meta: &'a BTreeMap<String, String>,
    pub service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    pub service_address: &'a str,
    pub service_tagged_addresses: BTreeMap<&'a str, ServiceAddressJson<'a>>,
    pub service_weights: WeightsJson,
    pub service_meta: &'a BTreeMap<String, String>,
    pub service_port: u16,
    pub service_enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn catalog_service<'a>(n: &'a Node, s: &'a Service) -> CatalogServiceJson<'a> {
    CatalogServiceJson {
        id: &n.id,
        node: &n.name,
        address: &n.address,
        datacenter: &n.datacenter,
        tagged_addresses: &n.tagged_addresses,
        node_meta: &n.meta,
        service_kind: &s.kind,
        service_id: &s.id,
        service_name: &s.name,
        service_tags: &s.tags,
        service_address: &s.address,
        service_tagged_addresses: tagged(&s.tagged_addresses),
        service_weights: weights(s.weights),
        service_meta: &s.meta,
        service_port: s.port,
        service_enable_tag_override: s.enable_tag_override,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

/// A service as `/v1/health/service`, `/v1/catalog/node` and
/// `/v1/agent/services` show it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub service: &'a str,
    pub tags: &'a [String],
    pub address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<&'a str, ServiceAddressJson<'a>>,
    pub meta: &'a BTreeMap<String, String>,
    pub port: u16,
    pub weights: WeightsJson,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modify_index: Option<u64>,
}

/// `datacenter` is set for the agent view, indexes for the catalog view.
pub fn service<'a>(s: &'a Service, datacenter: Option<&'a str>) -> ServiceJson<'a> {
    let catalog_view = datacenter.is_none();
    ServiceJson {
        kind: &s.kind,
        id: &s.id,
        service: &s.name,
        tags: &s.tags,
        address: &s.address,
        tagged_addresses: tagged(&s.tagged_addresses),
        meta: &s.meta,
        port: s.port,
        weights: weights(s.weights),
        enable_tag_override: s.enable_tag_override,
        datacenter,
        create_index: catalog_view.then_some(s.create_index),
        modify_index: catalog_view.then_some(s.modify_index),
    }
}

#[derive(Serialize, Default)]
pub struct DefinitionJson<'a> {
    #[serde(rename = "HTTP", skip_serializing_if = "str::is_empty")]
    pub http: &'a str,
    #[serde(rename = "TCP", skip_serializing_if = "str::is_empty")]
    pub tcp: &'a str,
    #[serde(rename = "Interval", skip_serializing_if = "str::is_empty")]
    pub interval: &'a str,
    #[serde(rename = "Timeout", skip_serializing_if = "str::is_empty")]
    pub timeout: &'a str,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "str::is_empty"
    )]
    pub deregister_critical_service_after: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckJson<'a> {
    pub node: &'a str,
    #[serde(rename = "CheckID")]
    pub check_id: &'a str,
    pub name: &'a str,
    pub status: String,
    pub notes: &'a str,
    pub output: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    #[serde(rename = "Type")]
    pub check_type: &'a str,
    pub definition: DefinitionJson<'a>,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn check(c: &Check) -> CheckJson<'_> {
    CheckJson {
        node: &c.node,
        check_id: &c.check_id,
        name: &c.name,
        status: c.status.to_string(),
        notes: &c.notes,
        output: &c.output,
        service_id: &c.service_id,
        service_name: &c.service_name,
        service_tags: &c.service_tags,
        check_type: &c.check_type,
        definition: DefinitionJson {
            http: &c.definition.http,
            tcp: &c.definition.tcp,
            interval: &c.definition.interval,
            timeout: &c.definition.timeout,
            deregister_critical_service_after: &c.definition.deregister_critical_service_after,
        },
        create_index: c.create_index,
        modify_index: c.modify_index,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthServiceJson<'a> {
    pub node: NodeJson<'a>,
    pub service: ServiceJson<'a>,
    pub checks: Vec<CheckJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheckJson<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionJson<'a> {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: &'a str,
    pub node: &'a str,
    pub lock_delay: u64,
    pub behavior: &'a str,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Option<&'a [String]>,
    pub service_checks: Option<Vec<ServiceCheckJson<'a>>>,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn session(s: &Session) -> SessionJson<'_> {
    SessionJson {
        id: s.id.to_string(),
        name: &s.name,
        node: &s.node,
        lock_delay: s.lock_delay.as_nanos(),
        behavior: s.behavior.as_str(),
        ttl: if s.ttl.as_nanos() == 0 {
            String::new()
        } else {
            format_duration(s.ttl)
        },
        node_checks: Some(&s.node_checks),
        service_checks: (!s.service_checks.is_empty()).then(|| {
            s.service_checks
                .iter()
                .map(|c| ServiceCheckJson {
                    id: &c.id,
                    namespace: &c.namespace,
                })
                .collect()
        }),
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

//! JSON request bodies. Consul decodes bodies case-insensitively and also
//! accepts snake_case keys (`enable_tag_override`); [`normalize_keys`] turns
//! every object key into snake_case first, so one set of serde structs
//! serves `Name`, `name` and `NAME`. User-chosen map keys (`Meta`, `Header`)
//! are left untouched.

use crate::api::ApiError;
use crate::catalog::{
    Check, CheckDefinition, CheckStatus, Meta, Node, Registration, Service, ServiceAddress, Weights,
};
use crate::checks::{CheckKind, CheckSpec, GrpcProbe, HttpProbe, Probe, Thresholds, TlsOptions};
use crate::command::{KvOp, KvVerb};
use crate::limits::{
    KV_KEY_BYTES_MAX, KV_VALUE_BYTES_MAX, SESSION_LOCK_DELAY_DEFAULT, SESSION_LOCK_DELAY_MAX,
    SESSION_TTL_MAX, SESSION_TTL_MIN, TXN_OPS_MAX,
};
use crate::session::{Behavior, ServiceCheckRef, Session};
use crate::time::{parse_duration, Duration};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every multi-word field name the bodies below use. Incoming keys are
/// matched to these ignoring case and underscores, as Consul does (Go's JSON
/// decoder ignores case; Consul also translates snake_case): `LockDelay`,
/// `lockdelay` and `lock_delay` all mean `lock_delay`.
const FIELDS: [&str; 31] = [
    "lock_delay",
    "node_checks",
    "service_checks",
    "check_id",
    "service_id",
    "tagged_addresses",
    "node_meta",
    "enable_tag_override",
    "skip_node_update",
    "deregister_critical_service_after",
    "alias_service",
    "alias_node",
    "tls_skip_verify",
    "op_index",
    "service_meta",
    "service_name",
    "service_tags",
    "service_port",
    "service_address",
    "modify_index",
    "create_index",
    "lock_index",
    "success_before_passing",
    "failures_before_warning",
    "failures_before_critical",
    "docker_container_id",
    "os_service",
    "grpc_use_tls",
    "tls_server_name",
    "output_max_size",
    "disable_redirects",
];

/// The canonical (snake_case) spelling of a JSON key.
pub fn canonical_key(key: &str) -> String {
    let flat: String = key
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    for field in FIELDS {
        if field.len() == flat.len() + field.matches('_').count()
            && field.bytes().filter(|b| *b != b'_').eq(flat.bytes())
        {
            return field.to_string();
        }
    }
    flat
}

const USER_MAPS: [&str; 4] = ["meta", "node_meta", "service_meta", "header"];

/// Rewrites object keys to their canonical spelling, recursively, except
/// inside user-chosen maps.
pub fn normalize_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = canonical_key(&k);
                    let v = if USER_MAPS.contains(&key.as_str()) {
                        v
                    } else {
                        normalize_keys(v)
                    };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

/// Parses a JSON body into `T` after key normalization. Empty bodies decode
/// as `null`, which structs with all-default fields accept.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::BodyDecode(e.to_string()))?
    };
    decode_value(value)
}

/// [`decode`] for an already parsed JSON value (config files).
pub fn decode_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let value = match normalize_keys(value) {
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    serde_json::from_value(value).map_err(|e| ApiError::BodyDecode(e.to_string()))
}

/// For an object that failed to decode as `T`: the path (in the caller's
/// spelling) of the first key whose value alone fails, e.g. `port` or
/// `checks[1].ttl`. Used to name the key in config-file errors.
pub fn bad_key<T: DeserializeOwned>(value: &Value) -> Option<String> {
    let Value::Object(map) = value else {
        return None;
    };
    for (key, inner) in map {
        let single = Value::Object([(key.clone(), inner.clone())].into_iter().collect());
        if decode_value::<T>(single).is_ok() {
            continue;
        }
        let nested = match (canonical_key(key).as_str(), inner) {
            ("check", v) => bad_key::<CheckBody>(v).map(|k| format!("{key}.{k}")),
            ("checks", Value::Array(items)) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| bad_key::<CheckBody>(v).map(|k| format!("{key}[{i}].{k}"))),
            _ => None,
        };
        return Some(nested.unwrap_or_else(|| key.clone()));
    }
    None
}

/// A duration given as a Go string (`"15s"`) or a number. Numbers follow
/// Consul's session rule: below 1000 they are seconds, else nanoseconds.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DurationValue {
    Text(String),
    Number(u64),
}

impl DurationValue {
    pub fn to_duration(&self, field: &str) -> Result<Duration, ApiError> {
        match self {
            DurationValue::Text(t) if t.is_empty() => Ok(Duration::ZERO),
            DurationValue::Text(t) => parse_duration(t)
                .map_err(|e| ApiError::BodyDecode(format!("invalid {field} {t:?}: {e}"))),
            DurationValue::Number(n) if *n < 1000 => Ok(Duration::from_secs(*n)),
            DurationValue::Number(n) => Ok(Duration::from_nanos(*n)),
        }
    }
}

pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::MissingKeyName);
    }
    if key.len() > KV_KEY_BYTES_MAX {
        return Err(ApiError::KeyTooLong { len: key.len() });
    }
    Ok(())
}

// ---------------------------------------------------------------- txn

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TxnKvBody {
    verb: String,
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
    session: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TxnOpBody {
    kv: Option<TxnKvBody>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
}

/// Decodes `/v1/txn`'s body into KV ops (at most [`TXN_OPS_MAX`]).
pub fn decode_txn(bytes: &[u8]) -> Result<Vec<KvOp>, ApiError> {
    let ops: Vec<TxnOpBody> = decode(bytes)?;
    if ops.len() > TXN_OPS_MAX {
        return Err(ApiError::TooManyTxnOps { count: ops.len() });
    }
    ops.into_iter().map(txn_op).collect()
}

fn txn_op(op: TxnOpBody) -> Result<KvOp, ApiError> {
    if op.node.is_some() || op.service.is_some() || op.check.is_some() {
        return Err(ApiError::Invalid(
            "Only KV operations are supported in transactions".into(),
        ));
    }
    let kv = op
        .kv
        .ok_or_else(|| ApiError::Invalid("Transaction operation has no KV".into()))?;
    let verb = KvVerb::parse(&kv.verb)
        .ok_or_else(|| ApiError::Invalid(format!("Invalid KV verb {:?}", kv.verb)))?;
    if verb != KvVerb::GetTree && verb != KvVerb::DeleteTree {
        validate_key(&kv.key)?;
    }
    let value = match kv.value {
        None => Vec::new(),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| ApiError::BodyDecode(format!("invalid base64 Value: {e}")))?,
    };
    if value.len() > KV_VALUE_BYTES_MAX {
        return Err(ApiError::ValueTooLarge { len: value.len() });
    }
    let session = match kv.session.as_str() {
        "" => None,
        text => Some(
            text.parse()
                .map_err(|_| ApiError::InvalidSession(text.to_string()))?,
        ),
    };
    Ok(KvOp {
        verb,
        key: kv.key,
        value,
        flags: kv.flags,
        index: kv.index,
        session,
    })
}

// ---------------------------------------------------------------- sessions

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceCheckBody {
    id: String,
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SessionBody {
    lock_delay: Option<DurationValue>,
    node: String,
    name: String,
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckBody>>,
    behavior: String,
    ttl: Option<DurationValue>,
}

/// Decodes `/v1/session/create`. `default_node` is the agent's node. The
/// returned session has no ID yet: the leader assigns it.
pub fn decode_session_create(bytes: &[u8], default_node: &str) -> Result<Session, ApiError> {
    let body: SessionBody = decode(bytes)?;
    let ttl = match &body.ttl {
        None => Duration::ZERO,
        Some(v) => v.to_duration("TTL")?,
    };
    if ttl != Duration::ZERO && (ttl < SESSION_TTL_MIN || ttl > SESSION_TTL_MAX) {
        return Err(ApiError::Invalid(format!(
            "Invalid Session TTL '{}', must be between [{}=>{}]",
            crate::time::format_duration(ttl),
            crate::time::format_duration(SESSION_TTL_MIN),
            crate::time::format_duration(SESSION_TTL_MAX),
        )));
    }
    let lock_delay = match &body.lock_delay {
        None => SESSION_LOCK_DELAY_DEFAULT,
        Some(v) => v.to_duration("LockDelay")?,
    };
    if lock_delay > SESSION_LOCK_DELAY_MAX {
        return Err(ApiError::Invalid(format!(
            "Lock delay must be <= {}",
            crate::time::format_duration(SESSION_LOCK_DELAY_MAX)
        )));
    }
    let behavior = Behavior::parse(&body.behavior).ok_or_else(|| {
        ApiError::Invalid(format!("Invalid Behavior setting '{}'", body.behavior))
    })?;
    // Consul: NodeChecks defaults to serfHealth unless Checks or NodeChecks
    // or ServiceChecks was given (an explicit empty list means none).
    let mut node_checks = body.node_checks.clone().unwrap_or_default();
    if let Some(checks) = &body.checks {
        for c in checks {
            if !node_checks.contains(c) {
                node_checks.push(c.clone());
            }
        }
    }
    if body.node_checks.is_none() && body.checks.is_none() && body.service_checks.is_none() {
        node_checks.push(crate::agent::SERF_HEALTH_CHECK_ID.to_string());
    }
    let service_checks = body
        .service_checks
        .unwrap_or_default()
        .into_iter()
        .map(|c| ServiceCheckRef {
            id: c.id,
            namespace: c.namespace,
        })
        .collect();
    Ok(Session {
        id: crate::ids::Uuid::UNASSIGNED,
        name: body.name,
        node: if body.node.is_empty() {
            default_node.to_string()
        } else {
            body.node
        },
        node_checks,
        service_checks,
        lock_delay,
        behavior,
        ttl,
        create_index: 0,
        modify_index: 0,
    })
}

// ---------------------------------------------------------------- checks

/// A check definition as the agent API takes it (`/v1/agent/check/register`
/// and the `Check`/`Checks` of a service registration).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CheckBody {
    pub check_id: String,
    pub id: String,
    pub name: String,
    pub notes: String,
    pub status: String,
    pub output: String,
    pub service_id: String,
    pub ttl: Option<DurationValue>,
    pub http: String,
    pub tcp: String,
    pub grpc: String,
    pub grpc_use_tls: bool,
    pub args: Vec<String>,
    pub script: String,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub deregister_critical_service_after: Option<DurationValue>,
    pub alias_service: String,
    pub alias_node: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub tls_skip_verify: bool,
    pub tls_server_name: String,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    pub h2ping: String,
    pub docker_container_id: String,
    pub udp: String,
    pub os_service: String,
}

fn duration_text(v: &Option<DurationValue>, field: &str) -> Result<String, ApiError> {
    match v {
        None => Ok(String::new()),
        Some(d) => {
            let d = d.to_duration(field)?;
            Ok(if d == Duration::ZERO {
                String::new()
            } else {
                crate::time::format_duration(d)
            })
        }
    }
}

fn duration_or_zero(v: &Option<DurationValue>, field: &str) -> Result<Duration, ApiError> {
    v.as_ref()
        .map_or(Ok(Duration::ZERO), |d| d.to_duration(field))
}

impl CheckBody {
    fn check_type(&self) -> &'static str {
        if self.ttl.is_some() {
            "ttl"
        } else if !self.http.is_empty() {
            "http"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else if !self.grpc.is_empty() {
            "grpc"
        } else if !self.args.is_empty() || !self.script.is_empty() {
            "script"
        } else if !self.alias_service.is_empty() || !self.alias_node.is_empty() {
            "alias"
        } else {
            ""
        }
    }

    /// Kinds Consul has and tribune does not run, named in the refusal.
    fn unsupported_kind(&self) -> Option<&'static str> {
        [
            (&self.h2ping, "H2PING"),
            (&self.docker_container_id, "Docker"),
            (&self.udp, "UDP"),
            (&self.os_service, "OSService"),
        ]
        .into_iter()
        .find(|(field, _)| !field.is_empty())
        .map(|(_, name)| name)
    }

    fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            skip_verify: self.tls_skip_verify,
            server_name: self.tls_server_name.clone(),
        }
    }

    fn kind(&self, check_type: &str, ttl: Option<Duration>) -> Result<CheckKind, ApiError> {
        Ok(match check_type {
            "ttl" => CheckKind::Ttl(
                ttl.ok_or_else(|| ApiError::Invalid("TTL must be > 0 for TTL checks".into()))?,
            ),
            "http" => CheckKind::Probe(Probe::Http(HttpProbe {
                url: self.http.clone(),
                method: if self.method.is_empty() {
                    "GET".into()
                } else {
                    self.method.to_ascii_uppercase()
                },
                header: self.header.clone(),
                body: self.body.clone(),
                tls: self.tls_options(),
            })),
            "grpc" => CheckKind::Probe(Probe::Grpc(GrpcProbe {
                target: self.grpc.clone(),
                tls: self.grpc_use_tls.then(|| self.tls_options()),
            })),
            "tcp" => CheckKind::Probe(Probe::Tcp {
                address: self.tcp.clone(),
            }),
            "script" if self.args.is_empty() => {
                return Err(ApiError::Invalid(
                    "Check is not valid: the legacy Script field is not supported; use Args".into(),
                ))
            }
            "script" => CheckKind::Probe(Probe::Script {
                args: self.args.clone(),
            }),
            "alias" => CheckKind::Alias {
                service: self.alias_service.clone(),
                node: self.alias_node.clone(),
            },
            _ => CheckKind::Static,
        })
    }

    /// Builds the check. `default_id`/`default_name` apply to checks inside a
    /// service registration (`service:<id>`, `Service '<name>' check`).
    pub fn into_check(self, default_id: &str, default_name: &str) -> Result<CheckSpec, ApiError> {
        let check_type = self.check_type();
        if check_type.is_empty() {
            if let Some(kind) = self.unsupported_kind() {
                return Err(ApiError::Invalid(format!(
                    "Check is not valid: {kind} checks are not supported by tribune"
                )));
            }
            return Err(ApiError::Invalid(
                "Check is not valid: one of Args, HTTP, TCP, GRPC, TTL or AliasService/AliasNode must be set".into(),
            ));
        }
        let ttl = match &self.ttl {
            None => None,
            Some(v) => Some(v.to_duration("TTL")?).filter(|d| *d > Duration::ZERO),
        };
        let interval = duration_or_zero(&self.interval, "Interval")?;
        let probe_like = matches!(check_type, "http" | "tcp" | "script" | "grpc");
        if probe_like && interval == Duration::ZERO {
            return Err(ApiError::Invalid(
                "Check is not valid: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
                    .into(),
            ));
        }
        let kind = self.kind(check_type, ttl)?;
        let id = [self.check_id.as_str(), self.id.as_str(), default_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string();
        let name = if self.name.is_empty() {
            default_name.to_string()
        } else {
            self.name.clone()
        };
        if id.is_empty() && name.is_empty() {
            return Err(ApiError::MissingField("check name"));
        }
        let status = match self.status.as_str() {
            "" => CheckStatus::Critical,
            s => CheckStatus::parse(s)
                .ok_or_else(|| ApiError::Invalid(format!("Invalid Status {s:?}")))?,
        };
        let output = self.output.clone();
        let definition = CheckDefinition {
            http: self.http.clone(),
            tcp: self.tcp.clone(),
            interval: duration_text(&self.interval, "Interval")?,
            timeout: duration_text(&self.timeout, "Timeout")?,
            deregister_critical_service_after: duration_text(
                &self.deregister_critical_service_after,
                "DeregisterCriticalServiceAfter",
            )?,
        };
        let deregister = duration_or_zero(
            &self.deregister_critical_service_after,
            "DeregisterCriticalServiceAfter",
        )?;
        let check = Check {
            node: String::new(),
            check_id: if id.is_empty() { name.clone() } else { id },
            name,
            status,
            notes: self.notes.clone(),
            output,
            service_id: self.service_id.clone(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: check_type.to_string(),
            definition,
            create_index: 0,
            modify_index: 0,
        };
        Ok(CheckSpec {
            check,
            kind,
            interval: if probe_like { interval } else { Duration::ZERO },
            timeout: duration_or_zero(&self.timeout, "Timeout")?,
            thresholds: Thresholds {
                success_before_passing: self.success_before_passing,
                failures_before_warning: self.failures_before_warning,
                failures_before_critical: self.failures_before_critical,
            },
            deregister_critical_service_after: Some(deregister).filter(|d| *d > Duration::ZERO),
        })
    }
}

pub fn decode_check_register(bytes: &[u8]) -> Result<CheckSpec, ApiError> {
    let body: CheckBody = decode(bytes)?;
    check_register(body)
}

/// A check definition from an already parsed JSON value (config files).
pub fn decode_check_value(value: Value) -> Result<CheckSpec, ApiError> {
    check_register(decode_value(value)?)
}

fn check_register(body: CheckBody) -> Result<CheckSpec, ApiError> {
    if body.name.is_empty() {
        return Err(ApiError::MissingField("check name"));
    }
    body.into_check("", "")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckUpdateBody {
    status: String,
    output: String,
}

/// `/v1/agent/check/update/<id>`: `{"Status":..., "Output":...}`.
pub fn decode_check_update(bytes: &[u8]) -> Result<(CheckStatus, String), ApiError> {
    let body: CheckUpdateBody = decode(bytes)?;
    let status = CheckStatus::parse(&body.status)
        .ok_or_else(|| ApiError::Invalid(format!("Invalid check status: '{}'", body.status)))?;
    Ok((status, body.output))
}

// ---------------------------------------------------------------- services

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceAddressBody {
    address: String,
    port: u16,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct WeightsBody {
    passing: Option<u32>,
    warning: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AgentServiceBody {
    id: String,
    name: String,
    kind: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, ServiceAddressBody>,
    meta: Meta,
    port: u16,
    weights: Option<WeightsBody>,
    enable_tag_override: bool,
    check: Option<CheckBody>,
    checks: Vec<CheckBody>,
}

fn weights(body: Option<WeightsBody>) -> Weights {
    let body = body.unwrap_or_default();
    Weights {
        passing: body.passing.unwrap_or(1),
        warning: body.warning.unwrap_or(1),
    }
}

fn tagged(map: BTreeMap<String, ServiceAddressBody>) -> BTreeMap<String, ServiceAddress> {
    map.into_iter()
        .map(|(k, v)| {
            (
                k,
                ServiceAddress {
                    address: v.address,
                    port: v.port,
                },
            )
        })
        .collect()
}

/// A service registration through the agent API, with its checks.
pub struct AgentServiceRegistration {
    pub service: Service,
    pub checks: Vec<CheckSpec>,
}

pub fn decode_agent_service(bytes: &[u8]) -> Result<AgentServiceRegistration, ApiError> {
    agent_service(decode(bytes)?)
}

/// A service definition from an already parsed JSON value (config files).
pub fn decode_agent_service_value(value: Value) -> Result<AgentServiceRegistration, ApiError> {
    agent_service(decode_value(value)?)
}

/// The path of the first bad key of a service definition (see [`bad_key`]).
pub fn bad_service_key(value: &Value) -> Option<String> {
    bad_key::<AgentServiceBody>(value)
}

/// The path of the first bad key of a check definition.
pub fn bad_check_key(value: &Value) -> Option<String> {
    bad_key::<CheckBody>(value)
}

fn agent_service(body: AgentServiceBody) -> Result<AgentServiceRegistration, ApiError> {
    if body.name.is_empty() {
        return Err(ApiError::MissingField("service name"));
    }
    let id = if body.id.is_empty() {
        body.name.clone()
    } else {
        body.id.clone()
    };
    let mut bodies: Vec<CheckBody> = body.check.into_iter().collect();
    bodies.extend(body.checks);
    let numbered = bodies.len() > 1;
    let mut checks = Vec::new();
    for (i, mut check) in bodies.into_iter().enumerate() {
        check.service_id = id.clone();
        let default_id = if numbered {
            format!("service:{id}:{}", i + 1)
        } else {
            format!("service:{id}")
        };
        let default_name = format!("Service '{}' check", body.name);
        checks.push(check.into_check(&default_id, &default_name)?);
    }
    let service = Service {
        node: String::new(),
        id,
        name: body.name,
        kind: body.kind,
        tags: body.tags,
        address: body.address,
        tagged_addresses: tagged(body.tagged_addresses),
        meta: body.meta,
        port: body.port,
        weights: weights(body.weights),
        enable_tag_override: body.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    };
    Ok(AgentServiceRegistration { service, checks })
}

// ---------------------------------------------------------------- catalog

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CatalogServiceBody {
    id: String,
    service: String,
    kind: String,
    tags: Vec<String>,
    address: String,
    tagged_addresses: BTreeMap<String, ServiceAddressBody>,
    meta: Meta,
    port: u16,
    weights: Option<WeightsBody>,
    enable_tag_override: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CatalogCheckBody {
    node: String,
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    service_id: String,
    #[serde(rename = "type")]
    check_type: String,
    definition: Option<CheckBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RegisterBody {
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: Meta,
    node_meta: Meta,
    service: Option<CatalogServiceBody>,
    check: Option<CatalogCheckBody>,
    checks: Vec<CatalogCheckBody>,
    skip_node_update: bool,
}

fn catalog_check(body: CatalogCheckBody) -> Result<Check, ApiError> {
    let status = match body.status.as_str() {
        "" => CheckStatus::Critical,
        s => CheckStatus::parse(s)
            .ok_or_else(|| ApiError::Invalid(format!("Invalid Status {s:?}")))?,
    };
    let definition = match &body.definition {
        None => CheckDefinition::default(),
        Some(d) => CheckDefinition {
            http: d.http.clone(),
            tcp: d.tcp.clone(),
            interval: duration_text(&d.interval, "Interval")?,
            timeout: duration_text(&d.timeout, "Timeout")?,
            deregister_critical_service_after: duration_text(
                &d.deregister_critical_service_after,
                "DeregisterCriticalServiceAfter",
            )?,
        },
    };
    let check_id = if body.check_id.is_empty() {
        body.name.clone()
    } else {
        body.check_id
    };
    if check_id.is_empty() {
        return Err(ApiError::MissingField("check ID"));
    }
    // A check without ServiceID is a node-level check, even when the same
    // registration carries a service (Consul behaves the same).
    let service_id = body.service_id;
    Ok(Check {
        node: body.node,
        check_id,
        name: body.name,
        status,
        notes: body.notes,
        output: body.output,
        service_id,
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: body.check_type,
        definition,
        create_index: 0,
        modify_index: 0,
    })
}

/// `/v1/catalog/register`. `datacenter` fills an empty `Datacenter`.
pub fn decode_catalog_register(bytes: &[u8], datacenter: &str) -> Result<Registration, ApiError> {
    let body: RegisterBody = decode(bytes)?;
    if body.node.is_empty() {
        return Err(ApiError::MissingField("node name"));
    }
    let service = match body.service {
        None => None,
        Some(s) => {
            if s.service.is_empty() {
                return Err(ApiError::MissingField("service name"));
            }
            Some(Service {
                node: body.node.clone(),
                id: if s.id.is_empty() {
                    s.service.clone()
                } else {
                    s.id
                },
                name: s.service,
                kind: s.kind,
                tags: s.tags,
                address: s.address,
                tagged_addresses: tagged(s.tagged_addresses),
                meta: s.meta,
                port: s.port,
                weights: weights(s.weights),
                enable_tag_override: s.enable_tag_override,
                create_index: 0,
                modify_index: 0,
            })
        }
    };
    let mut checks = Vec::new();
    for check in body.check.into_iter().chain(body.checks) {
        if !check.node.is_empty() && check.node != body.node {
            return Err(ApiError::Invalid(
                "Check node must match registration node".into(),
            ));
        }
        checks.push(catalog_check(check)?);
    }
    Ok(Registration {
        node: Node {
            id: body.id,
            name: body.node,
            address: body.address,
            datacenter: if body.datacenter.is_empty() {
                datacenter.to_string()
            } else {
                body.datacenter
            },
            tagged_addresses: body.tagged_addresses,
            meta: body.node_meta,
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: body.skip_node_update,
        service,
        checks,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeregisterBody {
    node: String,
    service_id: String,
    check_id: String,
}

/// `/v1/catalog/deregister`: (node, service ID, check ID).
pub fn decode_catalog_deregister(
    bytes: &[u8],
) -> Result<(String, Option<String>, Option<String>), ApiError> {
    let body: DeregisterBody = decode(bytes)?;
    if body.node.is_empty() {
        return Err(ApiError::MissingField("node name"));
    }
    let some = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok((body.node, some(body.service_id), some(body.check_id)))
}

/// The body of `POST/PUT/DELETE /v1/operator/keyring`: `{"Key": "..."}`,
/// a base64 gossip key of 16, 24 or 32 bytes.
pub fn decode_keyring_request(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct KeyringBody {
        key: String,
    }
    let body: KeyringBody = decode(bytes)?;
    if body.key.is_empty() {
        return Err(ApiError::MissingField("Key"));
    }
    crate::gossip::crypto::decode_key(&body.key)
        .map_err(|e| ApiError::Invalid(format!("Invalid key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_ignoring_case_and_underscores() {
        for (from, to) in [
            ("TaggedAddresses", "tagged_addresses"),
            ("CheckID", "check_id"),
            ("ID", "id"),
            ("TTL", "ttl"),
            ("TLSSkipVerify", "tls_skip_verify"),
            ("enable_tag_override", "enable_tag_override"),
            ("ServiceID", "service_id"),
            ("name", "name"),
            ("NodeMeta", "node_meta"),
            ("lockdelay", "lock_delay"),
            ("LOCK_DELAY", "lock_delay"),
            ("Unknown_Thing", "unknownthing"),
        ] {
            assert_eq!(canonical_key(from), to);
        }
    }

    #[test]
    fn service_register_accepts_both_spellings() {
        let pascal = br#"{"Name":"web","ID":"web1","Port":80,"Tags":["a"],"Meta":{"KeepCase":"x"},"Check":{"TTL":"10s"}}"#;
        let snake = br#"{"name":"web","id":"web1","port":80,"tags":["a"],"meta":{"KeepCase":"x"},"check":{"ttl":"10s"}}"#;
        for body in [&pascal[..], &snake[..]] {
            let reg = decode_agent_service(body).expect("valid");
            assert_eq!(reg.service.id, "web1");
            assert_eq!(
                reg.service.meta.get("KeepCase").map(String::as_str),
                Some("x")
            );
            assert_eq!(reg.checks.len(), 1);
            assert_eq!(reg.checks[0].check.check_id, "service:web1");
            assert_eq!(reg.checks[0].ttl(), Some(Duration::from_secs(10)));
            assert_eq!(reg.checks[0].check.status, CheckStatus::Critical);
        }
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(
            decode_agent_service(b"{"),
            Err(ApiError::BodyDecode(_))
        ));
        assert!(matches!(
            decode_agent_service(br#"{"Name":5}"#),
            Err(ApiError::BodyDecode(_))
        ));
        assert_eq!(
            decode_agent_service(b"{}").err(),
            Some(ApiError::MissingField("service name"))
        );
        assert!(decode_session_create(br#"{"TTL":"5s"}"#, "n").is_err());
        assert!(decode_session_create(br#"{"Behavior":"explode"}"#, "n").is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"KV":{"Verb":"get","Key":"k"}}"#; 65].join(",")
        );
        assert_eq!(
            decode_txn(many.as_bytes()).err(),
            Some(ApiError::TooManyTxnOps { count: 65 })
        );
    }

    #[test]
    fn session_defaults_follow_consul() {
        let s = decode_session_create(b"", "node1").expect("valid");
        assert_eq!(s.node, "node1");
        assert_eq!(s.node_checks, vec!["serfHealth".to_string()]);
        assert_eq!(s.lock_delay, SESSION_LOCK_DELAY_DEFAULT);
        assert_eq!(s.behavior, Behavior::Release);
        let s = decode_session_create(br#"{"NodeChecks":[],"LockDelay":"0s","TTL":"10s"}"#, "n")
            .expect("valid");
        assert!(s.node_checks.is_empty());
        assert_eq!(
            (s.lock_delay, s.ttl),
            (Duration::ZERO, Duration::from_secs(10))
        );
        let s = decode_session_create(br#"{"LockDelay":15}"#, "n").expect("valid");
        assert_eq!(s.lock_delay, Duration::from_secs(15));
    }

    #[test]
    fn keyring_bodies_carry_one_valid_key() {
        let key = decode_keyring_request(br#"{"Key":"AAAAAAAAAAAAAAAAAAAAAA=="}"#);
        assert_eq!(key, Ok(vec![0; 16]));
        assert_eq!(
            decode_keyring_request(b""),
            Err(ApiError::MissingField("Key"))
        );
        assert_eq!(
            decode_keyring_request(br#"{"Key":"AAAA"}"#),
            Err(ApiError::Invalid(
                "Invalid key: key size must be 16, 24 or 32 bytes".into()
            ))
        );
        assert!(matches!(
            decode_keyring_request(br#"{"Key":7}"#),
            Err(ApiError::BodyDecode(_))
        ));
    }
}

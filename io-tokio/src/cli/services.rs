//! `tribune services register|deregister`, matching `consul services`.
//!
//! Services come either from flags or from agent configuration files
//! (JSON with a `service` object or a `services` array, as in Consul's
//! config format). Config files use snake_case keys; the agent API's
//! canonical spelling is PascalCase, so keys are translated before sending,
//! leaving user-data maps (`meta`, check `header`, proxy `config`, the
//! names inside `tagged_addresses`) untouched.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::flags::FlagSpec;
use super::{connect, fail, group_help, map_flag, parse_command, Http, Ui};
use crate::client::percent_encode_path;

const SERVICES_HELP: &str = r#"
Usage: tribune services <subcommand> [options] [args]

  This command has subcommands for interacting with services. The
  subcommands default to working with services registered with the local
  agent.

  Register a service from a configuration file:

      $ tribune services register web.json

  Register a service with flags:

      $ tribune services register -name=web -port=8080 -tag=v1

  Deregister a service:

      $ tribune services deregister -id=web
"#;

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("deregister", "Deregister services with the local agent"),
    ("register", "Register services with the local agent"),
];

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        return group_help(args, SERVICES_HELP, SUBCOMMANDS, ui);
    };
    match sub.as_str() {
        "register" => register(rest, ui),
        "deregister" => deregister(rest, ui),
        _ => group_help(args, SERVICES_HELP, SUBCOMMANDS, ui),
    }
}

const REGISTER_HELP: &str = r#"
Usage: tribune services register [options] [FILE...]

  Register one or more services using the local agent API. Services can be
  registered from JSON configuration files or using flags. The service is
  registered and the command returns. The caller must remember to call
  "tribune services deregister" or a similar API to deregister the service
  when complete.

      $ tribune services register web.json

Command Options

  -address=<addr> Address of the service to register.
  -id=<id>        ID of the service (defaults to -name).
  -kind=<kind>    The service's kind.
  -meta=<key=value>
                  Metadata to set on the service; may be repeated.
  -name=<name>    Name of the service to register.
  -port=<int>     Port of the service to register.
  -tag=<tag>      Tag to add to the service; may be repeated.
"#;

const REGISTER_FLAGS: &[FlagSpec] = &[
    FlagSpec::value("address"),
    FlagSpec::value("id"),
    FlagSpec::value("kind"),
    FlagSpec::value("meta"),
    FlagSpec::value("name"),
    FlagSpec::value("port"),
    FlagSpec::value("tag"),
];

fn register(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, REGISTER_FLAGS, REGISTER_HELP, ui));
    let from_flags = match service_from_flags(&parsed) {
        Ok(service) => service,
        Err(err) => return super::usage_error(ui, &err, REGISTER_HELP),
    };
    let has_name = parsed.value("name").is_some_and(|n| !n.is_empty());
    let files = &parsed.positional;
    if files.is_empty() && !has_name {
        ui.error("Service registration requires at least one argument or flags.");
        return 1;
    }
    if !files.is_empty() && has_name {
        ui.error("Service registration requires arguments or -id, not both.");
        return 1;
    }
    let services = if files.is_empty() {
        vec![from_flags]
    } else {
        match services_from_files(files) {
            Ok(services) => services,
            Err(err) => return fail(ui, &format!("Error: {err}")),
        }
    };
    let http = or_exit!(connect(&parsed, ui));
    for service in services {
        let name = string_field(&service, "Name");
        if let Err(err) = send_registration(&http, &service) {
            ui.error(&format!("Error registering service {name:?}: {err}"));
            return 1;
        }
        ui.info(&format!("Registered service: {name}"));
    }
    0
}

/// The registration body for flag-based use; empty fields are omitted as
/// Go's `omitempty` does, so the agent applies its own defaults.
fn service_from_flags(parsed: &super::flags::Parsed) -> Result<Map<String, Value>, String> {
    let mut service = Map::new();
    for (flag, field) in [
        ("kind", "Kind"),
        ("id", "ID"),
        ("name", "Name"),
        ("address", "Address"),
    ] {
        if let Some(value) = parsed.value(flag).filter(|v| !v.is_empty()) {
            service.insert(field.to_string(), Value::String(value.to_string()));
        }
    }
    if let Some(text) = parsed.value("port") {
        let port: i64 = text
            .parse()
            .map_err(|_| format!("invalid value {text:?} for flag -port: parse error"))?;
        if port != 0 {
            service.insert("Port".to_string(), Value::from(port));
        }
    }
    let tags = parsed.all("tag");
    if !tags.is_empty() {
        service.insert("Tags".to_string(), Value::from(tags.to_vec()));
    }
    let meta: BTreeMap<String, String> = map_flag(parsed, "meta")?;
    if !meta.is_empty() {
        let meta = meta.into_iter().map(|(k, v)| (k, Value::String(v)));
        service.insert("Meta".to_string(), Value::Object(meta.collect()));
    }
    Ok(service)
}

fn string_field(service: &Map<String, Value>, field: &str) -> String {
    service
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn send_registration(http: &Http, service: &Map<String, Value>) -> Result<(), String> {
    let body = serde_json::to_vec(service).map_err(|e| e.to_string())?;
    http.write("PUT", "/v1/agent/service/register", &[], Some(&body))
        .and_then(|r| r.into_result())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads every file's service definitions, in order, translated to the API's
/// PascalCase keys.
fn services_from_files(files: &[String]) -> Result<Vec<Map<String, Value>>, String> {
    let mut services = Vec::new();
    for path in files {
        services.extend(services_from_file(path)?);
    }
    Ok(services)
}

fn services_from_file(path: &str) -> Result<Vec<Map<String, Value>>, String> {
    let text = std::fs::read(path)
        .map_err(|err| format!("open {path}: {}", crate::client::io_error_text(&err)))?;
    // HCL becomes the JSON value of the same definitions, as in the agent.
    let document: Value = if path.ends_with(".hcl") {
        let text = String::from_utf8_lossy(&text);
        tribune_core::hcl::parse(&text).map_err(|err| format!("failed to parse {path}:{err}"))?
    } else {
        serde_json::from_slice(&text).map_err(|err| format!("failed to parse {path}: {err}"))?
    };
    let Value::Object(top) = document else {
        return Err(format!("failed to parse {path}: expected a JSON object"));
    };
    parse_service_definitions(path, top)
}

/// Collects `service` (an object, or a list of objects) and `services` (a
/// list) from a config document. Other agent settings are ignored.
fn parse_service_definitions(
    path: &str,
    top: Map<String, Value>,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut services = Vec::new();
    for (key, value) in top {
        if !matches!(
            key.as_str(),
            "service" | "services" | "Service" | "Services"
        ) {
            continue;
        }
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            let Value::Object(object) = item else {
                return Err(format!("{path}: {key} must contain JSON objects"));
            };
            services.push(to_api_object(object, ObjectKind::Plain));
        }
    }
    if services.is_empty() {
        // Consul would silently register nothing; say why instead.
        return Err(format!(
            "{path}: no service definitions (expected \"service\" or \"services\")"
        ));
    }
    Ok(services)
}

/// Checks spell their identifier `CheckID` in the API, everything else `ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Plain,
    Check,
}

/// Maps whose keys are user data and must reach the agent verbatim.
const OPAQUE_MAPS: &[&str] = &["Meta", "NodeMeta", "Header", "Config"];

fn to_api_object(object: Map<String, Value>, kind: ObjectKind) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        let key = api_key(&key, kind);
        let value = if OPAQUE_MAPS.contains(&key.as_str()) {
            value
        } else if key == "TaggedAddresses" {
            // Names (lan, wan, ...) are user-chosen; the address objects
            // inside them are ordinary structs.
            match value {
                Value::Object(map) => Value::Object(
                    map.into_iter()
                        .map(|(name, addr)| (name, to_api_value(addr, ObjectKind::Plain)))
                        .collect(),
                ),
                other => other,
            }
        } else if key == "Check" || key == "Checks" {
            to_api_value(value, ObjectKind::Check)
        } else {
            to_api_value(value, ObjectKind::Plain)
        };
        out.insert(key, value);
    }
    out
}

fn to_api_value(value: Value, kind: ObjectKind) -> Value {
    match value {
        Value::Object(map) => Value::Object(to_api_object(map, kind)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| to_api_value(item, kind))
                .collect(),
        ),
        other => other,
    }
}

/// Translates one config key to the API's PascalCase spelling. Keys that
/// already start with an upper-case letter are taken as API spelling.
fn api_key(key: &str, kind: ObjectKind) -> String {
    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
        return key.to_string();
    }
    match key {
        "id" if kind == ObjectKind::Check => return "CheckID".to_string(),
        "h2ping" => return "H2PING".to_string(),
        "h2ping_use_tls" => return "H2PingUseTLS".to_string(),
        "os_service" => return "OSService".to_string(),
        _ => {}
    }
    key.split('_')
        .map(|word| match word {
            "id" | "http" | "tcp" | "udp" | "ttl" | "grpc" | "tls" | "dns" | "ip" | "url"
            | "acl" => word.to_ascii_uppercase(),
            _ => {
                let mut chars = word.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect()
}

const DEREGISTER_HELP: &str = r#"
Usage: tribune services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with the
  local agent.

      $ tribune services deregister web.json db.json

  The -id flag may be used to deregister a single service by ID:

      $ tribune services deregister -id=web

  Services are deregistered from the local agent catalog. This command must
  be run against the same agent where the service was registered.

Command Options

  -id=<id>        ID to delete. This must not be set if arguments are given.
"#;

fn deregister(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(
        args,
        &[FlagSpec::value("id")],
        DEREGISTER_HELP,
        ui
    ));
    let flag_id = parsed.value("id").unwrap_or_default().to_string();
    let files = &parsed.positional;
    if files.is_empty() && flag_id.is_empty() {
        ui.error("Service deregistration requires at least one argument or -id.");
        return 1;
    }
    if !files.is_empty() && !flag_id.is_empty() {
        ui.error("Service deregistration requires arguments or -id, not both.");
        return 1;
    }
    let ids = if files.is_empty() {
        vec![flag_id]
    } else {
        match services_from_files(files) {
            // A definition's ID defaults to its name, as in the agent.
            Ok(services) => services
                .iter()
                .map(|service| match string_field(service, "ID") {
                    id if id.is_empty() => string_field(service, "Name"),
                    id => id,
                })
                .filter(|id| !id.is_empty())
                .collect(),
            Err(err) => return fail(ui, &format!("Error: {err}")),
        }
    };
    let http = or_exit!(connect(&parsed, ui));
    for id in ids {
        let path = format!("/v1/agent/service/deregister/{}", percent_encode_path(&id));
        let result = http
            .write("PUT", &path, &[], None)
            .and_then(|r| r.into_result());
        if let Err(err) = result {
            ui.error(&format!("Error deregistering service {id:?}: {err}"));
            return 1;
        }
        ui.info(&format!("Deregistered service: {id}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::tests::run_captured;
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn config_keys_become_api_keys_but_user_maps_do_not() -> Result<(), String> {
        let top = object(json!({
            "datacenter": "dc1",
            "service": {
                "id": "web-1", "name": "web", "port": 80, "tags": ["v1"],
                "enable_tag_override": true,
                "meta": {"my_key": "x"},
                "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
                "weights": {"passing": 3, "warning": 1},
                "check": {"id": "web-http", "http": "http://localhost/health",
                          "interval": "10s", "tls_skip_verify": true,
                          "header": {"x_api_key": ["k"]},
                          "deregister_critical_service_after": "90m"},
                "connect": {"sidecar_service": {"proxy": {"config": {"bind_port": 1}}}}
            }
        }));
        let services = parse_service_definitions("web.json", top)?;
        let expected = json!({
            "ID": "web-1", "Name": "web", "Port": 80, "Tags": ["v1"],
            "EnableTagOverride": true,
            "Meta": {"my_key": "x"},
            "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
            "Weights": {"Passing": 3, "Warning": 1},
            "Check": {"CheckID": "web-http", "HTTP": "http://localhost/health",
                      "Interval": "10s", "TLSSkipVerify": true,
                      "Header": {"x_api_key": ["k"]},
                      "DeregisterCriticalServiceAfter": "90m"},
            "Connect": {"SidecarService": {"Proxy": {"Config": {"bind_port": 1}}}}
        });
        assert_eq!(services, vec![object(expected)]);
        Ok(())
    }

    #[test]
    fn services_arrays_and_pascal_case_files_are_accepted() -> Result<(), String> {
        let top = object(json!({
            "services": [
                {"name": "a", "checks": [{"id": "c1", "grpc": "x:1", "grpc_use_tls": true}]},
                {"Name": "b", "ID": "b-1"}
            ]
        }));
        let services = parse_service_definitions("s.json", top)?;
        assert_eq!(services.len(), 2);
        assert_eq!(
            services[0].get("Checks"),
            Some(&json!([{"CheckID": "c1", "GRPC": "x:1", "GRPCUseTLS": true}]))
        );
        assert_eq!(string_field(&services[1], "ID"), "b-1");
        let empty = parse_service_definitions("e.json", object(json!({"node_name": "x"})));
        assert!(empty.is_err());
        Ok(())
    }

    #[test]
    fn hcl_files_register_the_same_services() -> Result<(), String> {
        let path = std::env::temp_dir().join(format!("tribune-svc-{}.hcl", std::process::id()));
        let hcl =
            "service {\n  name = \"a\"\n  check { ttl = \"5s\" }\n}\nservice { name = \"b\" }\n";
        std::fs::write(&path, hcl).map_err(|e| e.to_string())?;
        let services = services_from_file(path.to_str().ok_or("utf8")?);
        std::fs::write(&path, "service {").map_err(|e| e.to_string())?;
        let bad = services_from_file(path.to_str().ok_or("utf8")?);
        std::fs::remove_file(&path).ok();
        let services = services?;
        assert_eq!(services.len(), 2);
        assert_eq!(services[0].get("Check"), Some(&json!({"TTL": "5s"})));
        assert!(bad.is_err_and(|e| e.contains(".hcl:1:9: ")));
        Ok(())
    }

    #[test]
    fn flag_registration_body_omits_empty_fields() -> Result<(), String> {
        let args: Vec<String> = [
            "-name=web",
            "-port=8080",
            "-tag=v1",
            "-tag=v2",
            "-meta=team=a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut specs = REGISTER_FLAGS.to_vec();
        specs.extend_from_slice(super::super::HTTP_FLAGS);
        let parsed = super::super::flags::parse(&args, &specs)?;
        let body = service_from_flags(&parsed)?;
        assert_eq!(
            Value::Object(body),
            json!({"Name": "web", "Port": 8080, "Tags": ["v1", "v2"], "Meta": {"team": "a"}})
        );
        Ok(())
    }

    #[test]
    fn argument_validation_matches_consul() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["services", "register"],
                "Service registration requires at least one argument or flags.\n",
            ),
            (
                &["services", "register", "-name=web", "web.json"],
                "Service registration requires arguments or -id, not both.\n",
            ),
            (
                &["services", "deregister"],
                "Service deregistration requires at least one argument or -id.\n",
            ),
            (
                &["services", "deregister", "-id=web", "web.json"],
                "Service deregistration requires arguments or -id, not both.\n",
            ),
        ];
        for (args, expected) in cases {
            let (code, out, err) = run_captured(args, b"");
            assert_eq!(
                (code, out.as_str(), err.as_str()),
                (1, "", *expected),
                "{args:?}"
            );
        }
    }
}

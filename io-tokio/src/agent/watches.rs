//! Watches from the agent's config files (`watches`), run by the agent
//! against its own HTTP API, as Consul's agent does.
//!
//! ```json
//! {"watches": [
//!   {"type": "keyprefix", "prefix": "app/", "args": ["/usr/local/bin/reload"]},
//!   {"type": "service", "service": "web", "handler_type": "http",
//!    "http_handler_config": {"path": "http://127.0.0.1:9000/hook", "method": "POST",
//!                            "header": {"X-Token": ["s3cr3t"]}, "timeout": "5s"}}
//! ]}
//! ```
//!
//! Script handlers get the result on stdin and `CONSUL_INDEX`; HTTP handlers
//! get it as the request body with an `X-Consul-Index` header. Either way a
//! handler runs once at start and then on each change of content (see
//! [`crate::coord::watch`]); failures are logged and the watch goes on.

use crate::client::HttpClient;
use crate::coord::api::Api;
use crate::coord::handler::run_watch_handler;
use crate::coord::watch::{Change, Kind, Params, Plan};
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Script handlers running longer are killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Consul's default `http_handler_config.timeout`.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    /// `args` run directly; the deprecated `handler` string via the shell.
    Script { args: Vec<String>, shell: bool },
    Http {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    pub kind: Kind,
    pub handler: Handler,
}

fn string(v: &Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key}: expected a string, got {other}")),
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{key}: expected strings, got {i}"))
            })
            .collect(),
        Some(other) => Err(format!("{key}: expected a list of strings, got {other}")),
    }
}

fn duration(v: &Value, key: &str, default: Duration) -> Result<Duration, String> {
    match string(v, key)? {
        None => Ok(default),
        Some(text) => tribune_core::time::parse_duration(&text)
            .map(|d| Duration::from_nanos(d.as_nanos()))
            .map_err(|e| format!("{key}: {e}")),
    }
}

const KEYS: &[&str] = &[
    "type",
    "key",
    "prefix",
    "service",
    "tag",
    "passingonly",
    "state",
    "name",
    "args",
    "handler",
    "handler_type",
    "http_handler_config",
    "datacenter",
    "token",
];

/// Decodes one `watches` entry (Consul's snake_case keys).
pub fn decode(v: &Value) -> Result<WatchSpec, String> {
    let object = v.as_object().ok_or("expected an object")?;
    if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{unknown}: unknown watch parameter"));
    }
    let passing_only = match v.get("passingonly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("passingonly: expected a boolean, got {other}")),
    };
    let params = Params {
        kind: string(v, "type")?.unwrap_or_default(),
        key: string(v, "key")?,
        prefix: string(v, "prefix")?,
        service: string(v, "service")?,
        tags: strings(v, "tag")?,
        passing_only,
        state: string(v, "state")?,
        name: string(v, "name")?,
    };
    let kind = Kind::parse(&params)?;
    let handler_type = string(v, "handler_type")?.unwrap_or_else(|| "script".into());
    let handler = match handler_type.as_str() {
        "script" => {
            let args = strings(v, "args")?;
            let legacy = string(v, "handler")?.filter(|h| !h.is_empty());
            match (args.is_empty(), legacy) {
                (false, None) => Handler::Script { args, shell: false },
                (true, Some(line)) => Handler::Script {
                    args: vec![line],
                    shell: true,
                },
                (false, Some(_)) => {
                    return Err("Only one watch handler allowed: args or handler".into())
                }
                (true, None) => return Err("args: a script watch needs a handler".into()),
            }
        }
        "http" => {
            let config = v
                .get("http_handler_config")
                .filter(|c| c.is_object())
                .ok_or("http_handler_config: required for handler_type http")?;
            let url = string(config, "path")?
                .filter(|p| !p.is_empty())
                .ok_or("http_handler_config.path: required")?;
            if !url.starts_with("http://") {
                return Err(format!(
                    "http_handler_config.path: {url:?}: only http:// handlers are supported"
                ));
            }
            let mut headers = Vec::new();
            if let Some(header) = config.get("header").filter(|h| h.is_object()) {
                for name in header.as_object().into_iter().flat_map(|m| m.keys()) {
                    for value in strings(header, name)? {
                        headers.push((name.clone(), value));
                    }
                }
            }
            Handler::Http {
                url,
                method: string(config, "method")?.unwrap_or_else(|| "POST".into()),
                headers,
                timeout: duration(config, "timeout", HTTP_TIMEOUT)?,
            }
        }
        other => return Err(format!("handler_type: unknown handler type {other:?}")),
    };
    Ok(WatchSpec { kind, handler })
}

/// Starts each watch on its own thread, against the agent at `http_addr`.
pub fn start(specs: Vec<WatchSpec>, http_addr: &str) {
    for spec in specs {
        let Ok(client) = HttpClient::new(http_addr, None) else {
            crate::log::error(&format!("watch: bad agent address {http_addr}"));
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || run(spec, client));
        if let Err(e) = spawned {
            crate::log::error(&format!("watch: cannot start: {e}"));
        }
    }
}

fn run(spec: WatchSpec, client: HttpClient) {
    let stop = AtomicBool::new(false);
    let mut plan = Plan::new(Api::new(client, None), spec.kind, false);
    plan.run(
        &stop,
        |change| {
            if let Err(e) = deliver(&spec.handler, change) {
                crate::log::warn(&format!("agent: watch handler: {e}"));
            }
        },
        |e, backoff| {
            crate::log::error(&format!(
                "agent: watch: {e}; retrying in {}s",
                backoff.as_secs()
            ));
        },
    );
}

fn deliver(handler: &Handler, change: &Change) -> Result<(), String> {
    match handler {
        Handler::Script { args, shell } => {
            run_watch_handler(args, *shell, change.index, &change.body, SCRIPT_TIMEOUT)
        }
        Handler::Http {
            url,
            method,
            headers,
            timeout,
        } => {
            let rest = url.trim_start_matches("http://");
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let client = HttpClient::new(host, None)?.with_read_timeout(*timeout);
            let mut all = headers.clone();
            all.push(("X-Consul-Index".into(), change.index.to_string()));
            all.push(("Content-Type".into(), "application/json".into()));
            let response = client
                .request_with_headers(method, path, &all, Some(&change.body))
                .map_err(|e| e.to_string())?;
            if response.is_success() {
                Ok(())
            } else {
                Err(format!("{method} {url}: status {}", response.status))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn script_and_http_watches_decode() -> Result<(), String> {
        let spec = decode(&json!({"type": "key", "key": "a", "args": ["/bin/true", "x"]}))?;
        assert_eq!(spec.kind, Kind::Key("a".into()));
        assert_eq!(
            spec.handler,
            Handler::Script {
                args: vec!["/bin/true".into(), "x".into()],
                shell: false
            }
        );
        let spec = decode(&json!({"type": "services", "handler": "echo hi"}))?;
        assert!(matches!(spec.handler, Handler::Script { shell: true, .. }));
        let spec = decode(&json!({
            "type": "service", "service": "web", "tag": ["a", "b"], "passingonly": true,
            "handler_type": "http",
            "http_handler_config": {"path": "http://127.0.0.1:9/h", "header": {"X-A": ["1", "2"]}, "timeout": "2s"}
        }))?;
        assert_eq!(
            spec.kind,
            Kind::Service {
                name: "web".into(),
                tags: vec!["a".into(), "b".into()],
                passing_only: true
            }
        );
        match spec.handler {
            Handler::Http {
                method,
                headers,
                timeout,
                ..
            } => {
                assert_eq!(method, "POST");
                assert_eq!(headers.len(), 2);
                assert_eq!(timeout, Duration::from_secs(2));
            }
            other => panic!("expected http, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn bad_watches_name_the_problem() {
        let err = |v: Value| decode(&v).err().unwrap_or_default();
        assert!(err(json!({"type": "key", "args": ["x"]})).contains("Must specify a single key"));
        assert!(err(json!({"type": "nope", "args": ["x"]})).contains("Unsupported watch type"));
        assert!(err(json!({"type": "nodes"})).contains("needs a handler"));
        assert!(err(json!({"type": "nodes", "args": ["x"], "bogus": 1})).contains("bogus"));
        assert!(err(json!({"type": "nodes", "args": "x", "handler": "y"})).contains("Only one"));
        assert!(
            err(json!({"type": "nodes", "handler_type": "http"})).contains("http_handler_config")
        );
        assert!(
            err(json!({"type": "nodes", "passingonly": "yes", "args": ["x"]})).contains("boolean")
        );
        assert!(err(json!({"type": "nodes", "handler_type": "http",
                           "http_handler_config": {"path": "https://x/"}}))
        .contains("only http://"));
    }
}

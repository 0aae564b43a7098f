//! `tribune info` and `tribune version`, matching `consul info` / `version`.

use serde_json::{Map, Value};

use super::flags::{self, FlagSpec};
use super::{connect, fail, get_json, parse_command, usage_error, wants_help, Ui};

/// Gossip protocol versions, reported the way Consul's `version` does.
const PROTOCOL_DEFAULT: u8 = 2;
const PROTOCOL_MIN: u8 = 2;
const PROTOCOL_MAX: u8 = 3;

const VERSION_HELP: &str = r#"
Usage: tribune version [options]

  Prints the tribune version and the protocol versions it speaks.

Command Options

  -format=<pretty|json>
                  Output format. Defaults to "pretty".
"#;

pub(super) fn version(args: &[String], ui: &mut Ui) -> i32 {
    if wants_help(args) {
        ui.info(VERSION_HELP.trim());
        return 0;
    }
    let parsed = match flags::parse(args, &[FlagSpec::value("format")]) {
        Ok(parsed) => parsed,
        Err(err) => {
            ui.error(&err);
            ui.error(VERSION_HELP.trim());
            return 1;
        }
    };
    match parsed.value("format").unwrap_or("pretty") {
        "pretty" => {
            ui.info(&pretty_version());
            0
        }
        "json" => {
            ui.info(&json_version());
            0
        }
        other => {
            ui.error(&format!(
                "Unknown format: {other}; supported formats: pretty, json"
            ));
            1
        }
    }
}

fn pretty_version() -> String {
    let mut text = format!("tribune v{}\n", env!("CARGO_PKG_VERSION"));
    text.push_str(&format!(
        "Protocol {PROTOCOL_DEFAULT} spoken by default, understands {PROTOCOL_MIN} to {PROTOCOL_MAX}"
    ));
    if PROTOCOL_DEFAULT < PROTOCOL_MAX {
        text.push_str(&format!(
            " (agent will automatically use protocol >{PROTOCOL_DEFAULT} when speaking to compatible agents)"
        ));
    }
    text
}

/// Mirrors Consul's `version -format=json` fields (3-space indent as Go's
/// MarshalIndent there uses).
fn json_version() -> String {
    let info = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Revision": "",
        "Prerelease": "",
        "RPC": {"Default": PROTOCOL_DEFAULT, "Min": PROTOCOL_MIN, "Max": PROTOCOL_MAX},
    });
    let mut buffer = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffer, formatter);
    match serde::Serialize::serialize(&info, &mut serializer) {
        Ok(()) => String::from_utf8_lossy(&buffer).into_owned(),
        Err(_) => info.to_string(),
    }
}

const INFO_HELP: &str = r#"
Usage: tribune info [options]

  Provides debugging information for operators.
"#;

pub(super) fn info(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], INFO_HELP, ui));
    if !parsed.positional.is_empty() {
        let count = parsed.positional.len();
        return usage_error(
            ui,
            &format!("Too many arguments (expected 0, got {count})"),
            INFO_HELP,
        );
    }
    let http = or_exit!(connect(&parsed, ui));
    let agent_self = match get_json::<Map<String, Value>>(&http, "/v1/agent/self", &[]) {
        Ok(Some(found)) => found,
        Ok(None) => return fail(ui, "Error querying agent: Unexpected response code: 404 ()"),
        Err(err) => return fail(ui, &format!("Error querying agent: {err}")),
    };
    match render_info(&agent_self) {
        Ok(text) => {
            ui.info(&text);
            0
        }
        Err(err) => {
            ui.error(&err);
            1
        }
    }
}

/// Renders `Stats` as Consul does: each section as `name:` followed by
/// `\tkey = value` lines, both levels sorted. Should an agent omit `Stats`,
/// the scalar `Config` fields are shown as a `config:` section instead so the
/// command still tells the operator something.
fn render_info(agent_self: &Map<String, Value>) -> Result<String, String> {
    let sections: Vec<(String, &Map<String, Value>)> = match agent_self.get("Stats") {
        Some(Value::Object(stats)) => {
            let mut sections = Vec::new();
            for (name, section) in stats {
                let Value::Object(fields) = section else {
                    return Err(format!("Got invalid subkey in stats: {section}"));
                };
                sections.push((name.clone(), fields));
            }
            sections
        }
        _ => match agent_self.get("Config") {
            Some(Value::Object(config)) => vec![("config".to_string(), config)],
            _ => {
                return Err(format!(
                    "Agent response did not contain 'Stats' key: {}",
                    Value::Object(agent_self.clone())
                ))
            }
        },
    };
    let mut sections = sections;
    sections.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (name, fields) in sections {
        lines.push(format!("{name}:"));
        let mut keys: Vec<&String> = fields.keys().collect();
        keys.sort();
        for key in keys {
            let text = match &fields[key] {
                Value::String(text) => text.clone(),
                Value::Object(_) | Value::Array(_) => continue,
                other => other.to_string(),
            };
            lines.push(format!("\t{key} = {text}"));
        }
    }
    Ok(lines.join("\n"))
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
    fn info_sections_and_keys_are_sorted() -> Result<(), String> {
        let agent_self = object(json!({
            "Config": {"NodeName": "n1"},
            "Stats": {
                "raft": {"state": "Leader", "applied_index": "12"},
                "agent": {"services": "1", "checks": "0"},
                "build": {"version": "0.1.0", "prerelease": ""}
            }
        }));
        assert_eq!(
            render_info(&agent_self)?,
            "agent:\n\tchecks = 0\n\tservices = 1\n\
             build:\n\tprerelease = \n\tversion = 0.1.0\n\
             raft:\n\tapplied_index = 12\n\tstate = Leader"
        );
        Ok(())
    }

    #[test]
    fn info_falls_back_to_config_and_errors_without_either() -> Result<(), String> {
        let agent_self = object(json!({"Config": {"NodeName": "n1", "Server": true, "Ports": {}}}));
        assert_eq!(
            render_info(&agent_self)?,
            "config:\n\tNodeName = n1\n\tServer = true"
        );
        assert!(render_info(&object(json!({"Member": {}}))).is_err());
        Ok(())
    }

    #[test]
    fn version_output() {
        let (code, out, err) = run_captured(&["version"], b"");
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            format!(
                "tribune v{}\nProtocol 2 spoken by default, understands 2 to 3 \
                 (agent will automatically use protocol >2 when speaking to compatible agents)\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let (code, out, _) = run_captured(&["--version"], b"");
        assert_eq!(code, 0);
        assert!(out.starts_with("tribune v"));
        let (code, out, _) = run_captured(&["version", "-format=json"], b"");
        assert_eq!(code, 0);
        let parsed: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_eq!(parsed["RPC"]["Default"], json!(2));
        assert_eq!(run_captured(&["version", "-format=xml"], b"").0, 1);
    }
}

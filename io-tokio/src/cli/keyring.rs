//! `tribune keyring -list | -list-primary | -install KEY | -use KEY |
//! -remove KEY` and `tribune keygen`, as `consul keyring` and `consul
//! keygen`: the keyring commands call `/v1/operator/keyring` and print
//! what Consul prints; keygen prints a new 32-byte key from the OS's
//! random source.

use super::flags::FlagSpec;
use super::{connect, full_help, parse_command, wants_help, Ui};
use serde::Deserialize;
use std::collections::BTreeMap;

const KEYGEN_HELP: &str = r#"
Usage: tribune keygen

  Generates a new encryption key that can be used to configure the
  agent to encrypt traffic. The output of this command is already
  in the proper format that the agent expects.
"#;

const HELP: &str = r#"
Usage: tribune keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All operations performed by this command can only be run against server nodes.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.

Command Options

  -install=<string>     Install a new encryption key. This will broadcast the
                        new key to all members in the cluster.
  -list                 List all keys currently in use within the cluster.
  -list-primary         List all primary keys currently in use within the
                        cluster.
  -local-only           Setting this to true will force the keyring query to
                        only hit local servers (no WAN traffic). This flag can
                        only be set for list queries.
  -relay-factor=<int>   Setting this to a non-zero value will cause nodes to
                        relay their response to the operation through this many
                        randomly-chosen other nodes in the cluster. The maximum
                        allowed value is 5.
  -remove=<string>      Remove the given key from the cluster. This operation
                        may only be performed on keys which are not currently
                        the primary key.
  -use=<string>         Change the primary encryption key, which is used to
                        encrypt messages. The key must already be installed
                        before this operation can succeed.
"#;

const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("install"),
    FlagSpec::value("use"),
    FlagSpec::value("remove"),
    FlagSpec::switch("list"),
    FlagSpec::switch("list-primary"),
    FlagSpec::value("relay-factor"),
    FlagSpec::switch("local-only"),
];

/// Consul's `KeyringResponse`, the parts the CLI prints.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN", default)]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    messages: BTreeMap<String, String>,
    #[serde(default)]
    keys: BTreeMap<String, u64>,
    #[serde(default)]
    primary_keys: BTreeMap<String, u64>,
    #[serde(default)]
    num_nodes: u64,
}

pub(super) fn keygen(args: &[String], ui: &mut Ui) -> i32 {
    if wants_help(args) {
        ui.info(KEYGEN_HELP.trim());
        return 0;
    }
    if !args.is_empty() {
        ui.error("Too many arguments (expected none)");
        ui.error(KEYGEN_HELP.trim());
        return 1;
    }
    match crate::keyring::generate_key() {
        Ok(key) => {
            ui.info(&key);
            0
        }
        Err(e) => {
            ui.error(&e);
            1
        }
    }
}

enum Action<'a> {
    List {
        primary: bool,
    },
    Change {
        method: &'static str,
        key: &'a str,
        info: &'static str,
    },
}

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, FLAGS, HELP, ui));
    let value = |flag: &str| parsed.value(flag).filter(|v| !v.is_empty());
    let mut actions = Vec::new();
    if parsed.flag("list") {
        actions.push(Action::List { primary: false });
    }
    if parsed.flag("list-primary") {
        actions.push(Action::List { primary: true });
    }
    let changes = [
        ("install", "POST", "Installing new gossip encryption key..."),
        ("use", "PUT", "Changing primary gossip encryption key..."),
        ("remove", "DELETE", "Removing gossip encryption key..."),
    ];
    for (flag, method, info) in changes {
        if let Some(key) = value(flag) {
            actions.push(Action::Change { method, key, info });
        }
    }
    let action = match actions.len() {
        0 => return fail(ui, &full_help(HELP)),
        1 => actions.remove(0),
        _ => return fail(ui, "Only a single action is allowed"),
    };
    let relay = match parsed.value("relay-factor") {
        None => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(n @ 0..=5) => n,
            Ok(_) => {
                return fail(
                    ui,
                    "Error parsing relay factor: Relay factor must be in range: [0, 5]",
                )
            }
            Err(_) => {
                return fail(
                    ui,
                    &format!("invalid value {text:?} for flag -relay-factor: parse error"),
                )
            }
        },
    };
    let local = parsed.flag("local-only");
    if local && !matches!(action, Action::List { primary: false }) {
        return fail(
            ui,
            "Error validating local-only: local-only can only be set for list requests",
        );
    }
    let http = or_exit!(connect(&parsed, ui));
    let mut params: Vec<(&str, Option<String>)> = Vec::new();
    if relay != 0 {
        params.push(("relay-factor", Some(relay.to_string())));
    }
    if local {
        params.push(("local-only", Some("true".into())));
    }
    match action {
        Action::List { primary } => {
            ui.info(if primary {
                "==> Gathering installed primary encryption keys..."
            } else {
                "==> Gathering installed encryption keys..."
            });
            let responses = http
                .get("/v1/operator/keyring", &params)
                .map_err(|e| e.to_string())
                .and_then(|r| r.into_result().map_err(|e| e.to_string()))
                .and_then(|r| {
                    serde_json::from_slice::<Vec<KeyringResponse>>(&r.body)
                        .map_err(|e| format!("failed to decode the keyring list: {e}"))
                });
            match responses {
                Ok(responses) => {
                    for response in &responses {
                        let keys = if primary {
                            &response.primary_keys
                        } else {
                            &response.keys
                        };
                        ui.info(&format_response(response, keys));
                    }
                    0
                }
                Err(e) => fail(ui, &format!("error: {e}")),
            }
        }
        Action::Change { method, key, info } => {
            ui.info(&format!("==> {info}"));
            let body = serde_json::json!({ "Key": key }).to_string();
            let outcome = http
                .write(
                    method,
                    "/v1/operator/keyring",
                    &params,
                    Some(body.as_bytes()),
                )
                .map_err(|e| e.to_string())
                .and_then(|r| r.into_result().map_err(|e| e.to_string()));
            match outcome {
                Ok(_) => 0,
                Err(e) => fail(ui, &format!("error: {e}")),
            }
        }
    }
}

fn fail(ui: &mut Ui, message: &str) -> i32 {
    ui.error(message);
    1
}

/// Consul's `formatResponse`: a blank line, the pool, each member's
/// message, then each key with how many of the pool's members have it.
fn format_response(response: &KeyringResponse, keys: &BTreeMap<String, u64>) -> String {
    let pool = if response.wan {
        "WAN".to_string()
    } else {
        format!("{} (LAN)", response.datacenter)
    };
    let suffix = if response.segment.is_empty() {
        String::new()
    } else {
        format!(" [{}]", response.segment)
    };
    let mut text = format!("\n{pool}{suffix}:\n");
    for (from, message) in &response.messages {
        text.push_str(&format!("  ===> {from}: {message}\n"));
    }
    for (key, count) in keys {
        text.push_str(&format!("  {key} [{count}/{}]\n", response.num_nodes));
    }
    text.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests::run_captured;
    use super::*;

    #[test]
    fn list_output_matches_consul() {
        let response = KeyringResponse {
            wan: false,
            datacenter: "dc1".into(),
            segment: String::new(),
            messages: BTreeMap::from([("s2".into(), "note".into())]),
            keys: BTreeMap::from([("K1=".into(), 2), ("K2=".into(), 1)]),
            primary_keys: BTreeMap::new(),
            num_nodes: 2,
        };
        assert_eq!(
            format_response(&response, &response.keys),
            "\ndc1 (LAN):\n  ===> s2: note\n  K1= [2/2]\n  K2= [1/2]"
        );
    }

    #[test]
    fn bad_invocations_are_refused_before_any_request() {
        let (code, _, err) = run_captured(&["keyring"], b"");
        assert_eq!(code, 1);
        assert!(err.contains("Usage: tribune keyring"), "{err}");
        let (code, _, err) = run_captured(&["keyring", "-list", "-install=abc"], b"");
        assert_eq!(
            (code, err.as_str()),
            (1, "Only a single action is allowed\n")
        );
        let (code, _, err) = run_captured(&["keyring", "-list", "-relay-factor=6"], b"");
        assert_eq!(code, 1);
        assert!(
            err.contains("Relay factor must be in range: [0, 5]"),
            "{err}"
        );
        let (code, _, err) = run_captured(&["keyring", "-install=abc", "-local-only"], b"");
        assert_eq!(code, 1);
        assert!(err.contains("local-only can only be set for list requests"));
    }

    #[test]
    fn keygen_prints_a_base64_32_byte_key() {
        let (code, out, _) = run_captured(&["keygen"], b"");
        assert_eq!(code, 0);
        let key = tribune_core::gossip::crypto::decode_key(out.trim()).expect("a key");
        assert_eq!(key.len(), 32);
        let (code, _, _) = run_captured(&["keygen", "extra"], b"");
        assert_eq!(code, 1);
    }
}

//! `tribune event -name=N [-node=RE] [-service=RE] [-tag=RE] [payload]`,
//! as `consul event`: fires a user event and prints its ID.

use super::flags::FlagSpec;
use super::{connect, fail, parse_command, usage_error, Ui};
use crate::coord::api::Api;
use tribune_core::event::{compile_filter, EventError, FilterKind};

const HELP: &str = r#"
Usage: tribune event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using regular
  expressions on node name, service, and tag definitions.

Command Options

  -name=<string>     Name of the event.
  -node=<string>     Regular expression to filter on node names.
  -service=<string>  Regular expression to filter on service instances.
  -tag=<string>      Regular expression to filter on service tags. Must be
                     used with -service.
"#;

const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("name"),
    FlagSpec::value("node"),
    FlagSpec::value("service"),
    FlagSpec::value("tag"),
];

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, FLAGS, HELP, ui));
    let name = parsed.value("name").unwrap_or_default();
    if name.is_empty() {
        return usage_error(ui, "Event name must be specified", HELP);
    }
    let value = |flag: &str| parsed.value(flag).unwrap_or_default().to_string();
    for (flag, kind) in [
        ("node", FilterKind::Node),
        ("service", FilterKind::Service),
        ("tag", FilterKind::Tag),
    ] {
        if value(flag).is_empty() {
            continue;
        }
        if let Err(EventError::InvalidFilter { reason, .. }) = compile_filter(kind, &value(flag)) {
            return fail(
                ui,
                &format!("Failed to compile {kind} filter regexp: {reason}"),
            );
        }
    }
    if !value("tag").is_empty() && value("service").is_empty() {
        return fail(ui, "Cannot provide tag filter without service filter.");
    }
    let payload = match parsed.positional.as_slice() {
        [] => Vec::new(),
        [payload] => payload.as_bytes().to_vec(),
        _ => return usage_error(ui, "Too many command line arguments.", HELP),
    };
    let http = or_exit!(connect(&parsed, ui));
    let api = Api::new(http.client.clone(), http.datacenter.clone());
    if let Err(e) = api.node_name() {
        ui.error(&format!("Error querying Consul agent: {e}"));
        return 1;
    }
    let mut params: Vec<(&'static str, Option<String>)> = Vec::new();
    for flag in ["node", "service", "tag"] {
        if !value(flag).is_empty() {
            params.push((flag, Some(value(flag))));
        }
    }
    let path = format!(
        "/v1/event/fire/{}",
        crate::client::percent_encode_path(name)
    );
    match api.put_json(&path, params, &payload) {
        Ok(event) => {
            let id = event["ID"].as_str().unwrap_or_default().to_string();
            ui.info(&format!("Event ID: {id}"));
            0
        }
        Err(e) => {
            ui.error(&format!("Error firing event: {e}"));
            1
        }
    }
}

//! `tribune watch`: Consul's `consul watch`. Without a handler it prints the
//! current result (indented like Consul) and exits; with one it runs the
//! handler with the result's JSON on stdin and `CONSUL_INDEX` set, once at
//! start and again on every change of content.
//!
//! Unlike `consul watch`, a failing handler is logged and the watch goes
//! on, and a handler that hangs is killed after `-handler-timeout`.

use super::flags::{FlagSpec, Parsed};
use super::{connect, parse_command, usage_error, Ui};
use crate::coord::api::Api;
use crate::coord::handler::run_watch_handler;
use crate::coord::watch::{Kind, Params, Plan};
use crate::http::reply::reindent;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const HELP: &str = r#"
Usage: tribune watch [options] [child...]

  Watches for changes in a given data view from tribune. If a child process
  is specified, it will be invoked with the latest results on changes.
  Otherwise, the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.

Command Options

  -handler-timeout=<duration>
     Kill a handler still running after this long (default 60s).

  -key=<key>
     Specifies the key to watch. Only for 'key' type.

  -name=<name>
     Specifies an event name to watch. Only for 'event' type.

  -passingonly=<true|false>
     Specifies if only hosts passing all checks are displayed.
     Optional for 'service' type, defaults false.

  -prefix=<prefix>
     Specifies the key prefix to watch. Only for 'keyprefix' type.

  -service=<service>
     Specifies the service to watch. Required for 'service' type, optional
     for 'checks' type.

  -shell
     Use a shell to run the command (can set a custom shell via the SHELL
     environment variable). The default value is true.

  -state=<state>
     Specifies the states to watch. Optional for 'checks' type.

  -tag=<tag>
     Specifies the service tag(s) to filter on. Optional for 'service' type.
     May be specified multiple times.

  -type=<type>
     Specifies the watch type. One of key, keyprefix, services, nodes,
     service, checks, or event.
"#;

const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("handler-timeout"),
    FlagSpec::value("key"),
    FlagSpec::value("name"),
    FlagSpec::value("passingonly"),
    FlagSpec::value("prefix"),
    FlagSpec::value("service"),
    FlagSpec::switch("shell"),
    FlagSpec::value("state"),
    FlagSpec::value("tag"),
    FlagSpec::value("type"),
];

const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(60);

fn params(parsed: &Parsed) -> Result<Params, String> {
    let passing_only = match parsed.value("passingonly") {
        None | Some("") => false,
        Some(text) => super::flags::parse_go_bool(text)
            .ok_or_else(|| format!("Failed to parse passingonly flag: {text:?}"))?,
    };
    Ok(Params {
        kind: parsed.value("type").unwrap_or_default().to_string(),
        key: parsed.value("key").map(str::to_string),
        prefix: parsed.value("prefix").map(str::to_string),
        service: parsed.value("service").map(str::to_string),
        tags: parsed.all("tag").to_vec(),
        passing_only,
        state: parsed.value("state").map(str::to_string),
        name: parsed.value("name").map(str::to_string),
    })
}

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, FLAGS, HELP, ui));
    if parsed.value("type").is_none_or(str::is_empty) {
        return usage_error(ui, "Watch type must be specified", HELP);
    }
    let kind = match params(&parsed).and_then(|p| Kind::parse(&p)) {
        Ok(kind) => kind,
        Err(e) => {
            ui.error(&format!("Error: {e}"));
            return 1;
        }
    };
    let timeout = match parsed.value("handler-timeout") {
        None => DEFAULT_HANDLER_TIMEOUT,
        Some(text) => match tribune_core::time::parse_duration(text) {
            Ok(d) if d.as_nanos() > 0 => Duration::from_nanos(d.as_nanos()),
            _ => {
                return usage_error(
                    ui,
                    &format!("invalid value {text:?} for flag -handler-timeout"),
                    HELP,
                )
            }
        },
    };
    let http = or_exit!(connect(&parsed, ui));
    let api = Api::new(http.client.clone(), http.datacenter.clone());
    if let Err(e) = api.node_name() {
        ui.error(&format!("Error querying Consul agent: {e}"));
        return 1;
    }
    let mut plan = Plan::new(api, kind, http.stale);
    let handler = parsed.positional.clone();
    if handler.is_empty() {
        // Print the current result once and exit.
        return match plan.poll() {
            Ok(Some(change)) => {
                let pretty = reindent(&change.body);
                let _ = ui.out.write_all(&pretty);
                0
            }
            Ok(None) => 0,
            Err(e) => {
                ui.error(&format!("Error querying Consul agent: {e}"));
                1
            }
        };
    }
    let shell = parsed.flag_default_on("shell");
    let stop = AtomicBool::new(false);
    plan.run(
        &stop,
        |change| {
            if let Err(e) = run_watch_handler(&handler, shell, change.index, &change.body, timeout)
            {
                crate::log::warn(&format!("watch: {e}"));
            }
        },
        |e, backoff| {
            crate::log::error(&format!("watch: {e}; retrying in {}s", backoff.as_secs()));
        },
    );
    0
}

//! `tribune reload` and `tribune maint`, matching `consul reload` /
//! `consul maint` texts.

use super::flags::FlagSpec;
use super::{connect, fail, parse_command, usage_error, Ui};

const RELOAD_HELP: &str = r#"
Usage: tribune reload [options]

  Causes the agent to reload its configuration files: services and checks
  defined in them are added, updated or removed to match. This does not
  interrupt active connections or acknowledged writes.
"#;

pub(super) fn reload(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], RELOAD_HELP, ui));
    if !parsed.positional.is_empty() {
        return usage_error(ui, "Too many arguments (expected 0)", RELOAD_HELP);
    }
    let http = or_exit!(connect(&parsed, ui));
    match http.write("PUT", "/v1/agent/reload", &[], None) {
        Ok(resp) if resp.is_success() => {
            ui.info("Configuration reload triggered");
            0
        }
        Ok(resp) => fail(ui, &format!("Error reloading: {}", resp.text().trim())),
        Err(e) => fail(ui, &format!("Error reloading: {e}")),
    }
}

const JOIN_HELP: &str = r#"
Usage: tribune join [options] address ...

  Tells a running tribune agent (with -http-addr) to join the cluster
  by specifying at least one existing member (host[:port], the port
  defaulting to the agent's serf LAN port).

Command Options

  -wan    Joins a server to another server in the WAN pool (port
          defaulting to the server's serf WAN port).
"#;

/// `tribune join`: asks the agent to join the LAN pool through each
/// address, as `consul join` does.
pub(super) fn join(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(
        args,
        &[FlagSpec::switch("wan")],
        JOIN_HELP,
        ui
    ));
    if parsed.positional.is_empty() {
        return usage_error(
            ui,
            "At least one address to join must be specified.",
            JOIN_HELP,
        );
    }
    let http = or_exit!(connect(&parsed, ui));
    let mut joined = 0;
    let wan: &[(&str, Option<String>)] = match parsed.flag("wan") {
        true => &[("wan", Some("1".to_string()))],
        false => &[],
    };
    for addr in &parsed.positional {
        match http.write("PUT", &format!("/v1/agent/join/{addr}"), wan, None) {
            Ok(resp) if resp.is_success() => joined += 1,
            Ok(resp) => ui.error(&format!(
                "Error joining address '{addr}': {}",
                resp.text().trim()
            )),
            Err(e) => ui.error(&format!("Error joining address '{addr}': {e}")),
        }
    }
    if joined == 0 {
        return fail(ui, "Failed to join any nodes.");
    }
    ui.info(&format!(
        "Successfully joined cluster by contacting {joined} nodes."
    ));
    0
}

const LEAVE_HELP: &str = r#"
Usage: tribune leave [options]

  Causes the agent to gracefully leave the cluster and shut down. A
  server leaves the Raft configuration first, so the remaining servers'
  quorum no longer counts it.
"#;

pub(super) fn leave(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], LEAVE_HELP, ui));
    if !parsed.positional.is_empty() {
        return usage_error(ui, "Too many arguments (expected 0)", LEAVE_HELP);
    }
    let http = or_exit!(connect(&parsed, ui));
    match http.write("PUT", "/v1/agent/leave", &[], None) {
        Ok(resp) if resp.is_success() => {
            ui.info("Graceful leave complete");
            0
        }
        Ok(resp) => fail(ui, &format!("Error leaving: {}", resp.text().trim())),
        Err(e) => fail(ui, &format!("Error leaving: {e}")),
    }
}

const FORCE_LEAVE_HELP: &str = r#"
Usage: tribune force-leave [options] name

  Forces a member of the cluster to enter the "left" state. If the node is
  still alive, it will eventually rejoin the cluster. This is useful for
  failed nodes that will never come back: their services and checks are
  removed from the catalog once the leader sees them leave, and other
  agents stop trying to reconnect to them.

Command Options

  -prune    Remove the agent forcibly from the list of members at once.
"#;

pub(super) fn force_leave(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(
        args,
        &[FlagSpec::switch("prune")],
        FORCE_LEAVE_HELP,
        ui
    ));
    let [node] = parsed.positional.as_slice() else {
        return usage_error(
            ui,
            "A single node name must be specified to force leave.",
            FORCE_LEAVE_HELP,
        );
    };
    let http = or_exit!(connect(&parsed, ui));
    let query: &[(&str, Option<String>)] = match parsed.flag("prune") {
        true => &[("prune", None)],
        false => &[],
    };
    match http.write("PUT", &format!("/v1/agent/force-leave/{node}"), query, None) {
        Ok(resp) if resp.is_success() => 0,
        Ok(resp) => fail(
            ui,
            &format!(
                "Error force leaving: Unexpected response code: {} ({})",
                resp.status,
                resp.text().trim()
            ),
        ),
        Err(e) => fail(ui, &format!("Error force leaving: {e}")),
    }
}

const MAINT_HELP: &str = r#"
Usage: tribune maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the "Notes" field
  of the critical health check which is registered against the node or
  service.

Command Options

  -disable         Disable maintenance mode.
  -enable          Enable maintenance mode.
  -reason=<string> Text describing the maintenance reason.
  -service=<id>    Control maintenance mode for a specific service ID.
"#;

pub(super) fn maint(args: &[String], ui: &mut Ui) -> i32 {
    let own = [
        FlagSpec::switch("enable"),
        FlagSpec::switch("disable"),
        FlagSpec::value("reason"),
        FlagSpec::value("service"),
    ];
    let parsed = or_exit!(parse_command(args, &own, MAINT_HELP, ui));
    let (enable, disable) = (parsed.flag("enable"), parsed.flag("disable"));
    let reason = parsed.value("reason").unwrap_or("").to_string();
    if enable && disable {
        return usage_error(
            ui,
            "Only one of -enable or -disable may be provided",
            MAINT_HELP,
        );
    }
    if !enable && !reason.is_empty() {
        return usage_error(ui, "Reason may only be provided with -enable", MAINT_HELP);
    }
    if !enable && !disable {
        return usage_error(
            ui,
            "One of -enable or -disable must be provided",
            MAINT_HELP,
        );
    }
    let http = or_exit!(connect(&parsed, ui));
    let service = parsed.value("service").filter(|s| !s.is_empty());
    let path = match service {
        Some(id) => format!(
            "/v1/agent/service/maintenance/{}",
            crate::client::percent_encode_path(id)
        ),
        None => "/v1/agent/maintenance".to_string(),
    };
    let mut params = vec![("enable", Some(enable.to_string()))];
    if enable {
        params.push(("reason", Some(reason)));
    }
    match http.write("PUT", &path, &params, None) {
        Ok(resp) if resp.is_success() => {
            let verb = if enable { "entering" } else { "leaving" };
            match service {
                Some(id) => ui.info(&format!("Service {verb} maintenance mode: {id}")),
                None => ui.info(&format!("Node {verb} maintenance mode")),
            }
            0
        }
        Ok(resp) => fail(ui, &format!("Error: {}", resp.text().trim())),
        Err(e) => fail(ui, &format!("Error: {e}")),
    }
}

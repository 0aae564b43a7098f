//! `tribune operator raft list-peers|remove-peer`, matching `consul
//! operator raft`.

use serde::Deserialize;

use super::flags::FlagSpec;
use super::{columnize, connect, fail, get_json, parse_command, usage_error, Ui};

const OPERATOR_HELP: &str = r#"
Usage: tribune operator <subcommand> [options]

  Cluster-level tools for operators.

Subcommands:
    raft list-peers     Display the current Raft peer configuration
    raft remove-peer    Remove a Raft peer
"#;

const LIST_PEERS_HELP: &str = r#"
Usage: tribune operator raft list-peers [options]

  Displays the current Raft peer configuration.

Command Options

  -stale  Read the configuration from any server, not only the leader
          (useful while there is no leader).
"#;

const REMOVE_PEER_HELP: &str = r#"
Usage: tribune operator raft remove-peer [options]

  Removes the Raft peer with the given address or ID from the Raft
  configuration. Use it to clean up after a server failed and will not
  come back; a server that leaves gracefully removes itself.

Command Options

  -address=<addr>  The IP:port of the server to remove.
  -id=<id>         The ID of the server to remove.
"#;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    servers: Vec<Server>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Server {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: String,
    voter: bool,
}

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    match args {
        [raft, sub, rest @ ..] if raft == "raft" && sub == "list-peers" => list_peers(rest, ui),
        [raft, sub, rest @ ..] if raft == "raft" && sub == "remove-peer" => remove_peer(rest, ui),
        _ => usage_error(ui, "Unknown operator subcommand", OPERATOR_HELP),
    }
}

fn list_peers(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], LIST_PEERS_HELP, ui));
    let http = or_exit!(connect(&parsed, ui));
    let config: Configuration =
        match get_json::<Configuration>(&http, "/v1/operator/raft/configuration", &[]) {
            Ok(Some(config)) => config,
            Ok(None) => return fail(ui, "Failed to retrieve raft configuration: not found"),
            Err(e) => return fail(ui, &format!("Failed to retrieve raft configuration: {e}")),
        };
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(String::from)
        .to_vec()];
    for server in config.servers {
        let state = if server.leader { "leader" } else { "follower" };
        rows.push(vec![
            server.node,
            server.id,
            server.address,
            state.to_string(),
            server.voter.to_string(),
            server.protocol_version,
        ]);
    }
    ui.info(&columnize(&rows));
    0
}

fn remove_peer(args: &[String], ui: &mut Ui) -> i32 {
    let own = [FlagSpec::value("address"), FlagSpec::value("id")];
    let parsed = or_exit!(parse_command(args, &own, REMOVE_PEER_HELP, ui));
    let address = parsed.value("address").filter(|a| !a.is_empty());
    let id = parsed.value("id").filter(|i| !i.is_empty());
    let (param, value, what) = match (address, id) {
        (Some(_), Some(_)) => {
            return usage_error(
                ui,
                "Only one of -address or -id may be given",
                REMOVE_PEER_HELP,
            )
        }
        (None, None) => return usage_error(ui, "Missing peer address or ID", REMOVE_PEER_HELP),
        (Some(a), None) => ("address", a, "address"),
        (None, Some(i)) => ("id", i, "ID"),
    };
    let http = or_exit!(connect(&parsed, ui));
    match http.write(
        "DELETE",
        "/v1/operator/raft/peer",
        &[(param, Some(value.to_string()))],
        None,
    ) {
        Ok(resp) if resp.is_success() => {
            ui.info(&format!("Removed peer with {what} {value:?}"));
            0
        }
        Ok(resp) => fail(ui, &format!("Error removing peer: {}", resp.text().trim())),
        Err(e) => fail(ui, &format!("Error removing peer: {e}")),
    }
}

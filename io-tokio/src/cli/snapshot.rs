//! `tribune snapshot save|restore|inspect FILE`, as `consul snapshot`.
//! The archive format is tribune's own (see `tribune_core::snapshot_archive`).

use super::{connect, group_help, parse_command, usage_error, Ui};
use tribune_core::snapshot_archive;

const HELP: &str = r#"
Usage: tribune snapshot <subcommand> [options] [args]

  Saves, restores and inspects snapshots of the agent's state (KV, catalog,
  sessions):

      $ tribune snapshot save backup.snap
      $ tribune snapshot restore backup.snap
      $ tribune snapshot inspect backup.snap
"#;

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("inspect", "Displays information about a snapshot file"),
    ("restore", "Restores snapshot of tribune server state"),
    ("save", "Saves snapshot of tribune server state"),
];

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        return group_help(args, HELP, SUBCOMMANDS, ui);
    };
    match sub.as_str() {
        "save" => save(rest, ui),
        "restore" => restore(rest, ui),
        "inspect" => inspect(rest, ui),
        _ => group_help(args, HELP, SUBCOMMANDS, ui),
    }
}

/// The one FILE argument, or Consul's usage errors.
fn file_arg(positional: &[String], ui: &mut Ui) -> Result<String, i32> {
    match positional {
        [] => Err(usage_error(ui, "Missing FILE argument", HELP)),
        [file] => Ok(file.clone()),
        _ => Err(usage_error(
            ui,
            &format!("Too many arguments (expected 1, got {})", positional.len()),
            HELP,
        )),
    }
}

fn save(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], HELP, ui));
    let file = or_exit!(file_arg(&parsed.positional, ui));
    let http = or_exit!(connect(&parsed, ui));
    let response = match http.get("/v1/snapshot", &[]).and_then(|r| r.into_result()) {
        Ok(response) => response,
        Err(e) => {
            ui.error(&format!("Error saving snapshot: {e}"));
            return 1;
        }
    };
    // Verify before keeping it, as Consul does.
    let meta = match snapshot_archive::restore(&response.body) {
        Ok((meta, _)) => meta,
        Err(e) => {
            ui.error(&format!("Error verifying snapshot: {e}"));
            return 1;
        }
    };
    let temp = format!("{file}.tmp");
    let written = std::fs::write(&temp, &response.body)
        .and_then(|()| std::fs::File::open(&temp)?.sync_all())
        .and_then(|()| std::fs::rename(&temp, &file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        ui.error(&format!("Error writing snapshot file: {e}"));
        return 1;
    }
    ui.info(&format!(
        "Saved and verified snapshot to index {}",
        meta.index
    ));
    0
}

fn restore(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], HELP, ui));
    let file = or_exit!(file_arg(&parsed.positional, ui));
    let bytes = or_exit!(read_snapshot_file(&file, ui));
    let http = or_exit!(connect(&parsed, ui));
    match http
        .write("PUT", "/v1/snapshot", &[], Some(&bytes))
        .and_then(|r| r.into_result())
    {
        Ok(_) => {
            ui.info("Restored snapshot");
            0
        }
        Err(e) => {
            ui.error(&format!("Error restoring snapshot: {e}"));
            1
        }
    }
}

fn read_snapshot_file(file: &str, ui: &mut Ui) -> Result<Vec<u8>, i32> {
    std::fs::read(file).map_err(|e| {
        ui.error(&format!("Error opening snapshot file: {e}"));
        1
    })
}

fn inspect(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, &[], HELP, ui));
    let file = or_exit!(file_arg(&parsed.positional, ui));
    let bytes = or_exit!(read_snapshot_file(&file, ui));
    let (meta, fsm) = match snapshot_archive::restore(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => {
            ui.error(&format!("Error inspecting snapshot: {e}"));
            return 1;
        }
    };
    let rows = [
        ("ID", meta.id()),
        ("Size", bytes.len().to_string()),
        ("Index", meta.index.to_string()),
        ("Term", meta.term.to_string()),
        ("Version", snapshot_archive::ARCHIVE_VERSION.to_string()),
        ("Datacenter", meta.datacenter.clone()),
        ("Node", meta.node.clone()),
        ("KV keys", fsm.kv.len().to_string()),
        ("Nodes", fsm.catalog.nodes.len().to_string()),
        ("Services", fsm.catalog.services.len().to_string()),
        ("Checks", fsm.catalog.checks.len().to_string()),
        ("Sessions", fsm.sessions.by_id.len().to_string()),
    ];
    for (name, value) in rows {
        ui.info(&format!(" {name:<12} {value}"));
    }
    0
}

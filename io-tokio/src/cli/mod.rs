//! The `tribune` command-line client: Consul-compatible subcommands that talk
//! to an agent's HTTP API.
//!
//! Data flow: `run(args)` picks the subcommand, the subcommand parses its
//! flags with Go `flag` semantics ([`flags`]), builds an [`HttpClient`] from
//! `-http-addr`/`-token` and the `CONSUL_HTTP_*` / `TRIBUNE_HTTP_*`
//! environment, makes one or more blocking requests, and renders the answer
//! exactly as Consul's CLI does (same texts, same column layout, same exit
//! codes), because scripts written for `consul` parse that output.
//!
//! All output goes through [`Ui`] so tests can capture stdout and stderr.
//! `agent` is handled by the daemon entry point before [`run`] is called.

pub mod flags;

/// Unwraps a step's `Ok` value or returns its exit code from the command:
/// the steps (flag parsing, connecting, ...) have already reported why.
macro_rules! or_exit {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(code) => return code,
        }
    };
}

mod catalog;
mod event;
mod info;
mod keyring;
mod kv;
mod lock;
mod maint;
mod members;
mod operator;
mod services;
mod snapshot;
mod watch;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use crate::client::{read_token_file, ClientError, HttpClient, Response};
use flags::{FlagSpec, Parsed};

/// Where a command writes its results (`out`), its diagnostics (`err`), and
/// where it reads `-` data from (`input`).
pub struct Ui<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn Read,
}

impl Ui<'_> {
    /// Writes one line to stdout. Write errors (e.g. a closed pipe) are
    /// ignored: there is nobody left to tell, and the exit code still counts.
    pub fn info(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    /// Writes raw bytes plus a newline to stdout; KV values need not be UTF-8.
    pub fn info_bytes(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
        let _ = self.out.write_all(b"\n");
    }

    /// Writes one line to stderr.
    pub fn error(&mut self, line: &str) {
        let _ = writeln!(self.err, "{line}");
    }
}

/// Runs a client subcommand with the process's stdio; returns the exit code.
/// `args[0]` is the subcommand name (`kv`, `catalog`, ...).
pub fn run(args: &[String]) -> i32 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let stdin = io::stdin();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut input = stdin.lock();
    let mut ui = Ui {
        out: &mut out,
        err: &mut err,
        input: &mut input,
    };
    let code = run_with(args, &mut ui);
    let _ = ui.out.flush();
    let _ = ui.err.flush();
    code
}

/// Like [`run`] but with caller-supplied streams (used by tests).
pub fn run_with(args: &[String], ui: &mut Ui) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        ui.error(&usage());
        return EXIT_UNKNOWN_COMMAND;
    };
    match command.as_str() {
        "-v" | "-version" | "--version" => info::version(&[], ui),
        "-h" | "-help" | "--help" | "help" => {
            ui.info(&usage());
            0
        }
        "version" => info::version(rest, ui),
        "info" => info::info(rest, ui),
        "event" => event::run(rest, ui),
        "kv" => kv::run(rest, ui),
        "lock" => lock::run(rest, ui),
        "catalog" => catalog::run(rest, ui),
        "services" => services::run(rest, ui),
        "snapshot" => snapshot::run(rest, ui),
        "members" => members::run(rest, ui),
        "watch" => watch::run(rest, ui),
        "maint" => maint::maint(rest, ui),
        "reload" => maint::reload(rest, ui),
        "leave" => maint::leave(rest, ui),
        "force-leave" => maint::force_leave(rest, ui),
        "join" => maint::join(rest, ui),
        "operator" => operator::run(rest, ui),
        "keygen" => keyring::keygen(rest, ui),
        "keyring" => keyring::run(rest, ui),
        _ => {
            ui.error(&usage());
            EXIT_UNKNOWN_COMMAND
        }
    }
}

/// Consul (via mitchellh/cli) exits 127 for an unknown command, like a shell.
const EXIT_UNKNOWN_COMMAND: i32 = 127;

const COMMANDS: &[(&str, &str)] = &[
    ("agent", "Runs a tribune agent"),
    ("catalog", "Interact with the catalog"),
    ("event", "Fire a new event"),
    (
        "force-leave",
        "Forces a member of the cluster to enter the \"left\" state",
    ),
    ("info", "Provides debugging information for operators."),
    ("join", "Tell tribune agent to join cluster"),
    ("keygen", "Generates a new encryption key"),
    ("keyring", "Manages gossip layer encryption keys"),
    ("kv", "Interact with the key-value store"),
    ("leave", "Gracefully leaves the cluster and shuts down"),
    ("lock", "Execute a command holding a lock"),
    ("maint", "Controls node or service maintenance mode"),
    ("members", "Lists the members of a tribune cluster"),
    (
        "operator",
        "Provides cluster-level tools for tribune operators",
    ),
    ("reload", "Triggers the agent to reload configuration files"),
    ("services", "Interact with services"),
    (
        "snapshot",
        "Saves, restores and inspects snapshots of tribune server state",
    ),
    ("version", "Prints the tribune version"),
    ("watch", "Watch for changes in tribune"),
];

/// The top-level help, laid out like Consul's command list.
pub fn usage() -> String {
    let mut text = String::from(
        "Usage: tribune [--version] [--help] <command> [<args>]\n\nAvailable commands are:",
    );
    text.push_str(&command_list(COMMANDS));
    text
}

/// Indented, aligned `name    synopsis` lines, each preceded by a newline.
fn command_list(commands: &[(&str, &str)]) -> String {
    let width = commands
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    commands
        .iter()
        .map(|(name, synopsis)| format!("\n    {name:<width$}    {synopsis}"))
        .collect()
}

/// mitchellh/cli treats `-h`, `-help` and `--help` anywhere before `--` as a
/// help request for the command being run.
fn wants_help(args: &[String]) -> bool {
    args.iter()
        .take_while(|arg| arg.as_str() != "--")
        .any(|arg| matches!(arg.as_str(), "-h" | "-help" | "--help"))
}

/// A command group (`kv`, `catalog`, `services`) invoked without a valid
/// subcommand: show its help; it's an error unless help was asked for.
fn group_help(args: &[String], help: &str, subcommands: &[(&str, &str)], ui: &mut Ui) -> i32 {
    let text = format!(
        "{}\n\nSubcommands:{}",
        help.trim(),
        command_list(subcommands)
    );
    if wants_help(args) {
        ui.info(&text);
        0
    } else {
        ui.error(&text);
        1
    }
}

/// Flags every client command accepts (Consul's ClientFlags + ServerFlags).
const HTTP_FLAGS: &[FlagSpec] = &[
    FlagSpec::value("http-addr"),
    FlagSpec::value("token"),
    FlagSpec::value("token-file"),
    FlagSpec::value("datacenter"),
    FlagSpec::switch("stale"),
];

const HTTP_FLAGS_HELP: &str = "HTTP API Options

  -http-addr=<address>
     The `address` and port of the tribune HTTP agent. The value can be an
     IP address or DNS address, but it must also include the port. This can
     also be specified via the CONSUL_HTTP_ADDR (or TRIBUNE_HTTP_ADDR)
     environment variable. The default value is http://127.0.0.1:8500.

  -token=<value>
     ACL token to use in the request. This can also be specified via the
     CONSUL_HTTP_TOKEN (or TRIBUNE_HTTP_TOKEN) environment variable.

  -token-file=<value>
     File containing the ACL token to use in the request. This can also be
     specified via the CONSUL_HTTP_TOKEN_FILE environment variable.

  -datacenter=<value>
     Name of the datacenter to query. If unspecified, this will default to
     the datacenter of the queried agent.

  -stale
     Permit any server (non-leader) to respond to this request. This allows
     for lower latency and higher throughput, but can result in stale data.
     This option has no effect on non-read operations.";

/// A command's help text followed by the shared HTTP options.
fn full_help(help: &str) -> String {
    format!("{}\n\n{HTTP_FLAGS_HELP}", help.trim())
}

/// Parses a command's flags plus the HTTP flags. On `-help` prints help
/// (exit 0); on a bad flag prints the error and help (exit 1), as Consul does.
fn parse_command(
    args: &[String],
    own: &[FlagSpec],
    help: &str,
    ui: &mut Ui,
) -> Result<Parsed, i32> {
    if wants_help(args) {
        ui.info(&full_help(help));
        return Err(0);
    }
    let mut specs = own.to_vec();
    specs.extend_from_slice(HTTP_FLAGS);
    flags::parse(args, &specs).map_err(|err| usage_error(ui, &err, help))
}

/// Reports a usage problem (bad flag value, wrong arity) with the help text.
fn usage_error(ui: &mut Ui, message: &str, help: &str) -> i32 {
    ui.error(message);
    ui.error(&full_help(help));
    1
}

/// Reports a runtime failure on stderr; Consul exits 1 for all of them.
fn fail(ui: &mut Ui, message: &str) -> i32 {
    ui.error(message);
    1
}

/// Parses an unsigned flag value with Go's error wording.
fn u64_flag(parsed: &Parsed, name: &str) -> Result<Option<u64>, String> {
    match parsed.value(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid value {text:?} for flag -{name}: parse error")),
    }
}

/// Collects a repeatable `-name key=value` flag (Consul's FlagMapValue).
fn map_flag(parsed: &Parsed, name: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for entry in parsed.all(name) {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!(
                "invalid value {entry:?} for flag -{name}: Missing \"=\" value in argument: {entry}"
            ));
        };
        map.insert(key.to_string(), value.to_string());
    }
    Ok(map)
}

/// The agent connection plus the per-request options from the HTTP flags.
struct Http {
    client: HttpClient,
    datacenter: Option<String>,
    stale: bool,
}

impl Http {
    fn from_parsed(parsed: &Parsed) -> Result<Http, String> {
        let mut client = HttpClient::from_env_and_flag(parsed.value("http-addr"))?;
        client = client.with_token(parsed.value("token").map(str::to_string));
        // As in Consul's API client, a token file beats a literal token.
        if let Some(path) = parsed.value("token-file").filter(|p| !p.is_empty()) {
            client = client.with_token(Some(read_token_file(path)?));
        }
        Ok(Http {
            client,
            datacenter: parsed
                .value("datacenter")
                .filter(|dc| !dc.is_empty())
                .map(str::to_string),
            stale: parsed.flag("stale"),
        })
    }

    /// `dc` for writes; reads add `stale` too (the flag is ignored by writes).
    fn params(&self, read: bool) -> Vec<(&'static str, Option<String>)> {
        let mut params = Vec::new();
        if let Some(dc) = &self.datacenter {
            params.push(("dc", Some(dc.clone())));
        }
        if read && self.stale {
            params.push(("stale", None));
        }
        params
    }

    /// GET `path` with `extra` params plus `dc`/`stale`; any status is `Ok`.
    fn get(&self, path: &str, extra: &[(&str, Option<String>)]) -> Result<Response, ClientError> {
        let mut params: Vec<(&str, Option<String>)> = extra.to_vec();
        params.extend(self.params(true));
        self.client
            .get(&crate::client::path_with_query(path, &params))
    }

    /// A write (`PUT`/`DELETE`) with `extra` params plus `dc`.
    fn write(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, Option<String>)],
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let mut params: Vec<(&str, Option<String>)> = extra.to_vec();
        params.extend(self.params(false));
        let target = crate::client::path_with_query(path, &params);
        self.client.request(method, &target, body)
    }
}

/// Builds the HTTP context or prints Consul's "Error connecting" message.
fn connect(parsed: &Parsed, ui: &mut Ui) -> Result<Http, i32> {
    Http::from_parsed(parsed).map_err(|err| {
        ui.error(&format!("Error connecting to Consul agent: {err}"));
        1
    })
}

/// GETs `path` and decodes a 2xx JSON answer; `Ok(None)` on 404 (which the
/// Go API client maps to "not found" rather than an error).
fn get_json<T: serde::de::DeserializeOwned>(
    http: &Http,
    path: &str,
    extra: &[(&str, Option<String>)],
) -> Result<Option<T>, String> {
    let response = http.get(path, extra).map_err(|e| e.to_string())?;
    if response.status == 404 {
        return Ok(None);
    }
    let response = response.into_result().map_err(|e| e.to_string())?;
    serde_json::from_slice(&response.body)
        .map(Some)
        .map_err(|e| format!("failed to decode response from {path}: {e}"))
}

/// Reads a command's DATA argument: `@path` reads a file, `-` reads stdin,
/// anything else is the literal data (Consul's convention for kv put/import).
fn read_data_arg(data: &str, input: &mut dyn Read) -> Result<Vec<u8>, String> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path).map_err(|err| {
            format!(
                "Failed to read file: open {path}: {}",
                crate::client::io_error_text(&err)
            )
        });
    }
    if data == "-" {
        let mut buffer = Vec::new();
        input
            .read_to_end(&mut buffer)
            .map_err(|err| format!("Failed to read stdin: {err}"))?;
        return Ok(buffer);
    }
    Ok(data.as_bytes().to_vec())
}

/// Lays out rows like the `columnize` package Consul uses for tables: cells
/// trimmed, every column but a row's last padded to the column's widest
/// cell, columns joined by two spaces, no trailing newline.
fn columnize(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            let width = cell.trim().chars().count();
            match widths.get_mut(column) {
                Some(current) => *current = (*current).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let cell = cell.trim();
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(column).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// Lays out rows like Go's `text/tabwriter` with minwidth 0 and the given
/// padding, as Consul's `kv get -detailed` and `catalog services -tags` do:
/// every cell but a row's last is padded to (widest cell + padding). Each
/// row ends with a newline.
fn tab_align(rows: &[Vec<String>], padding: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        let cells = row.len().saturating_sub(1);
        for (column, cell) in row.iter().take(cells).enumerate() {
            let width = cell.chars().count() + padding;
            match widths.get_mut(column) {
                Some(current) => *current = (*current).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                text.push_str(cell);
            } else {
                let width = widths.get(column).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<width$}"));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the CLI in-process with captured output.
    pub(super) fn run_captured(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut input = io::Cursor::new(stdin.to_vec());
        let mut ui = Ui {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        };
        let code = run_with(&args, &mut ui);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn unknown_and_missing_commands_print_usage_and_exit_127() {
        let (code, out, err) = run_captured(&["frobnicate"], b"");
        assert_eq!(code, 127);
        assert!(out.is_empty());
        assert!(err.starts_with("Usage: tribune [--version] [--help] <command> [<args>]"));
        assert!(err.contains("\n    agent          Runs a tribune agent"));
        assert!(err.contains("\n    kv             Interact with the key-value store"));
        assert_eq!(run_captured(&[], b"").0, 127);
        let (code, out, _) = run_captured(&["--help"], b"");
        assert_eq!(code, 0);
        assert!(out.contains("Available commands are:"));
    }

    #[test]
    fn group_without_subcommand_shows_help() {
        let (code, _, err) = run_captured(&["kv"], b"");
        assert_eq!(code, 1);
        assert!(err.contains("Subcommands:"));
        assert!(err.contains("    put       Sets or updates data in the KV store"));
        let (code, out, _) = run_captured(&["catalog", "-h"], b"");
        assert_eq!(code, 0);
        assert!(out.contains("    services       Lists all registered services"));
    }

    #[test]
    fn bad_flag_is_a_usage_error() {
        let (code, out, err) = run_captured(&["kv", "get", "-bogus", "k"], b"");
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("flag provided but not defined: -bogus\n"));
        assert!(err.contains("Usage: tribune kv get"));
        let (code, out, _) = run_captured(&["kv", "get", "-help"], b"");
        assert_eq!(code, 0);
        assert!(out.contains("HTTP API Options"));
    }

    #[test]
    fn columnize_matches_consul_tables() {
        let rows = vec![
            vec![
                "Node".to_string(),
                "ID".into(),
                "Address".into(),
                "DC".into(),
            ],
            vec![
                "node-1".into(),
                "abcd1234".into(),
                "10.0.0.1".into(),
                "dc1".into(),
            ],
            vec!["n2".into(), " ".into(), "10.0.0.22".into(), "dc1".into()],
        ];
        assert_eq!(
            columnize(&rows),
            "Node    ID        Address    DC\n\
             node-1  abcd1234  10.0.0.1   dc1\n\
             n2                10.0.0.22  dc1"
        );
    }

    #[test]
    fn tab_align_pads_like_go_tabwriter() {
        let rows = vec![
            vec!["web".to_string(), "a,b".to_string()],
            vec!["consul".to_string(), String::new()],
        ];
        assert_eq!(tab_align(&rows, 6), "web         a,b\nconsul      \n");
    }

    #[test]
    fn map_and_u64_flags_report_go_errors() -> Result<(), String> {
        let specs = [FlagSpec::value("meta"), FlagSpec::value("flags")];
        let args: Vec<String> = ["-meta=a=b=c", "-meta", "x=", "-flags=12"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = flags::parse(&args, &specs)?;
        let map = map_flag(&parsed, "meta")?;
        assert_eq!(map.get("a").map(String::as_str), Some("b=c"));
        assert_eq!(map.get("x").map(String::as_str), Some(""));
        assert_eq!(u64_flag(&parsed, "flags")?, Some(12));
        let bad = flags::parse(&["-meta=novalue".to_string(), "-flags=x".into()], &specs)?;
        assert_eq!(
            map_flag(&bad, "meta").err().as_deref(),
            Some("invalid value \"novalue\" for flag -meta: Missing \"=\" value in argument: novalue")
        );
        assert_eq!(
            u64_flag(&bad, "flags").err().as_deref(),
            Some("invalid value \"x\" for flag -flags: parse error")
        );
        Ok(())
    }

    #[test]
    fn unreachable_agent_reports_connection_error() -> Result<(), String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = format!("-http-addr=127.0.0.1:{port}");
        let (code, out, err) = run_captured(&["kv", "get", &addr, "foo"], b"");
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert_eq!(
            err,
            format!(
                "Error querying Consul agent: Get \"http://127.0.0.1:{port}/v1/kv/foo\": \
                 dial tcp 127.0.0.1:{port}: connect: connection refused\n"
            )
        );
        Ok(())
    }
}

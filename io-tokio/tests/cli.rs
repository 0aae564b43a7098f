//! End-to-end tests of the `tribune` CLI client: each test starts a real
//! `tribune agent -dev` on free loopback ports, runs CLI commands as
//! subprocesses, and checks stdout, stderr and exit codes against what
//! Consul's CLI prints for the same commands.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tribune");
/// Anti-entropy pushes agent registrations to the catalog asynchronously.
const CATALOG_SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

fn tmp_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// What a CLI run produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI binary with `args`, feeding `stdin`.
fn run_cli(args: &[String], stdin: &[u8]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("TRIBUNE_HTTP_ADDR")
        .env_remove("TRIBUNE_HTTP_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tribune CLI");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("write CLI stdin");
    }
    let output = child.wait_with_output().expect("wait for tribune CLI");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A dev agent (the shared guard kills it when the test ends, pass or
/// fail) and the CLI pointed at it.
struct Agent {
    _running: support::Agent,
    port: u16,
}

impl Agent {
    fn start() -> Agent {
        let running = support::Agent::start();
        let port = running.port;
        Agent {
            _running: running,
            port,
        }
    }

    /// Runs `tribune <command...> -http-addr=... <args...>`. The address
    /// flag goes right after the command words because, as in Go, flags
    /// stop at the first positional argument.
    fn cli_with_stdin(&self, command: &[&str], args: &[&str], stdin: &[u8]) -> Run {
        let mut full: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        full.push(format!("-http-addr=127.0.0.1:{}", self.port));
        full.extend(args.iter().map(|s| s.to_string()));
        run_cli(&full, stdin)
    }

    fn cli(&self, command: &[&str], args: &[&str]) -> Run {
        self.cli_with_stdin(command, args, b"")
    }

    /// Runs a command expected to succeed and returns its stdout.
    fn ok(&self, command: &[&str], args: &[&str]) -> String {
        let run = self.cli(command, args);
        assert_eq!(run.code, 0, "{command:?} {args:?} failed: {run:?}");
        run.stdout
    }

    /// Polls `catalog services -tags` until `accept` holds (anti-entropy lag).
    fn wait_for_services(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + CATALOG_SYNC_TIMEOUT;
        loop {
            let listing = self.ok(&["catalog", "services"], &["-tags"]);
            if accept(&listing) {
                return listing;
            }
            assert!(
                Instant::now() < deadline,
                "{what}; last listing:\n{listing}"
            );
            sleep(POLL_INTERVAL);
        }
    }
}

/// Service names in a `catalog services -tags` listing (first column).
fn service_names(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

fn expect(run: Run, code: i32, stdout: &str, stderr: &str) {
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (code, stdout, stderr),
        "unexpected CLI result"
    );
}

/// The ModifyIndex line of `kv get -detailed`.
fn modify_index(detailed: &str) -> u64 {
    detailed
        .lines()
        .find_map(|line| line.strip_prefix("ModifyIndex"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ModifyIndex in {detailed:?}"))
}

#[test]
fn kv_put_and_get_values() {
    let agent = Agent::start();
    let put = ["kv", "put"];
    let get = ["kv", "get"];
    expect(
        agent.cli(&put, &["foo", "bar"]),
        0,
        "Success! Data written to: foo\n",
        "",
    );
    expect(agent.cli(&get, &["foo"]), 0, "bar\n", "");
    expect(agent.cli(&get, &["/foo"]), 0, "bar\n", "");
    expect(
        agent.cli(&get, &["missing"]),
        1,
        "",
        "Error! No key exists at: missing\n",
    );

    expect(
        agent.cli(&put, &["empty"]),
        0,
        "Success! Data written to: empty\n",
        "",
    );
    expect(agent.cli(&get, &["empty"]), 0, "\n", "");

    let run = agent.cli_with_stdin(&put, &["piped", "-"], b"from stdin");
    expect(run, 0, "Success! Data written to: piped\n", "");
    expect(agent.cli(&get, &["piped"]), 0, "from stdin\n", "");

    let file = tmp_path(&format!("cli-value-{}.txt", agent.port));
    std::fs::write(&file, "from a file").expect("write value file");
    let at_file = format!("@{}", file.display());
    expect(
        agent.cli(&put, &["filed", &at_file]),
        0,
        "Success! Data written to: filed\n",
        "",
    );
    expect(agent.cli(&get, &["filed"]), 0, "from a file\n", "");

    expect(
        agent.cli(&put, &["-base64", "b64", "aGVsbG8="]),
        0,
        "Success! Data written to: b64\n",
        "",
    );
    expect(agent.cli(&get, &["b64"]), 0, "hello\n", "");
    expect(agent.cli(&get, &["-base64", "b64"]), 0, "aGVsbG8=\n", "");

    let run = agent.cli(&put, &["/leading", "x"]);
    let expected =
        "Error! Failed writing data: Invalid key. Key must not begin with a '/': /leading\n";
    expect(run, 1, "", expected);
}

#[test]
fn kv_get_detailed_shows_metadata_table() {
    let agent = Agent::start();
    agent.ok(&["kv", "put"], &["-flags=42", "detail/key", "value"]);
    let detailed = agent.ok(&["kv", "get"], &["-detailed", "detail/key"]);
    let lines: Vec<&str> = detailed.lines().collect();
    assert_eq!(lines.len(), 7, "{detailed:?}");
    let create: u64 = lines[0]
        .strip_prefix("CreateIndex      ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad CreateIndex line {:?}", lines[0]));
    assert_eq!(lines[1], "Flags            42");
    assert_eq!(lines[2], "Key              detail/key");
    assert_eq!(lines[3], "LockIndex        0");
    assert_eq!(lines[4], format!("ModifyIndex      {create}"));
    assert_eq!(lines[5], "Session          -");
    assert_eq!(lines[6], "Value            value");
    assert!(create > 0, "indexes start above zero");
}

#[test]
fn kv_recurse_and_keys_listings() {
    let agent = Agent::start();
    for (key, value) in [
        ("tree/a", "1"),
        ("tree/b/c", "2"),
        ("tree/b/d", "3"),
        ("treetop", "x"),
    ] {
        agent.ok(&["kv", "put"], &[key, value]);
    }
    let get = ["kv", "get"];
    expect(
        agent.cli(&get, &["-recurse", "tree/"]),
        0,
        "tree/a:1\ntree/b/c:2\ntree/b/d:3\n",
        "",
    );
    expect(
        agent.cli(&get, &["-recurse", "tree"]),
        0,
        "tree/a:1\ntree/b/c:2\ntree/b/d:3\ntreetop:x\n",
        "",
    );
    expect(
        agent.cli(&get, &["-keys", "tree/"]),
        0,
        "tree/a\ntree/b/\n",
        "",
    );
    expect(
        agent.cli(&get, &["-keys", "-separator=", "tree/"]),
        0,
        "tree/a\ntree/b/c\ntree/b/d\n",
        "",
    );
    expect(agent.cli(&get, &["-recurse", "nothing/"]), 0, "", "");
    expect(agent.cli(&get, &["-keys", "nothing/"]), 0, "", "");

    let detailed = agent.ok(&get, &["-recurse", "-detailed", "tree/b/"]);
    let blocks: Vec<&str> = detailed.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{detailed:?}");
    assert!(blocks[0].contains("Key              tree/b/c\n"));
    assert!(blocks[1].ends_with("Value            3\n"));
}

#[test]
fn kv_delete_single_and_recursive() {
    let agent = Agent::start();
    for key in ["del/a", "del/b", "del/c/d", "delta"] {
        agent.ok(&["kv", "put"], &[key, "v"]);
    }
    let delete = ["kv", "delete"];
    expect(
        agent.cli(&delete, &["del/a"]),
        0,
        "Success! Deleted key: del/a\n",
        "",
    );
    expect(
        agent.cli(&["kv", "get"], &["del/a"]),
        1,
        "",
        "Error! No key exists at: del/a\n",
    );
    expect(
        agent.cli(&delete, &["del/never"]),
        0,
        "Success! Deleted key: del/never\n",
        "",
    );
    let run = agent.cli(&delete, &["-recurse", "del/"]);
    expect(run, 0, "Success! Deleted keys with prefix: del/\n", "");
    expect(agent.cli(&["kv", "get"], &["-recurse", "del/"]), 0, "", "");
    expect(agent.cli(&["kv", "get"], &["delta"]), 0, "v\n", "");
    let run = agent.cli(&delete, &["-cas", "-modify-index=1", "-recurse", "delta"]);
    expect(run, 1, "", "Cannot specify both -cas and -recurse!\n");
}

#[test]
fn kv_check_and_set_put_and_delete() {
    let agent = Agent::start();
    agent.ok(&["kv", "put"], &["cas/k", "v1"]);
    let first = modify_index(&agent.ok(&["kv", "get"], &["-detailed", "cas/k"]));

    let stale = (first + 1000).to_string();
    let run = agent.cli(
        &["kv", "put"],
        &["-cas", &format!("-modify-index={stale}"), "cas/k", "v2"],
    );
    expect(run, 1, "", "Error! Did not write to cas/k: CAS failed\n");
    expect(agent.cli(&["kv", "get"], &["cas/k"]), 0, "v1\n", "");

    let run = agent.cli(
        &["kv", "put"],
        &["-cas", &format!("-modify-index={first}"), "cas/k", "v2"],
    );
    expect(run, 0, "Success! Data written to: cas/k\n", "");
    expect(agent.cli(&["kv", "get"], &["cas/k"]), 0, "v2\n", "");

    let run = agent.cli(
        &["kv", "delete"],
        &["-cas", &format!("-modify-index={first}"), "cas/k"],
    );
    expect(run, 1, "", "Error! Did not delete key cas/k: CAS failed\n");
    let second = modify_index(&agent.ok(&["kv", "get"], &["-detailed", "cas/k"]));
    assert!(second > first, "ModifyIndex must grow: {first} -> {second}");
    let run = agent.cli(
        &["kv", "delete"],
        &["-cas", &format!("-modify-index={second}"), "cas/k"],
    );
    expect(run, 0, "Success! Deleted key: cas/k\n", "");
    expect(
        agent.cli(&["kv", "get"], &["cas/k"]),
        1,
        "",
        "Error! No key exists at: cas/k\n",
    );
}

#[test]
fn kv_export_import_round_trip() {
    let agent = Agent::start();
    agent.ok(&["kv", "put"], &["-flags=7", "exp/a", "alpha"]);
    agent.ok(&["kv", "put"], &["-base64", "exp/b/bin", "/wA="]);
    let exported = agent.ok(&["kv", "export"], &["exp/"]);
    assert!(
        exported.starts_with("[\n\t{\n\t\t\"key\": \"exp/a\""),
        "{exported:?}"
    );
    let entries: serde_json::Value = serde_json::from_str(&exported).expect("export is JSON");
    assert_eq!(
        entries,
        serde_json::json!([
            {"key": "exp/a", "flags": 7, "value": "YWxwaGE="},
            {"key": "exp/b/bin", "flags": 0, "value": "/wA="}
        ])
    );

    agent.ok(&["kv", "delete"], &["-recurse", "exp/"]);
    expect(agent.cli(&["kv", "export"], &["exp/"]), 0, "[]\n", "");
    let run = agent.cli_with_stdin(&["kv", "import"], &["-"], exported.as_bytes());
    expect(run, 0, "Imported: exp/a\nImported: exp/b/bin\n", "");
    expect(agent.cli(&["kv", "get"], &["exp/a"]), 0, "alpha\n", "");
    expect(
        agent.cli(&["kv", "get"], &["-base64", "exp/b/bin"]),
        0,
        "/wA=\n",
        "",
    );
    let detailed = agent.ok(&["kv", "get"], &["-detailed", "exp/a"]);
    assert!(detailed.contains("\nFlags            7\n"), "{detailed:?}");

    let run = agent.cli(&["kv", "import"], &["not json"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("Cannot unmarshal data: "), "{run:?}");
}

#[test]
fn catalog_members_and_info() {
    let agent = Agent::start();
    expect(agent.cli(&["catalog", "datacenters"], &[]), 0, "dc1\n", "");

    let nodes = agent.ok(&["catalog", "nodes"], &[]);
    let lines: Vec<&str> = nodes.lines().collect();
    assert_eq!(lines.len(), 2, "one dev node: {nodes:?}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Node", "ID", "Address", "DC"]);
    assert!(
        lines[1].trim_end().ends_with("  127.0.0.1  dc1"),
        "{nodes:?}"
    );

    let services = agent.ok(&["catalog", "services"], &[]);
    assert!(
        services.lines().any(|line| line == "consul"),
        "{services:?}"
    );

    let members = agent.ok(&["members"], &[]);
    let lines: Vec<&str> = members.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let columns = [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ];
    assert_eq!(header, columns);
    // Build may read "< 0.3", so index the trailing columns from the end.
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((row[2], row[3]), ("alive", "server"), "{members:?}");
    assert_eq!(
        row[row.len() - 3..],
        ["dc1", "default", "<all>"],
        "{members:?}"
    );
    expect(agent.cli(&["members"], &["-status=failed"]), 2, "", "");

    let info = agent.ok(&["info"], &[]);
    assert!(
        info.lines().next().is_some_and(|l| l.ends_with(':')),
        "{info:?}"
    );
}

#[test]
fn services_register_and_deregister() {
    let agent = Agent::start();
    let register = ["services", "register"];
    let run = agent.cli(
        &register,
        &[
            "-name=web",
            "-port=8080",
            "-tag=v2",
            "-tag=v1",
            "-meta=team=a",
        ],
    );
    expect(run, 0, "Registered service: web\n", "");
    agent.wait_for_services("web never reached the catalog", |listing| {
        listing
            .lines()
            .any(|line| line.starts_with("web ") && line.ends_with(" v1,v2"))
    });

    let file = tmp_path(&format!("cli-service-{}.json", agent.port));
    let definition = r#"{"service": {"name": "db", "id": "db-1", "port": 5432, "tags": ["primary"],
                         "check": {"ttl": "30s", "status": "passing"}}}"#;
    std::fs::write(&file, definition).expect("write service file");
    let path = file.display().to_string();
    expect(
        agent.cli(&register, &[&path]),
        0,
        "Registered service: db\n",
        "",
    );
    agent.wait_for_services("db never reached the catalog", |listing| {
        listing
            .lines()
            .any(|line| line.starts_with("db ") && line.ends_with(" primary"))
    });
    let nodes = agent.ok(&["catalog", "nodes"], &["-service=db"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes:?}");

    let deregister = ["services", "deregister"];
    expect(
        agent.cli(&deregister, &["-id=web"]),
        0,
        "Deregistered service: web\n",
        "",
    );
    expect(
        agent.cli(&deregister, &[&path]),
        0,
        "Deregistered service: db-1\n",
        "",
    );
    agent.wait_for_services("deregistered services stayed in the catalog", |listing| {
        let names = service_names(listing);
        !names.contains(&"web") && !names.contains(&"db")
    });
}

#[test]
fn unreachable_agent_is_reported_like_consul() {
    let port = support::free_port();
    let args: Vec<String> = ["kv", "get", &format!("-http-addr=127.0.0.1:{port}"), "foo"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let run = run_cli(&args, b"");
    let expected = format!(
        "Error querying Consul agent: Get \"http://127.0.0.1:{port}/v1/kv/foo\": \
         dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    );
    expect(run, 1, "", &expected);
}

#[test]
fn version_and_unknown_command() {
    let run = run_cli(&["version".to_string()], b"");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run
        .stdout
        .starts_with(&format!("tribune v{}\n", env!("CARGO_PKG_VERSION"))));
    let run = run_cli(&["no-such-command".to_string()], b"");
    assert_eq!(run.code, 127, "{run:?}");
    assert!(run.stderr.contains("Available commands are:"), "{run:?}");
}

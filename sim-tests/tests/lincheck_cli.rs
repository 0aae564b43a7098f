//! The `lincheck` binary: exit codes 0 (linearizable), 1 (not, with an
//! explanation), 2 (unreadable or malformed input, bad usage).

use sim_tests::generate::{register_history, RegisterWorkload};
use sim_tests::write_jsonl;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A history file in the test's own temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir = std::env::temp_dir().join(format!("lincheck-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lincheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .args(args)
        .output()
        .unwrap()
}

fn lincheck_file(name: &str, contents: &str) -> (i32, String, String) {
    let file = TempFile::new(name, contents.as_bytes());
    let output = lincheck(&[file.0.to_str().unwrap()]);
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

const STALE_READ: &str = r#"{"process":1,"type":"invoke","f":"write","key":"k","value":"1","time":0}
{"process":1,"type":"ok","f":"write","key":"k","time":10}
{"process":1,"type":"invoke","f":"write","key":"k","value":"2","time":20}
{"process":1,"type":"ok","f":"write","key":"k","time":30}
{"process":2,"type":"invoke","f":"read","key":"k","time":40}
{"process":2,"type":"ok","f":"read","key":"k","value":"1","time":50}
"#;

#[test]
fn a_linearizable_history_exits_0() {
    let workload = RegisterWorkload {
        operations: 2_000,
        keys: 7,
        unknown_percent: 5,
        ..RegisterWorkload::default()
    };
    let mut jsonl = Vec::new();
    write_jsonl(&register_history(&workload), &mut jsonl).unwrap();
    let (code, stdout, stderr) =
        lincheck_file("generated.jsonl", std::str::from_utf8(&jsonl).unwrap());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "linearizable: 2000 operations on 7 keys\n");
}

#[test]
fn a_timed_out_write_read_later_exits_0() {
    let history = r#"{"process":1,"type":"invoke","f":"write","key":"k","value":"x","time":0}
{"process":1,"type":"info","f":"write","key":"k","time":10}
{"process":2,"type":"invoke","f":"read","key":"k","time":20}
{"process":2,"type":"ok","f":"read","key":"k","value":null,"time":30}
{"process":2,"type":"invoke","f":"read","key":"k","time":9000}
{"process":2,"type":"ok","f":"read","key":"k","value":"x","time":9010}
"#;
    let (code, stdout, _) = lincheck_file("info.jsonl", history);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_stale_read_exits_1_with_an_explanation() {
    let (code, stdout, stderr) = lincheck_file("stale.jsonl", STALE_READ);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("not linearizable: 1 of 1 keys (3 operations)\nkey \"k\":"));
    assert!(stdout.contains(
        "line 5: process 2 read -> \"1\" (invoked at 40, ok at 50) -- read \"1\" but the key holds \"2\""
    ));
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(STALE_READ.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn malformed_or_unreadable_input_exits_2_naming_the_line() {
    let cases = [
        (
            "broken json",
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time\":1}\n{oops\n",
            "line 2: not valid JSON",
        ),
        (
            "unknown type",
            "{\"process\":1,\"type\":\"begin\",\"f\":\"read\",\"key\":\"k\",\"time\":1}\n",
            "line 1: unknown type \"begin\"",
        ),
        (
            "orphan ok",
            "\n{\"process\":4,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\",\"time\":1}\n",
            "line 2: ok from process 4 without a pending invoke",
        ),
        (
            "second invoke",
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time\":1}\n\
             {\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\",\"time\":2}\n",
            "line 2: invoke from process 1 while its invoke on line 1 is pending",
        ),
    ];
    for (name, contents, expected) in cases {
        let (code, stdout, stderr) =
            lincheck_file(&format!("{}.jsonl", name.replace(' ', "-")), contents);
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
    }
    let missing = lincheck(&["/nonexistent/history.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8(missing.stderr)
        .unwrap()
        .contains("cannot read history"));
}

#[test]
fn bad_usage_exits_2() {
    for args in [&[][..], &["a.jsonl", "b.jsonl"][..]] {
        let output = lincheck(args);
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8(output.stderr)
            .unwrap()
            .starts_with("usage: lincheck"));
    }
}

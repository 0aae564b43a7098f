//! The README's curl tour, run with the real `curl` against a real agent, so
//! the commands a new user copies keep working. Without curl: under `CI` the
//! test fails (CI installs curl), otherwise it says SKIPPED and returns.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `curl -s <args>` and returns stdout; panics if curl fails.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .arg("-s")
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("curl printed UTF-8")
}

#[test]
fn readme_curl_tour() {
    if !curl_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is not installed and CI is set: install curl before the tests"
        );
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: curl not installed ***\n");
        return;
    }
    let agent = support::Agent::start();
    let base = format!("http://127.0.0.1:{}", agent.port);
    let url = |path: &str| format!("{base}{path}");

    let greeting = url("/v1/kv/web/greeting");
    assert_eq!(curl(&["-X", "PUT", "--data", "hello", &greeting]), "true");
    assert_eq!(curl(&[&format!("{greeting}?raw")]), "hello");

    let service = r#"{"Name":"web","ID":"web1","Port":8080,"Check":{"TTL":"30s"}}"#;
    let register = url("/v1/agent/service/register");
    assert_eq!(curl(&["-X", "PUT", "--data", service, &register]), "");
    let passing = url("/v1/health/service/web?passing");
    assert_eq!(curl(&[&passing]), "[]", "a new TTL check starts critical");
    curl(&["-X", "PUT", &url("/v1/agent/check/pass/service:web1")]);
    let healthy: serde_json::Value = serde_json::from_str(&curl(&[&passing])).expect("JSON");
    assert_eq!(healthy[0]["Service"]["ID"], "web1");

    // The blocking query: read the index, wait on it, write, and the wait ends.
    let headers = curl(&["-o", "/dev/null", "-D", "-", &greeting]);
    let index: u64 = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-consul-index: ")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("X-Consul-Index header");
    let blocked = format!("{greeting}?index={index}&wait=30s");
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        (curl(&[&blocked]), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        curl(&["-X", "PUT", "--data", "hi again", &greeting]),
        "true"
    );
    let (body, waited) = waiter.join().expect("blocking curl");
    assert!(
        waited < Duration::from_secs(10),
        "woke on the write, not at wait"
    );
    let entries: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(entries[0]["Value"], "aGkgYWdhaW4=", "the new value, base64");
    assert!(entries[0]["ModifyIndex"].as_u64().expect("index") > index);
}

//! Compatibility test against the third-party Python client py-consul.
//!
//! Starts `tribune agent -dev` on a free HTTP port and runs
//! `tests/compat/py_consul_compat.py PORT`, which drives the agent through
//! py-consul (KV, blocking queries, sessions, locks, agent services and TTL
//! checks, health, catalog, status, txn) and exits non-zero if any of its
//! checks failed. The script's output is echoed.
//!
//! Prerequisite: `python3` with the PyPI package `py-consul` (`pip install py-consul`).
//! When `python3 -c 'import consul'` fails:
//! - if the environment variable `CI` is set, the test FAILS, telling to
//!   `pip install py-consul` (CI must run it for real);
//! - otherwise it prints `SKIPPED: py-consul not installed` to stderr and
//!   returns (passes), so a plain local `cargo test` works without Python deps.
//!
//! The agent is started by the shared guard in `tests/support`.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for the whole Python script (it needs about 10 s against a
/// healthy agent; py-consul's own per-request timeout is 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn py_consul_available() -> bool {
    support::python_can("import consul")
}

/// Runs the script with a watchdog; returns (exit status or None on
/// timeout, stdout, stderr).
fn run_script(script: &Path, port: u16) -> (Option<ExitStatus>, String, String) {
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // py-consul reads these; the agent under test has no ACLs or TLS.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL")
        .env_remove("CONSUL_HTTP_SSL_VERIFY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");

    fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let out = drain(child.stdout.take().expect("stdout pipe"));
    let err = drain(child.stderr.take().expect("stderr pipe"));

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("try_wait on python3") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

#[test]
fn py_consul_compat() {
    if !py_consul_available() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "py-consul is not installed (`python3 -c 'import consul'` failed) and CI is set: \
                 run `pip install py-consul` before the tests"
            );
        }
        // Straight to the stderr handle: eprintln! would be swallowed by the
        // test harness's output capture when the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: py-consul not installed (pip install py-consul) -- py_consul_compat did not run ***\n"
        );
        return;
    }

    let agent = support::Agent::start();
    let port = agent.port;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/py_consul_compat.py");
    let (status, stdout, stderr) = run_script(&script, port);
    println!("--- py_consul_compat.py stdout ---\n{stdout}");
    if !stderr.is_empty() {
        eprintln!("--- py_consul_compat.py stderr ---\n{stderr}");
    }

    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "));
    match status {
        None => panic!(
            "py_consul_compat.py did not finish within {SCRIPT_TIMEOUT:?}; agent output:\n{}",
            agent.log_contents()
        ),
        Some(s) if !s.success() => panic!(
            "py_consul_compat.py exited with {s}; summary: {}; failures:\n{}\nagent output:\n{}",
            summary.unwrap_or("<none>"),
            failures.join("\n"),
            agent.log_contents()
        ),
        Some(_) => {
            let summary =
                summary.expect("py_consul_compat.py printed no `N passed, M failed` line");
            assert!(
                summary.ends_with(" 0 failed"),
                "script exited 0 but reported: {summary}"
            );
        }
    }
    drop(agent);
}

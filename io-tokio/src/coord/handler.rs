//! Running user commands for locks and watches, as Consul does: through
//! `$SHELL -c` (default `/bin/sh`) with the arguments joined by spaces, or
//! exec'd directly with `-shell=false`.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The command for `args` (non-empty), via the shell or directly.
pub fn command(args: &[String], shell: bool) -> Command {
    if shell {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        let mut command = Command::new(shell);
        command.arg("-c").arg(args.join(" "));
        command
    } else {
        let mut command = Command::new(&args[0]);
        command.args(&args[1..]);
        command
    }
}

/// `exit status N` / `signal: N`, as Go's `ExitError` prints.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal: {signal}"),
        _ => status.to_string(),
    }
}

/// Runs a watch handler with `input` on stdin and `CONSUL_INDEX` set; its
/// stdout and stderr are ours. A handler still running after `timeout` is
/// killed with its process group. `Err` explains a failure.
pub fn run_watch_handler(
    args: &[String],
    shell: bool,
    index: u64,
    input: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let mut child = command(args, shell)
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        // A handler that never reads must not block us: write from a thread.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
            let _ = stdin.write_all(b"\n");
        });
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    match finished.recv_timeout(timeout) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("Error executing handler: {}", describe(status))),
        Ok(Err(e)) => Err(format!("Error executing handler: {e}")),
        Err(_) => {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = finished.recv_timeout(Duration::from_secs(5));
            Err(format!("Handler timed out after {timeout:?}; killed"))
        }
    }
}

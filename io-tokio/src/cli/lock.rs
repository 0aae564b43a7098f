//! `tribune lock`: runs a command while holding a lock or a semaphore slot,
//! like `consul lock`, with the same keys, flags, texts and exit codes.
//!
//! Beyond Consul: the child gets a fencing token (`TRIBUNE_LOCK_INDEX`, see
//! [`crate::coord::lock`]), the kill grace and the session's lock-delay are
//! flags, the child runs in its own process group so that stopping it also
//! stops what it started (Consul only signals the shell, whose children
//! survive), and `-status` shows who holds a prefix.
//!
//! One thread per concern (acquire, monitor, child wait, signals) reports to
//! a single channel; the command is the loop over that channel.

use super::flags::{FlagSpec, Parsed};
use super::{connect, parse_command, usage_error, Ui};
use crate::coord::api::{Api, Query};
use crate::coord::handler;
use crate::coord::lock::{Contender, Held, LockError, Options};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tribune_core::coord::{lock_key, CoordError, Holders, LOCK_FLAG_VALUE, SEMAPHORE_FLAG_VALUE};

const HELP: &str = r#"
Usage: tribune lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The child gets CONSUL_LOCK_HELD=true and TRIBUNE_LOCK_HELD=true, plus a
  fencing token: TRIBUNE_LOCK_INDEX (strictly larger for every new holder),
  TRIBUNE_LOCK_KEY and TRIBUNE_LOCK_SESSION.

  The prefix provided must have write privileges.

Command Options

  -child-exit-code
     Exit 2 if the child process exited with an error. The default is false.

  -kill-grace=<duration>
     Time between SIGTERM and SIGKILL when the lock is lost. Default 5s.

  -lock-delay=<duration>
     Lock-delay of the lock's session (0s-60s). Default 15s, as Consul.

  -monitor-retry=<int>
     Number of times to retry if the agent returns a 500 error (or cannot be
     reached) while monitoring the lock. Default 3, 1s apart.

  -n=<int>
     Optional limit on the number of concurrent lock holders. Default 1.

  -name=<string>
     Optional name to associate with the lock session.

  -pass-stdin
     Pass stdin to the child process.

  -shell
     Use a shell to run the command ($SHELL, default /bin/sh). Default true.

  -status
     Print who holds the lock or semaphore at prefix and exit.

  -timeout=<duration>
     Maximum amount of time to wait to acquire the lock. Default 0 (forever).

  -verbose
     Enable verbose (debugging) output.
"#;

const FLAGS: &[FlagSpec] = &[
    FlagSpec::switch("child-exit-code"),
    FlagSpec::value("kill-grace"),
    FlagSpec::value("lock-delay"),
    FlagSpec::value("monitor-retry"),
    FlagSpec::value("n"),
    FlagSpec::value("name"),
    FlagSpec::switch("pass-stdin"),
    FlagSpec::switch("shell"),
    FlagSpec::switch("status"),
    FlagSpec::value("timeout"),
    FlagSpec::value("try"),
    FlagSpec::switch("verbose"),
];

/// Consul's `lockKillGracePeriod`.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// Consul's `defaultMonitorRetry` and `defaultMonitorRetryTime`.
const DEFAULT_MONITOR_RETRY: u32 = 3;
const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);

/// What the command's loop reacts to.
enum Event {
    Signal(i32),
    Acquired(Result<Option<Held>, LockError>),
    Lost,
    ChildExited(ExitStatus),
}

struct Settings {
    prefix: String,
    child: Vec<String>,
    limit: u64,
    shell: bool,
    pass_stdin: bool,
    child_exit_code: bool,
    verbose: bool,
    kill_grace: Duration,
    lock_delay: Option<Duration>,
    timeout: Option<Duration>,
    monitor_retries: u32,
    name: Option<String>,
}

fn duration_flag(parsed: &Parsed, name: &str) -> Result<Option<Duration>, String> {
    let Some(text) = parsed.value(name) else {
        return Ok(None);
    };
    tribune_core::time::parse_duration(text)
        .map(|d| Some(Duration::from_nanos(d.as_nanos())))
        .map_err(|e| format!("invalid value {text:?} for flag -{name}: {e}"))
}

fn settings(parsed: &Parsed) -> Result<Settings, String> {
    let limit: i64 = match parsed.value("n") {
        None => 1,
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid value {text:?} for flag -n: parse error"))?,
    };
    if limit <= 0 {
        return Err("Lock holder limit must be positive".into());
    }
    let monitor_retries: i64 = match parsed.value("monitor-retry") {
        None => i64::from(DEFAULT_MONITOR_RETRY),
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid value {text:?} for flag -monitor-retry: parse error"))?,
    };
    if monitor_retries < 0 {
        return Err("Number for 'monitor-retry' must be >= 0".into());
    }
    let lock_delay = duration_flag(parsed, "lock-delay")?;
    if lock_delay.is_some_and(|d| d > Duration::from_secs(60)) {
        return Err("Lock delay must be between 0s and 60s".into());
    }
    let timeout = duration_flag(parsed, "timeout")?.or(duration_flag(parsed, "try")?);
    let status = parsed.flag("status");
    let needed = if status { 1 } else { 2 };
    if parsed.positional.len() < needed {
        return Err(if status {
            "Key prefix must be specified".into()
        } else {
            "Key prefix and child command must be specified".into()
        });
    }
    Ok(Settings {
        prefix: parsed.positional[0]
            .strip_prefix('/')
            .unwrap_or(&parsed.positional[0])
            .to_string(),
        child: parsed.positional[1..].to_vec(),
        limit: limit as u64,
        shell: parsed.flag_default_on("shell"),
        pass_stdin: parsed.flag("pass-stdin"),
        child_exit_code: parsed.flag("child-exit-code"),
        verbose: parsed.flag("verbose"),
        kill_grace: duration_flag(parsed, "kill-grace")?.unwrap_or(DEFAULT_KILL_GRACE),
        lock_delay,
        timeout: timeout.filter(|t| !t.is_zero()),
        monitor_retries: monitor_retries.min(i64::from(u32::MAX)) as u32,
        name: parsed
            .value("name")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    })
}

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let parsed = or_exit!(parse_command(args, FLAGS, HELP, ui));
    let settings = match settings(&parsed) {
        Ok(settings) => settings,
        Err(e) => return usage_error(ui, &e, HELP),
    };
    let http = or_exit!(connect(&parsed, ui));
    let api = Api::new(http.client.clone(), http.datacenter.clone());
    if let Err(e) = api.node_name() {
        ui.error(&format!("Error querying Consul agent: {e}"));
        return 1;
    }
    if parsed.flag("status") {
        return status(&api, &settings.prefix, ui);
    }
    let name = settings.name.clone().unwrap_or_else(|| {
        format!(
            "Consul lock for '{}' at '{}'",
            settings.child.join(" "),
            settings.prefix
        )
    });
    let opts = Options {
        prefix: settings.prefix.clone(),
        limit: settings.limit,
        session_name: name,
        lock_delay: settings.lock_delay,
        timeout: settings.timeout,
        monitor_retries: settings.monitor_retries,
        monitor_retry_time: MONITOR_RETRY_TIME,
    };
    if settings.verbose {
        if settings.limit == 1 {
            ui.info(&format!(
                "Setting up lock at path: {}",
                lock_key(&settings.prefix)
            ));
        } else {
            ui.info(&format!(
                "Setting up semaphore (limit {}) at prefix: {}",
                settings.limit, settings.prefix
            ));
        }
    }
    Supervisor::new(api, opts, settings).run(ui)
}

struct Supervisor {
    settings: Settings,
    events: Receiver<Event>,
    sender: Sender<Event>,
    contender: Option<Contender>,
    cancel: Arc<AtomicBool>,
    child: Option<u32>,
}

impl Supervisor {
    fn new(api: Api, opts: Options, settings: Settings) -> Supervisor {
        let (sender, events) = mpsc::channel();
        Supervisor {
            settings,
            events,
            sender,
            contender: Some(Contender::new(api, opts)),
            cancel: Arc::new(AtomicBool::new(false)),
            child: None,
        }
    }

    fn run(mut self, ui: &mut Ui) -> i32 {
        if let Err(e) = self.watch_signals() {
            ui.error(&format!("Lock setup failed: {e}"));
            return 1;
        }
        if self.settings.verbose {
            ui.info("Attempting lock acquisition");
        }
        let Some(held) = self.acquire(ui) else {
            return 1;
        };
        let Some(mut contender) = self.contender.take() else {
            return 1;
        };
        let monitor = contender.monitor();
        let sender = self.sender.clone();
        let monitored = held.clone();
        thread::spawn(move || {
            monitor.run(&monitored);
            let _ = sender.send(Event::Lost);
        });
        let child_code = self.supervise(&held, ui);
        release_and_cleanup(&mut contender, ui, child_code, &self.settings)
    }

    fn watch_signals(&self) -> Result<(), String> {
        let mut signals = signal_hook::iterator::Signals::new([
            SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT,
        ])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let sender = self.sender.clone();
        thread::spawn(move || {
            for signal in signals.forever() {
                if sender.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Acquires on a worker thread while the loop watches for shutdown.
    fn acquire(&mut self, ui: &mut Ui) -> Option<Held> {
        let mut contender = self.contender.take()?;
        let sender = self.sender.clone();
        let cancel = Arc::clone(&self.cancel);
        let worker = thread::spawn(move || {
            let result = contender.acquire(&cancel);
            let _ = sender.send(Event::Acquired(result));
            contender
        });
        let outcome = loop {
            match self.events.recv() {
                Ok(Event::Signal(signal)) if is_shutdown(signal) => {
                    self.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(Event::Acquired(result)) => break result,
                Ok(_) => {}
                Err(_) => break Ok(None),
            }
        };
        let mut contender = worker.join().ok()?;
        let shutdown = self.cancel.load(std::sync::atomic::Ordering::SeqCst);
        match outcome {
            Ok(Some(held)) if !shutdown => {
                self.contender = Some(contender);
                Some(held)
            }
            Ok(Some(_)) => {
                ui.error("Shutdown triggered during lock acquisition");
                let _ = contender.release();
                None
            }
            Ok(None) => {
                ui.error("Shutdown triggered or timeout during lock acquisition");
                contender.end_session();
                None
            }
            Err(e) => {
                ui.error(&format!("Lock acquisition failed: {e}"));
                contender.end_session();
                None
            }
        }
    }

    /// Runs the child until it exits, the lock is lost, or we are told to
    /// stop; returns the exit code owed for the child (0 or 2).
    fn supervise(&mut self, held: &Held, ui: &mut Ui) -> i32 {
        if self.settings.verbose {
            ui.info("Starting handler");
        }
        let mut command = self.child_command();
        command
            .env("CONSUL_LOCK_HELD", "true")
            .env("TRIBUNE_LOCK_HELD", "true")
            .env("TRIBUNE_LOCK_INDEX", held.fence.to_string())
            .env("TRIBUNE_LOCK_KEY", &held.key)
            .env("TRIBUNE_LOCK_SESSION", &held.session);
        if self.settings.pass_stdin {
            command.stdin(Stdio::inherit());
        } else {
            command.stdin(Stdio::null());
            // Its own group, so stopping it stops its children too. With
            // -pass-stdin it stays in ours so it can read the terminal.
            command.process_group(0);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                ui.error(&format!("Error starting handler: {e}"));
                return 2;
            }
        };
        self.child = Some(child.id());
        let sender = self.sender.clone();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = sender.send(Event::ChildExited(status));
            }
        });
        loop {
            match self.events.recv() {
                Ok(Event::ChildExited(status)) => {
                    if !status.success() {
                        ui.error(&format!(
                            "Error running handler: {}",
                            handler::describe(status)
                        ));
                    }
                    if self.settings.verbose {
                        ui.info("Child terminated, releasing lock");
                    }
                    return if status.success() { 0 } else { 2 };
                }
                Ok(Event::Signal(signal)) => {
                    self.signal_child(signal, ui);
                    if is_shutdown(signal) {
                        if self.settings.verbose {
                            ui.info("Shutdown triggered, killing child");
                        }
                        break;
                    }
                }
                Ok(Event::Lost) => {
                    if self.settings.verbose {
                        ui.info("Lock lost, killing child");
                    }
                    break;
                }
                Ok(Event::Acquired(_)) => {}
                Err(_) => break,
            }
        }
        self.kill_child(ui);
        0
    }

    fn child_command(&self) -> Command {
        handler::command(&self.settings.child, self.settings.shell)
    }

    fn signal_child(&self, signal: i32, ui: &mut Ui) {
        let (Some(pid), Ok(signal)) = (self.child, Signal::try_from(signal)) else {
            return;
        };
        let pid = Pid::from_raw(pid as i32);
        let sent = if self.settings.pass_stdin {
            kill(pid, signal)
        } else {
            killpg(pid, signal)
        };
        if let Err(e) = sent {
            ui.error(&format!("Warning, could not forward signal: {e}"));
        }
    }

    /// SIGTERM, then SIGKILL after the grace period (Consul's `killChild`).
    fn kill_child(&mut self, ui: &mut Ui) {
        let Some(pid) = self.child else {
            return;
        };
        if self.settings.verbose {
            ui.info(&format!("Terminating child pid {pid}"));
        }
        self.signal_child(SIGTERM, ui);
        let deadline = Instant::now() + self.settings.kill_grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::ChildExited(_)) => {
                    if self.settings.verbose {
                        ui.info("Child terminated");
                    }
                    // The group may outlive its leader: take it down too.
                    if !self.settings.pass_stdin {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    return;
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.settings.verbose {
            ui.info(&format!(
                "Child did not exit after grace period of {:?}",
                self.settings.kill_grace
            ));
            ui.info(&format!("Killing child pid {pid}"));
        }
        self.signal_child(nix::libc::SIGKILL, ui);
        // Reap before releasing, so no child outlives the lock.
        while let Ok(event) = self.events.recv_timeout(Duration::from_secs(5)) {
            if matches!(event, Event::ChildExited(_)) {
                break;
            }
        }
    }
}

fn is_shutdown(signal: i32) -> bool {
    signal == SIGINT || signal == SIGTERM
}

fn release_and_cleanup(
    contender: &mut Contender,
    ui: &mut Ui,
    child_code: i32,
    settings: &Settings,
) -> i32 {
    if let Err(e) = contender.release() {
        ui.error(&format!("Lock release failed: {e}"));
        return 1;
    }
    match contender.cleanup() {
        Ok(()) => {
            if settings.verbose {
                ui.info("Cleanup succeeded");
            }
        }
        Err(LockError::Coord(CoordError::InUse)) => {
            if settings.verbose {
                ui.info("Cleanup aborted, lock in use");
            }
        }
        Err(e) => {
            ui.error(&format!("Lock cleanup failed: {e}"));
            return 1;
        }
    }
    if settings.child_exit_code {
        child_code
    } else {
        0
    }
}

/// `-status`: who holds the lock or the semaphore's slots.
fn status(api: &Api, prefix: &str, ui: &mut Ui) -> i32 {
    let key = lock_key(prefix);
    let read = Query {
        consistent: true,
        ..Query::default()
    };
    let pair = match api.kv_get(&key, &read) {
        Ok((pair, _)) => pair,
        Err(e) => {
            ui.error(&format!("Error reading {key}: {e}"));
            return 1;
        }
    };
    let Some(pair) = pair else {
        ui.info(&format!("No lock or semaphore at {key}"));
        return 0;
    };
    match pair.flags {
        LOCK_FLAG_VALUE if pair.session.is_empty() => {
            ui.info(&format!("Lock {key}: free (LockIndex {})", pair.lock_index));
        }
        LOCK_FLAG_VALUE => {
            ui.info(&format!(
                "Lock {key}: held by session {} (LockIndex {}, fencing token {})",
                pair.session, pair.lock_index, pair.modify_index
            ));
        }
        SEMAPHORE_FLAG_VALUE => match serde_json::from_slice::<Holders>(&pair.value) {
            Ok(doc) => {
                ui.info(&format!(
                    "Semaphore {prefix}: {} of {} slots held (fencing token {})",
                    doc.holders.len(),
                    doc.limit,
                    pair.modify_index
                ));
                for holder in doc.holders.keys() {
                    ui.info(&format!("  {holder}"));
                }
            }
            Err(e) => {
                ui.error(&format!(
                    "Semaphore {prefix}: unparsable holders document: {e}"
                ));
                return 1;
            }
        },
        other => {
            ui.error(&format!(
                "{key} exists but is not a lock or semaphore (flags {other})"
            ));
            return 1;
        }
    }
    0
}

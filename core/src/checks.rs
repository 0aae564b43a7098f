//! Health check definitions, scheduling and status thresholds, sans-I/O.
//!
//! Data flow (Consul's `agent/checks` without the goroutines):
//!
//! ```text
//! registration --api::body--> CheckSpec --LocalAgent--> Schedule (next_due)
//!        handle_timeout(now) at next_due --> AgentOutput::Run(RunRequest)  --> shell runs the probe
//!        shell: LocalAgent::on_result(now, id, run, status, output)
//!             --> Counters (success_before_passing / failures_before_*) --> status change?
//!             --> catalog registration only when status or output changed
//! ```
//!
//! Scheduling follows Consul's `CheckHTTP.run`: the first run waits a
//! random stagger within the interval, every later run starts `interval`
//! after the previous one *finished*, so a check never has two runs in
//! flight. Thresholds follow Consul's `StatusHandler`: counters start at
//! their thresholds (the first result applies at once), then a status only
//! flips after that many consecutive results.

use crate::catalog::{Check, CheckStatus};
use crate::limits::CHECK_INTERVAL_MIN;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// How an https or TLS gRPC probe checks the server (Consul's
/// `TLSSkipVerify`, `TLSServerName`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Accept any certificate (Go's `InsecureSkipVerify`).
    pub skip_verify: bool,
    /// SNI and verification name; empty means the host probed.
    pub server_name: String,
}

/// An HTTP probe (Consul's `HTTP`, `Method`, `Header`, `Body`, TLS fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub url: String,
    /// Upper-case method, `GET` when none was given.
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    /// Used only for `https://` URLs.
    pub tls: TlsOptions,
}

/// A gRPC health probe (Consul's `GRPC`, `GRPCUseTLS`, TLS fields): calls
/// `grpc.health.v1.Health/Check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcProbe {
    /// `host:port[/service]`, as registered (outputs quote it whole).
    pub target: String,
    /// `None` for plaintext HTTP/2 (Consul's default).
    pub tls: Option<TlsOptions>,
}

impl GrpcProbe {
    /// The `host:port` to dial and the service to ask about (empty: the
    /// whole server), split at the first `/` as Consul does.
    pub fn server_and_service(&self) -> (&str, &str) {
        self.target.split_once('/').unwrap_or((&self.target, ""))
    }
}

/// What the shell runs for a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Http(HttpProbe),
    Grpc(GrpcProbe),
    /// `host:port` to connect to.
    Tcp {
        address: String,
    },
    /// `args[0]` executed with the rest as arguments (no shell).
    Script {
        args: Vec<String>,
    },
}

/// How a check's status is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Updated through `/v1/agent/check/pass|warn|fail|update`; critical
    /// when not updated within the TTL.
    Ttl(Duration),
    /// Run by the shell every interval.
    Probe(Probe),
    /// Mirrors the local checks of a service (or of the node).
    Alias { service: String, node: String },
    /// Never changes by itself: maintenance checks.
    Static,
}

/// A check as registered: the catalog row it starts as plus how it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    pub check: Check,
    pub kind: CheckKind,
    /// Zero unless the kind is a probe.
    pub interval: Duration,
    /// Zero means the runner's default for the probe.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub deregister_critical_service_after: Option<Duration>,
}

impl CheckSpec {
    /// A check with a fixed status (maintenance mode).
    pub fn fixed(check: Check) -> CheckSpec {
        CheckSpec {
            check,
            kind: CheckKind::Static,
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            thresholds: Thresholds::default(),
            deregister_critical_service_after: None,
        }
    }

    pub fn ttl(&self) -> Option<Duration> {
        match self.kind {
            CheckKind::Ttl(ttl) => Some(ttl),
            _ => None,
        }
    }

    pub fn is_script(&self) -> bool {
        matches!(self.kind, CheckKind::Probe(Probe::Script { .. }))
    }

    /// The interval runs are spaced by: Consul clamps anything shorter than
    /// one second up to it (with a warning).
    pub fn effective_interval(&self) -> Duration {
        self.interval.max(CHECK_INTERVAL_MIN)
    }
}

/// "Run this probe now" for the shell; the answer goes back to
/// `LocalAgent::on_result` with the same `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRequest {
    pub check_id: String,
    /// Identifies this run; results of older runs are ignored.
    pub run: u64,
    pub probe: Probe,
    /// Zero means the runner's default for the probe.
    pub timeout: Duration,
}

/// Consul's `success_before_passing`, `failures_before_warning` and
/// `failures_before_critical`. Zero behaves like one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

/// Consecutive result counters of one check (Consul's `StatusHandler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    successes: u32,
    failures: u32,
}

impl Counters {
    /// Counters at their thresholds, so the first result applies at once.
    pub fn new(t: &Thresholds) -> Counters {
        Counters {
            successes: t.success_before_passing,
            failures: t.failures_before_critical,
        }
    }

    /// Records one result; returns the status the check should now show,
    /// or `None` when a threshold is not reached yet (status and output stay
    /// as they are, as in Consul).
    pub fn observe(&mut self, t: &Thresholds, result: CheckStatus) -> Option<CheckStatus> {
        if matches!(result, CheckStatus::Passing | CheckStatus::Warning) {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            return (self.successes >= t.success_before_passing).then_some(result);
        }
        self.failures = self.failures.saturating_add(1);
        self.successes = 0;
        if self.failures >= t.failures_before_critical {
            return Some(CheckStatus::Critical);
        }
        // Consul: failures_before_warning defaults to failures_before_critical.
        let warning_at = if t.failures_before_warning == 0 {
            t.failures_before_critical
        } else {
            t.failures_before_warning
        };
        (self.failures >= warning_at).then_some(CheckStatus::Warning)
    }
}

/// When a probe runs next. Exactly one of `next_due` and `in_flight` is
/// set for a probe check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub next_due: Option<Instant>,
    pub in_flight: Option<u64>,
}

impl Schedule {
    /// First run: a stagger in `0..interval` drawn by the caller.
    pub fn first(now: Instant, stagger: Duration) -> Schedule {
        Schedule {
            next_due: Some(now + stagger),
            in_flight: None,
        }
    }

    /// Starts run `run` if it is due; `false` when not due or already
    /// running.
    pub fn start(&mut self, now: Instant, run: u64) -> bool {
        match self.next_due {
            Some(due) if due <= now && self.in_flight.is_none() => {
                self.next_due = None;
                self.in_flight = Some(run);
                true
            }
            _ => false,
        }
    }

    /// Ends run `run` at `now`; `false` for a result of a run this schedule
    /// did not start (stale or duplicate), which must be ignored.
    pub fn finish(&mut self, now: Instant, run: u64, interval: Duration) -> bool {
        if self.in_flight != Some(run) {
            return false;
        }
        self.in_flight = None;
        self.next_due = Some(now + interval);
        true
    }
}

/// A bare critical check row, for tests.
#[cfg(test)]
pub(crate) fn test_check(id: &str, service_id: &str) -> Check {
    Check {
        node: String::new(),
        check_id: id.into(),
        name: id.into(),
        status: CheckStatus::Critical,
        notes: String::new(),
        output: String::new(),
        service_id: service_id.into(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        definition: Default::default(),
        create_index: 0,
        modify_index: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use CheckStatus::{Critical, Passing, Warning};

    fn thresholds(pass: u32, warn: u32, crit: u32) -> Thresholds {
        Thresholds {
            success_before_passing: pass,
            failures_before_warning: warn,
            failures_before_critical: crit,
        }
    }

    /// Feeds results and returns the status shown after each one, starting
    /// from critical (the default initial status).
    fn run(t: Thresholds, results: &[CheckStatus]) -> Vec<CheckStatus> {
        let mut counters = Counters::new(&t);
        let mut shown = Critical;
        results
            .iter()
            .map(|r| {
                if let Some(s) = counters.observe(&t, *r) {
                    shown = s;
                }
                shown
            })
            .collect()
    }

    #[test]
    fn first_result_applies_at_once() {
        assert_eq!(run(thresholds(3, 0, 3), &[Passing]), [Passing]);
        assert_eq!(run(thresholds(3, 0, 3), &[Critical]), [Critical]);
    }

    #[test]
    fn flips_need_consecutive_results() {
        let t = thresholds(2, 0, 3);
        assert_eq!(
            run(
                t,
                &[
                    Passing, Critical, Critical, Passing, Critical, Critical, Critical, Passing,
                    Passing
                ]
            ),
            [Passing, Passing, Passing, Passing, Passing, Passing, Critical, Critical, Passing]
        );
    }

    #[test]
    fn warning_threshold_comes_before_critical() {
        let t = thresholds(1, 2, 4);
        assert_eq!(
            run(t, &[Passing, Critical, Critical, Critical, Critical]),
            [Passing, Passing, Warning, Warning, Critical]
        );
        // A warning result counts as a success, as in Consul.
        assert_eq!(run(thresholds(1, 0, 1), &[Warning]), [Warning]);
    }

    #[test]
    fn schedule_never_runs_twice_and_spaces_by_interval() {
        let interval = Duration::from_secs(10);
        let mut s = Schedule::first(Instant(0), Duration::from_secs(3));
        assert!(!s.start(Instant::from_nanos(2_999_999_999), 1));
        assert!(s.start(Instant(3_000_000_000), 1));
        assert!(
            !s.start(Instant(50_000_000_000), 2),
            "run 1 still in flight"
        );
        assert!(!s.finish(Instant(4_000_000_000), 7, interval), "stale run");
        assert!(s.finish(Instant(4_000_000_000), 1, interval));
        assert_eq!(s.next_due, Some(Instant(14_000_000_000)));
        assert!(!s.finish(Instant(4_000_000_000), 1, interval), "twice");
    }

    #[test]
    fn grpc_target_splits_at_first_slash() {
        let probe = |t: &str| GrpcProbe {
            target: t.into(),
            tls: None,
        };
        assert_eq!(probe("h:1").server_and_service(), ("h:1", ""));
        assert_eq!(probe("h:1/a/b").server_and_service(), ("h:1", "a/b"));
    }

    #[test]
    fn intervals_are_clamped_to_one_second() {
        let mut spec = CheckSpec::fixed(test_check("c", ""));
        spec.interval = Duration::from_millis(10);
        assert_eq!(spec.effective_interval(), CHECK_INTERVAL_MIN);
    }

    fn status() -> impl Strategy<Value = CheckStatus> {
        prop_oneof![Just(Passing), Just(Warning), Just(Critical)]
    }

    proptest! {
        /// The shown status only changes to critical after
        /// `failures_before_critical` consecutive failures (or on the very
        /// first result), and to passing/warning only after
        /// `success_before_passing` consecutive successes.
        #[test]
        fn thresholds_hold(pass in 1u32..5, crit in 1u32..5,
                           results in proptest::collection::vec(status(), 1..60)) {
            let t = thresholds(pass, 0, crit);
            let shown = run(t, &results);
            // Counters start at their thresholds: a streak from the very
            // first result counts as reached.
            let (mut ok_run, mut bad_run) = (pass, crit);
            let mut before = Critical;
            for (i, (r, s)) in results.iter().zip(&shown).enumerate() {
                if *r == Critical { bad_run += 1; ok_run = 0 } else { ok_run += 1; bad_run = 0 }
                if *s != before && i > 0 {
                    match s {
                        Critical => prop_assert!(bad_run >= crit),
                        _ => prop_assert!(ok_run >= pass),
                    }
                }
                if i == 0 { prop_assert_eq!(*s, *r); }
                before = *s;
            }
        }

        /// However results and clock interleave, a check never has two runs
        /// in flight, and a new run starts no earlier than `interval` after
        /// the previous one finished.
        #[test]
        fn schedule_spacing(steps in proptest::collection::vec((0u64..5_000, any::<bool>()), 1..80)) {
            let interval = Duration::from_secs(1);
            let mut s = Schedule::first(Instant(0), Duration::from_millis(300));
            let (mut now, mut run, mut finished_at) = (0u64, 0u64, None::<u64>);
            for (advance_ms, finish) in steps {
                now += advance_ms * 1_000_000;
                if finish {
                    if let Some(r) = s.in_flight {
                        prop_assert!(s.finish(Instant(now), r, interval));
                        finished_at = Some(now);
                    }
                }
                let was_in_flight = s.in_flight.is_some();
                if s.start(Instant(now), run + 1) {
                    run += 1;
                    prop_assert!(!was_in_flight);
                    if let Some(f) = finished_at {
                        prop_assert!(now >= f + interval.as_nanos());
                    }
                }
            }
        }
    }
}

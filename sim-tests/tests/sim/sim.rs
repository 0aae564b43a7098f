//! The tests: the seed budget, named regressions, determinism and teeth.

use io_sim::{DiskMode, ReadMode, Trace};
use sim_tests::generate;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::params::*;
use crate::scenario::*;

/// Seeds CI runs (`cargo test -p sim-tests`).
const CI_SEEDS: u64 = 200;

/// Seeds that once failed, kept as named regressions.
fn regression(seed: u64) {
    let run = run(&Params::from_seed(seed).without_later_faults(), false);
    assert!(
        run.violations.is_empty(),
        "{}\n{:#?}\nreproduce: {}",
        run.summary(),
        run.violations,
        reproduce(seed)
    );
}

/// The simulated network once matched answers to calls by port only:
/// a late AppendEntries answer reached a later call on the reused
/// ephemeral port, and openraft's leader saw a follower's log "revert"
/// (its assertion panicked). Calls now carry ids.
#[test]
fn regression_seed_171_late_answer_on_a_reused_port() {
    regression(171);
}

/// Two leaders in one term: legal with openraft's advanced leader ids,
/// once reported as an election-safety violation by a checker that
/// assumed Raft's one leader per term.
#[test]
fn regression_seed_1510_two_leaders_in_one_term() {
    regression(1510);
}

/// A restarting server read a corrupted entry while openraft started
/// (it reads the log's tail), so `Raft::new` failed and the simulated
/// node panicked instead of exiting like the daemon's agent. Found as
/// seed 227 by the first release soak with read corruption; the seed that
/// replays it moves as the model grows (236 until client agents and
/// server replacement joined; now 218, no gossip). Replays with every
/// fault of today's model.
#[test]
fn regression_seed_218_a_corrupted_read_while_starting() {
    let run = run(&Params::from_seed(218), true);
    assert!(
        run.trace_lines
            .iter()
            .any(|l| l.contains("failed to start")),
        "seed 218 no longer fails a start: pick another"
    );
    assert!(
        run.violations.is_empty(),
        "{}\n{:#?}\nreproduce: {}",
        run.summary(),
        run.violations,
        reproduce(218)
    );
}

/// A real finding, kept failing on purpose (ignored so CI stays
/// green; run with `cargo test -p sim-tests --test sim -- --ignored`):
/// openraft 0.10.0-alpha.37's `ReadPolicy::ReadIndex` serves stale
/// reads after a leader restarts and resumes its term from its
/// persisted vote. It reuses its old no-op log id, and its read log id
/// is max(no-op, local committed), where the committed index is lost on
/// a crash (the WAL keeps it in memory) and is re-learned from the
/// first quorum of answers, below what was committed and acknowledged
/// before. Seed 59: server 1 restarts at 1.549 s as leader of term 1
/// with 14 entries, commits up to 7 by 1.567 s, and a read answered at
/// 1.573 s returns the value of entry 7 although entries up to 12 had
/// been acknowledged. The daemon does not use this read path
/// (io-tokio's `read_index.rs`, and `state.rs` raises the lease read
/// to the last log index); `TRIBUNE_SIM_READS=openraft-read-index`
/// or `openraft-lease-read` fail about 5% of seeds, all with kills.
#[test]
#[ignore = "openraft's ReadIndex after a leader restart: a known finding, see the comment"]
fn openraft_read_index_after_a_leader_restart_seed_59() {
    let mut params = Params::from_seed(59).without_later_faults();
    params.read_mode = ReadMode::OpenraftReadIndex;
    let run = run(&params, false);
    assert!(
        run.violations.is_empty(),
        "{}\n{:#?}\nreproduce: TRIBUNE_SIM_READS=openraft-read-index {}",
        run.summary(),
        run.violations,
        reproduce(59)
    );
}

/// A finding in openraft 0.10.0-alpha.37, kept failing on purpose
/// (ignored so CI stays green; the seed budget reports such seeds as
/// known findings in debug builds, see `known_openraft_assertion`).
/// A follower that has already submitted entries for apply installs a
/// full snapshot that the leader sent earlier and that arrived late,
/// behind those entries; its Raft core moves the state machine's apply
/// cursor back and openraft's own debug assertion stops the run
/// (`expect submitted: … < new_submitted: …`, `IOProgress::submit`).
/// Seen as seed 142 (a duplicated snapshot request), as seed 111 (in the
/// first run with leader duties: entries through 31 submitted, a snapshot
/// through 29), and now as seeds 759 and 794 of a debug run of seeds
/// 200..1000 (2 of 800). In a release build, and in debug with openraft's
/// and validit's debug assertions off
/// (`--config 'profile.dev.package.openraft.debug-assertions=false'`,
/// the same for `validit`), these seeds pass every check.
#[test]
#[ignore = "openraft's apply-order debug assertion after a late snapshot: a known finding, see the comment"]
fn openraft_apply_order_assertion_seed_794() {
    let run = run(&params_for(794), false);
    assert!(
        run.violations.is_empty(),
        "{}\n{:#?}\nreproduce: {}",
        run.summary(),
        run.violations,
        reproduce(794)
    );
}

/// The first line where two traces differ, for a determinism failure.
fn first_difference(a: &[String], b: &[String]) -> String {
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    format!(
        "traces differ at event {at}:\n  first:  {}\n  second: {}",
        a.get(at).map_or("(end)", String::as_str),
        b.get(at).map_or("(end)", String::as_str)
    )
}

/// One seed run twice in this process gives the same trace. (Rerunning
/// in a new process is weaker: tokio's watch channel passed that and
/// still failed this, see shared/OPENRAFT-MADSIM.md.)
#[test]
fn a_seed_replays_identically() {
    for seed in [1, 2] {
        let params = Params::from_seed(seed);
        let first = run(&params, true);
        let second = run(&params, true);
        assert!(first.trace_events > 100, "{}", first.summary());
        assert!(
            first.trace_hash == second.trace_hash && first.trace_events == second.trace_events,
            "seed {seed} is not deterministic: {}\n{}",
            first_difference(&first.trace_lines, &second.trace_lines),
            reproduce(seed)
        );
    }
}

/// madsim's own check: the same seed run twice draws the same random
/// numbers in the same order (it fails at the first divergence).
#[test]
fn madsim_sees_the_same_random_draws() {
    async fn one_run() -> usize {
        let outcome = scenario(Params::from_seed(7), Trace::default()).await;
        outcome.history.len()
    }
    let params = Params::from_seed(7);
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = params.loss_rate;
    config.net.send_latency =
        Duration::from_millis(1)..Duration::from_millis(params.net_latency_max_ms);
    let operations = madsim::runtime::Runtime::check_determinism(7, config, one_run);
    assert!(operations > 0);
}

/// Seeds a teeth test tries before giving up.
const TEETH_SEEDS: u64 = 40;

/// Runs broken variants of the first seeds until one of the
/// simulator's checkers (not a panic inside openraft) catches one;
/// returns the seed and what was found.
fn first_caught(broken: impl Fn(&mut Params)) -> Option<(u64, Vec<String>)> {
    first_caught_by("", broken)
}

/// [`first_caught`], counting only violations that start with `check`
/// (a checker's name).
fn first_caught_by(check: &str, broken: impl Fn(&mut Params)) -> Option<(u64, Vec<String>)> {
    (0..TEETH_SEEDS).find_map(|seed| {
        let mut params = Params::from_seed(seed);
        broken(&mut params);
        let run = run(&params, false);
        let by_checker = run
            .violations
            .iter()
            .any(|v| !v.starts_with("panic") && v.starts_with(check));
        by_checker.then_some((seed, run.violations))
    })
}

/// Reads served from any server's local store, with no leadership
/// check, are not linearizable under partitions: the linearizability
/// checker must say so (the lock clients' reads may show it first).
#[test]
fn teeth_stale_local_reads_are_caught() {
    let caught = first_caught_by("linearizability", |params| {
        params.read_mode = ReadMode::LocalStale
    });
    let (seed, violations) = caught.expect("stale reads went unnoticed");
    eprintln!("stale reads caught at seed {seed}: {violations:?}");
}

/// Clients that take a refused lock acquire for a granted one hold the
/// lock together with its real holder: the lock check must say so.
#[test]
fn teeth_careless_lock_clients_are_caught() {
    let caught = first_caught(|params| {
        params.lock_pct = 30;
        params.careless_locks = true;
    });
    let (seed, violations) = caught.expect("overlapping lock holds went unnoticed");
    eprintln!(
        "careless lock clients caught at seed {seed}: {}",
        violations[0]
    );
    assert!(
        violations.iter().any(|v| v.starts_with("locks:")),
        "{violations:?}"
    );
}

/// A disk that acknowledges appends and votes before they are durable
/// loses them on a crash: some check must fail.
#[test]
fn teeth_acknowledging_before_fsync_is_caught() {
    let caught = first_caught(|params| {
        params.disk.mode = DiskMode::AckBeforeSync {
            sync_delay: Duration::from_millis(500),
        };
        params.kill_pct = params.kill_pct.max(30);
        // Else openraft's own assertion stops the run first.
        params.allow_log_reversion = true;
    });
    let (seed, violations) = caught.expect("lost acknowledged appends went unnoticed");
    eprintln!("unsynced acks caught at seed {seed}: {violations:?}");
}

/// A disk whose reads skip the records' checksums hands corrupted
/// entries to Raft (applied on one server, or sent to the others):
/// some check must fail.
#[test]
fn teeth_unchecked_disk_reads_are_caught() {
    let caught = first_caught(|params| {
        params.disk.read_corruption_ppm = 50_000;
        params.disk.skip_read_checksums = true;
    });
    let (seed, violations) = caught.expect("corrupted reads went unnoticed");
    eprintln!("unchecked reads caught at seed {seed}: {violations:?}");
}

/// New leaders that do not re-arm the TTL timers of sessions created
/// under earlier leaders leave the sessions their clients abandoned
/// (and the lease lock they may hold) alive forever: the liveness check
/// must say so.
#[test]
fn teeth_sessions_forgotten_by_new_leaders_are_caught() {
    let caught = first_caught(|params| {
        params.leases = params.leases.max(2);
        params.forget_sessions_on_takeover = true;
    });
    let (seed, violations) = caught.expect("sessions that never expire went unnoticed");
    eprintln!("forgotten sessions caught at seed {seed}: {violations:?}");
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with("liveness: sessions did not expire")),
        "{violations:?}"
    );
}

/// Client agents that send a write which brought no answer to the next
/// server (what core's `route::Call` forbids) apply it twice when the
/// first copy did arrive: a compare-and-set that took effect then
/// answers false, a set lands again after later writes. Some check must
/// say so.
#[test]
fn teeth_agents_resending_unanswered_writes_are_caught() {
    let through_agents = |params: &mut Params| {
        params.gossip = true;
        params.agents = params.agents.max(2);
        params.agent_clients = true;
        params.gossip_time = params.gossip_time.max(Duration::from_secs(2));
        params.clients = params.clients.max(4);
        params.kill_pct = params.kill_pct.max(30);
    };
    let caught = first_caught(|params| {
        through_agents(params);
        params.resend_unanswered_writes = true;
    });
    let (seed, violations) = caught.expect("writes applied twice went unnoticed");
    eprintln!("resent writes caught at seed {seed}: {violations:?}");
    // The same seed with the rule kept passes.
    let mut params = Params::from_seed(seed);
    through_agents(&mut params);
    let run = run(&params, false);
    assert!(
        run.violations.is_empty(),
        "seed {seed} fails even with the rule kept: {:?}",
        run.violations
    );
}

/// Transactions that apply only their first operation (and answer as
/// if they applied all) leave other transactions reading one leg's new
/// value beside another leg's old one: the transaction atomicity check
/// must say so (not only the per-key checks).
#[test]
fn teeth_partly_applied_transactions_are_caught() {
    let caught = (0..TEETH_SEEDS).find_map(|seed| {
        let mut params = Params::from_seed(seed);
        params.txn_pct = 40;
        params.keys = params.keys.max(2);
        params.partial_txns = true;
        let run = run(&params, false);
        let torn = run
            .violations
            .iter()
            .find(|v| v.starts_with("transaction atomicity"))
            .cloned();
        torn.map(|torn| (seed, torn))
    });
    let (seed, torn) = caught.expect("partly applied transactions went unnoticed");
    eprintln!("partly applied transactions caught at seed {seed}: {torn}");
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// The seeds to run: one (`TRIBUNE_SIM_SEED`), a soak
/// (`TRIBUNE_SIM_SEEDS`), or CI's budget.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("TRIBUNE_SIM_SEED") {
        return vec![seed];
    }
    let first = env_u64("TRIBUNE_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("TRIBUNE_SIM_SEEDS").unwrap_or(CI_SEEDS);
    (first..first + count).collect()
}

/// The seed's parameters, with `TRIBUNE_SIM_SERVERS` (3 or 5)
/// overriding the cluster size (for measurements),
/// `TRIBUNE_SIM_NO_KILLS` turning crashes off,
/// `TRIBUNE_SIM_DRIFT_PPM` setting every seed's largest clock drift, and
/// `TRIBUNE_SIM_READS` the read path (`read-index`, the daemon's, by
/// default; `daemon-default` for the daemon's lease-based `default` mode;
/// `openraft-read-index` or `openraft-lease-read` to judge openraft's
/// own).
fn params_for(seed: u64) -> Params {
    let mut params = Params::from_seed(seed);
    if let Some(size) = env_u64("TRIBUNE_SIM_SERVERS") {
        params.size = size;
    }
    if std::env::var("TRIBUNE_SIM_NO_KILLS").is_ok() {
        params.kill_pct = 0;
    }
    if let Some(drift_ppm) = env_u64("TRIBUNE_SIM_DRIFT_PPM") {
        assert!(
            drift_ppm < 1_000_000,
            "TRIBUNE_SIM_DRIFT_PPM must be below 1,000,000"
        );
        params.drift_ppm = drift_ppm;
        params.clocks = clocks(&mut generate::Rng::new(seed ^ 0xd21f7), drift_ppm);
    }
    if let Ok(reads) = std::env::var("TRIBUNE_SIM_READS") {
        params.read_mode = match reads.as_str() {
            "read-index" => ReadMode::Linearizable,
            "openraft-read-index" => ReadMode::OpenraftReadIndex,
            "openraft-lease-read" => ReadMode::OpenraftLeaseRead,
            "daemon-default" => ReadMode::DaemonDefault,
            other => panic!(
                "TRIBUNE_SIM_READS={other:?}: read-index, daemon-default, \
                 openraft-read-index or openraft-lease-read"
            ),
        };
    }
    params
}

/// One seed's trace lines (`TRIBUNE_SIM_TRACE=FILE`) and history
/// (`TRIBUNE_SIM_HISTORY=FILE`, JSON lines for `lincheck`).
fn save_artifacts(run: &Run) {
    if let Ok(path) = std::env::var("TRIBUNE_SIM_TRACE") {
        let mut text = run.trace_lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).expect("trace file written");
        eprintln!("trace: {path}");
    }
    if let Ok(path) = std::env::var("TRIBUNE_SIM_HISTORY") {
        let file = std::fs::File::create(&path).expect("history file created");
        sim_tests::write_jsonl(&run.history, std::io::BufWriter::new(file))
            .expect("history written");
        eprintln!("history: {path}");
    }
}

/// openraft 0.10.0-alpha.37's debug assertion on its state machine's
/// apply cursor (`IOProgress::submit`): a follower that already submitted
/// entries for apply installs a snapshot that arrived late, behind them
/// (see `openraft_apply_order_assertion_seed_794`). Compiled out of
/// release builds, the daemon's, where the same seeds pass every check.
fn known_openraft_assertion(violations: &[String]) -> bool {
    cfg!(debug_assertions)
        && violations.len() == 1
        && violations[0].starts_with("panic in the simulation: expect submitted:")
}

#[test]
fn seeds_pass() {
    let seeds = seeds();
    let single = seeds.len() == 1;
    let wall = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut known = Vec::new();
    let mut virtual_total = Duration::ZERO;
    let mut fault_totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for &seed in &seeds {
        let run = run(&params_for(seed), single);
        virtual_total += run.virtual_time;
        for (fault, n) in &run.faults {
            *fault_totals.entry(fault).or_default() += n;
        }
        if single {
            eprintln!("{}", run.summary());
            save_artifacts(&run);
        }
        if known_openraft_assertion(&run.violations) {
            eprintln!(
                "KNOWN FINDING (openraft's debug assertion, not a tribune failure) {}\n  {}\n  \
                 reproduce: {}; judged in full by a release build",
                run.summary(),
                run.violations[0],
                reproduce(seed)
            );
            known.push(seed);
        } else if !run.violations.is_empty() {
            eprintln!("FAILED {}", run.summary());
            for violation in &run.violations {
                eprintln!("  {violation}");
            }
            eprintln!("  reproduce: {}", reproduce(seed));
            failed.push(seed);
        }
    }
    let wall = wall.elapsed();
    eprintln!(
        "{} seeds, {} failed, {} tripped openraft's known debug assertion {known:?}; \
         {:.1}s virtual in {:.1}s wall ({:.0}x)",
        seeds.len(),
        failed.len(),
        known.len(),
        virtual_total.as_secs_f64(),
        wall.as_secs_f64(),
        virtual_total.as_secs_f64() / wall.as_secs_f64()
    );
    let totals: Vec<String> = fault_totals
        .iter()
        .map(|(fault, n)| format!("{fault} {n}"))
        .collect();
    eprintln!("faults over all seeds: {}", totals.join(", "));
    assert!(
        failed.is_empty(),
        "seeds failed: {failed:?}; reproduce one with e.g. `{}`",
        reproduce(failed[0])
    );
}

//! LocalAgent: checks driven by `now` through registration, runs, results,
//! the reaper, maintenance and reload.

use super::*;
use crate::checks::{test_check, HttpProbe, Probe, Thresholds};

const SECOND: u64 = 1_000_000_000;
const API: Origin = Origin::Api { loopback: false };

fn at(secs: u64) -> Instant {
    Instant(secs * SECOND)
}

fn agent() -> LocalAgent {
    LocalAgent::new(
        Node {
            id: "id".into(),
            name: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            create_index: 0,
            modify_index: 0,
        },
        42,
    )
}

fn service(id: &str) -> Service {
    Service {
        node: String::new(),
        id: id.into(),
        name: id.into(),
        kind: String::new(),
        tags: Vec::new(),
        address: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::new(),
        port: 80,
        weights: Default::default(),
        enable_tag_override: false,
        create_index: 0,
        modify_index: 0,
    }
}

fn kind_spec(id: &str, service_id: &str, kind: CheckKind, interval_secs: u64) -> CheckSpec {
    CheckSpec {
        check: test_check(id, service_id),
        kind,
        interval: Duration::from_secs(interval_secs),
        timeout: Duration::ZERO,
        thresholds: Thresholds::default(),
        deregister_critical_service_after: None,
    }
}

fn http_spec(id: &str, service_id: &str, interval_secs: u64) -> CheckSpec {
    let probe = Probe::Http(HttpProbe {
        url: "http://127.0.0.1:1/".into(),
        method: "GET".into(),
        header: BTreeMap::new(),
        body: String::new(),
        tls: Default::default(),
    });
    kind_spec(id, service_id, CheckKind::Probe(probe), interval_secs)
}

/// Drains outputs: (registered check rows, run requests, deregistrations).
fn drain(a: &mut LocalAgent) -> (Vec<Check>, Vec<RunRequest>, usize) {
    let (mut rows, mut runs, mut deregs) = (Vec::new(), Vec::new(), 0);
    while let Some(out) = a.poll() {
        match out {
            AgentOutput::Propose(Command::Register(reg)) => rows.extend(reg.checks),
            AgentOutput::Propose(Command::Deregister { .. }) => deregs += 1,
            AgentOutput::Propose(other) => panic!("unexpected {other:?}"),
            AgentOutput::Run(run) => runs.push(run),
        }
    }
    a.check_invariants();
    (rows, runs, deregs)
}

/// Advances to the next deadline and returns the run it starts.
fn next_run(a: &mut LocalAgent) -> RunRequest {
    let due = a.poll_timeout().expect("a deadline");
    a.handle_timeout(due);
    let (_, mut runs, _) = drain(a);
    assert_eq!(runs.len(), 1, "one run due");
    runs.remove(0)
}

#[test]
fn first_run_is_staggered_within_the_interval() {
    let mut a = agent();
    a.add_service(
        at(100),
        service("web"),
        vec![http_spec("c", "web", 10)],
        API,
    )
    .expect("registers");
    drain(&mut a);
    let due = a.poll_timeout().expect("scheduled");
    assert!(due >= at(100) && due < at(110), "{due:?}");
    // Many checks spread over the interval rather than firing together.
    let mut b = agent();
    b.add_service(at(0), service("web"), Vec::new(), API)
        .expect("ok");
    for i in 0..50 {
        b.add_check(at(0), http_spec(&format!("c{i}"), "web", 10), API)
            .expect("ok");
    }
    let dues: BTreeSet<u64> = b
        .checks()
        .values()
        .filter_map(|c| c.schedule.next_due)
        .map(|d| d.0 / SECOND)
        .collect();
    assert!(dues.len() >= 5, "staggered over the interval: {dues:?}");
}

#[test]
fn runs_never_overlap_and_respect_the_interval() {
    let mut a = agent();
    a.add_check(at(0), http_spec("c", "", 10), API).expect("ok");
    drain(&mut a);
    let run = next_run(&mut a);
    // While in flight nothing else is due, however late it gets.
    assert_eq!(a.poll_timeout(), None);
    a.handle_timeout(at(1000));
    assert!(drain(&mut a).1.is_empty());
    a.on_result(at(1001), "c", run.run, CheckStatus::Passing, "ok".into());
    assert_eq!(
        a.poll_timeout(),
        Some(at(1011)),
        "interval after the finish"
    );
    // A stale result (older run) changes nothing.
    a.on_result(at(1002), "c", run.run, CheckStatus::Critical, "late".into());
    assert_eq!(a.checks()["c"].check.status, CheckStatus::Passing);
}

#[test]
fn registrations_only_when_status_or_output_change() {
    let mut a = agent();
    a.add_check(at(0), http_spec("c", "", 1), API).expect("ok");
    drain(&mut a);
    let mut rows_per_result = Vec::new();
    for (status, output) in [
        (CheckStatus::Passing, "ok"),
        (CheckStatus::Passing, "ok"),
        (CheckStatus::Passing, "ok, different"),
        (CheckStatus::Critical, "ok, different"),
    ] {
        let run = next_run(&mut a);
        a.on_result(
            a.poll_timeout().unwrap_or(at(0)),
            "c",
            run.run,
            status,
            output.into(),
        );
        rows_per_result.push(drain(&mut a).0.len());
    }
    assert_eq!(rows_per_result, [1, 0, 1, 1]);
}

#[test]
fn thresholds_delay_flips_through_the_agent() {
    let mut a = agent();
    let mut spec = http_spec("c", "", 1);
    spec.thresholds = Thresholds {
        success_before_passing: 2,
        failures_before_warning: 0,
        failures_before_critical: 3,
    };
    a.add_check(at(0), spec, API).expect("ok");
    drain(&mut a);
    let mut shown = Vec::new();
    let results = [
        CheckStatus::Passing,
        CheckStatus::Critical,
        CheckStatus::Critical,
        CheckStatus::Critical,
        CheckStatus::Passing,
        CheckStatus::Passing,
    ];
    let mut now = at(0);
    for result in results {
        let run = next_run(&mut a);
        now = now + Duration::from_secs(5);
        a.on_result(now, "c", run.run, result, String::new());
        drain(&mut a);
        shown.push(a.checks()["c"].check.status);
    }
    use CheckStatus::{Critical, Passing};
    assert_eq!(
        shown,
        [Passing, Passing, Passing, Critical, Critical, Passing]
    );
}

#[test]
fn output_is_truncated_to_the_limit() {
    let mut a = agent();
    a.add_check(at(0), http_spec("c", "", 1), API).expect("ok");
    drain(&mut a);
    let run = next_run(&mut a);
    a.on_result(at(5), "c", run.run, CheckStatus::Passing, "é".repeat(5000));
    let (rows, _, _) = drain(&mut a);
    assert!(rows[0].output.len() <= CHECK_OUTPUT_BYTES_MAX);
    assert!(rows[0].output.len() > CHECK_OUTPUT_BYTES_MAX - 4);
}

#[test]
fn critical_services_are_reaped_after_deregister_critical_service_after() {
    let mut a = agent();
    let mut spec = http_spec("c", "web", 10);
    spec.deregister_critical_service_after = Some(Duration::from_secs(90));
    a.add_service(at(0), service("web"), vec![spec], API)
        .expect("ok");
    drain(&mut a);
    // Passing first: no reaping while healthy.
    let run = next_run(&mut a);
    a.on_result(at(10), "c", run.run, CheckStatus::Passing, String::new());
    drain(&mut a);
    let run = next_run(&mut a);
    a.on_result(at(30), "c", run.run, CheckStatus::Critical, String::new());
    drain(&mut a);
    // Critical since 30 s: reaped at 120 s, not before.
    a.handle_timeout(at(119));
    let _ = drain(&mut a);
    assert!(a.service("web").is_some());
    a.handle_timeout(at(120));
    let (_, _, deregs) = drain(&mut a);
    assert_eq!(deregs, 1);
    assert!(a.service("web").is_none() && a.checks().is_empty());
}

#[test]
fn deregister_after_is_at_least_a_minute() {
    let mut a = agent();
    let mut spec = kind_spec("t", "web", CheckKind::Ttl(Duration::from_secs(500)), 0);
    spec.deregister_critical_service_after = Some(Duration::from_secs(1));
    a.add_service(at(0), service("web"), vec![spec], API)
        .expect("ok");
    assert_eq!(a.poll_timeout(), Some(at(60)));
}

#[test]
fn scripts_follow_the_policy() {
    let script = || {
        let probe = Probe::Script {
            args: vec!["true".into()],
        };
        kind_spec("s", "", CheckKind::Probe(probe), 10)
    };
    let mut a = agent();
    assert_eq!(
        a.add_check(at(0), script(), API),
        Err(AgentError::ScriptsDisabled)
    );
    a.set_script_policy(ScriptPolicy::LocalOnly);
    assert_eq!(
        a.add_check(at(0), script(), API),
        Err(AgentError::ScriptsDisabledRemote)
    );
    assert!(a
        .add_check(at(0), script(), Origin::Api { loopback: true })
        .is_ok());
    assert!(a.add_check(at(0), script(), Origin::ConfigFile).is_ok());
    a.set_script_policy(ScriptPolicy::Enabled);
    assert!(a.add_check(at(0), script(), API).is_ok());
}

#[test]
fn maintenance_checks() {
    let mut a = agent();
    a.add_service(at(0), service("web"), Vec::new(), API)
        .expect("ok");
    drain(&mut a);
    a.enable_node_maintenance(at(1), "");
    let (rows, _, _) = drain(&mut a);
    assert_eq!(rows[0].check_id, NODE_MAINTENANCE_CHECK_ID);
    assert_eq!(rows[0].status, CheckStatus::Critical);
    assert!(rows[0]
        .notes
        .starts_with("Maintenance mode is enabled for this node"));
    a.disable_node_maintenance();
    assert_eq!(drain(&mut a).2, 1);
    assert_eq!(
        a.enable_service_maintenance(at(2), "nope", "r"),
        Err(AgentError::NoServiceForMaintenance("nope".into()))
    );
    a.enable_service_maintenance(at(2), "web", "upgrade")
        .expect("ok");
    let (rows, _, _) = drain(&mut a);
    assert_eq!(
        (
            rows[0].check_id.as_str(),
            rows[0].service_id.as_str(),
            rows[0].notes.as_str()
        ),
        ("_service_maintenance:web", "web", "upgrade")
    );
    a.disable_service_maintenance("web").expect("ok");
    assert!(a.checks().is_empty());
}

#[test]
fn alias_mirrors_the_aliased_service() {
    let mut a = agent();
    let ttl = kind_spec("web-ttl", "web", CheckKind::Ttl(Duration::from_secs(30)), 0);
    a.add_service(at(0), service("web"), vec![ttl], API)
        .expect("ok");
    let alias = CheckKind::Alias {
        service: "web".into(),
        node: String::new(),
    };
    a.add_check(at(0), kind_spec("alias", "", alias, 0), API)
        .expect("ok");
    drain(&mut a);
    assert_eq!(a.checks()["alias"].check.status, CheckStatus::Critical);
    a.update_ttl(at(1), "web-ttl", CheckStatus::Passing, "fine".into())
        .expect("ok");
    drain(&mut a);
    assert_eq!(a.checks()["alias"].check.status, CheckStatus::Passing);
    assert_eq!(a.checks()["alias"].check.output, "All checks passing.");
    a.remove_service("web").expect("ok");
    assert_eq!(a.checks()["alias"].check.status, CheckStatus::Critical);
}

#[test]
fn reload_adds_updates_removes_and_keeps_api_entries() {
    let mut a = agent();
    a.add_service(at(0), service("api-svc"), Vec::new(), API)
        .expect("ok");
    let ttl = |id: &str, svc: &str| kind_spec(id, svc, CheckKind::Ttl(Duration::from_secs(30)), 0);
    a.reload(
        at(0),
        vec![
            (service("a"), vec![ttl("a-ttl", "a")]),
            (service("b"), Vec::new()),
        ],
        Vec::new(),
    )
    .expect("ok");
    a.update_ttl(at(1), "a-ttl", CheckStatus::Passing, String::new())
        .expect("ok");
    drain(&mut a);
    // Same definition for a: status kept; b gone; c new.
    a.reload(
        at(2),
        vec![
            (service("a"), vec![ttl("a-ttl", "a")]),
            (service("c"), Vec::new()),
        ],
        Vec::new(),
    )
    .expect("ok");
    let ids: Vec<&String> = a.services().map(|(id, _)| id).collect();
    assert_eq!(ids, ["a", "api-svc", "c"]);
    assert_eq!(a.checks()["a-ttl"].check.status, CheckStatus::Passing);
    // A changed check is replaced (status back to its registered one).
    let mut changed = ttl("a-ttl", "a");
    changed.kind = CheckKind::Ttl(Duration::from_secs(60));
    a.reload(at(3), vec![(service("a"), vec![changed])], Vec::new())
        .expect("ok");
    assert_eq!(a.checks()["a-ttl"].check.status, CheckStatus::Critical);
    assert_eq!(a.services().count(), 2);
}

#[test]
fn ttl_checks_still_expire() {
    let mut a = agent();
    a.add_check(
        at(0),
        kind_spec("t", "", CheckKind::Ttl(Duration::from_secs(5)), 0),
        API,
    )
    .expect("ok");
    a.update_ttl(at(1), "t", CheckStatus::Passing, String::new())
        .expect("ok");
    drain(&mut a);
    assert_eq!(a.poll_timeout(), Some(at(6)));
    a.handle_timeout(at(6));
    let (rows, _, _) = drain(&mut a);
    assert_eq!(
        (rows[0].status, rows[0].output.as_str()),
        (CheckStatus::Critical, "TTL expired")
    );
}

fn proposed_registrations(a: &mut LocalAgent) -> Vec<Registration> {
    let mut regs = Vec::new();
    while let Some(out) = a.poll() {
        match out {
            AgentOutput::Propose(Command::Register(reg)) => regs.push(*reg),
            other => panic!("unexpected {other:?}"),
        }
    }
    regs
}

/// A `-dev` agent reports its own liveness; an agent in a gossip pool
/// registers its node (and a server's `consul` service) but leaves
/// `serfHealth` to the leader. Both write the same `consul` service row.
#[test]
fn only_the_dev_agent_registers_serf_health() {
    let mut dev = agent();
    dev.register_node(Some(8300));
    let regs = proposed_registrations(&mut dev);
    assert_eq!(regs.len(), 1);
    assert_eq!(
        regs[0].checks,
        vec![serf_health_check(
            "n1",
            CheckStatus::Passing,
            SERF_CHECK_ALIVE_OUTPUT
        )]
    );
    assert_eq!(regs[0].checks[0].name, "Serf Health Status");
    assert_eq!(regs[0].service, Some(consul_service("n1", 8300)));
    assert_eq!(dev.desired_checks().count(), 1);

    let mut pooled_server = agent();
    pooled_server.register_node_in_pool(Some(8300));
    let regs = proposed_registrations(&mut pooled_server);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].node.name, "n1");
    assert!(
        !regs[0].skip_node_update,
        "the node row is still the agent's"
    );
    assert_eq!(regs[0].checks, Vec::new());
    assert_eq!(regs[0].service, Some(consul_service("n1", 8300)));
    assert_eq!(pooled_server.desired_checks().count(), 0);
    assert_eq!(
        pooled_server
            .desired_services()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        vec![CONSUL_SERVICE]
    );

    let mut pooled_client = agent();
    pooled_client.register_node_in_pool(None);
    let regs = proposed_registrations(&mut pooled_client);
    assert_eq!((regs[0].service.clone(), regs[0].checks.len()), (None, 0));
    assert_eq!(pooled_client.desired_services().count(), 0);
}

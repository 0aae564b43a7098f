//! Anti-entropy (Consul's `agent/ae` + `local.State.SyncFull`): the agent is
//! authoritative for its own node. Changes are proposed at once by
//! [`crate::agent::LocalAgent`]; this module repairs what still differs: a
//! full sync compares the agent's view with the catalog and returns the
//! registrations and deregistrations that make the catalog match, including
//! removing services and checks on this node that the agent does not know
//! (someone deregistered or registered them behind its back, or an earlier
//! write failed while the servers were unavailable). The one exception is
//! the node's `serfHealth` check, which the leader owns
//! ([`crate::reconcile`]): it is never deregistered here.
//!
//! The schedule follows Consul: a full sync at start, then every interval
//! (1 min) scaled up for clusters over 128 nodes, plus a random stagger of
//! up to one scaled interval; after a failed sync, a retry in 15 s (plus
//! stagger).

use crate::agent::{LocalAgent, SERF_HEALTH_CHECK_ID};
use crate::catalog::{Catalog, Check, Node, Registration, Service};
use crate::command::Command;
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};

/// Consul's default full-sync interval (`ae_interval`).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// Consul's retry interval after a failed sync (`retryFailIntv`).
pub const SYNC_RETRY: Duration = Duration::from_secs(15);

/// The commands that make the catalog's view of the agent's node match the
/// agent. Empty when in sync.
pub fn diff(agent: &LocalAgent, catalog: &Catalog) -> Vec<Command> {
    let node = agent.node();
    let name = node.name.as_str();
    let services: BTreeMap<&str, &Service> = agent
        .desired_services()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let checks: BTreeMap<&str, &Check> = agent
        .desired_checks()
        .map(|c| (c.check_id.as_str(), c))
        .collect();
    let mut commands = Vec::new();

    // Remove what the agent does not know. A removed service takes its
    // checks with it, so those need no command of their own.
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for service in catalog.node_services(name) {
        if !services.contains_key(service.id.as_str()) {
            removed.insert(service.id.as_str());
            commands.push(Command::Deregister {
                node: name.to_string(),
                service_id: Some(service.id.clone()),
                check_id: None,
            });
        }
    }
    for check in catalog.node_checks(name) {
        // `serfHealth` belongs to the leader, which writes it from gossip
        // (Consul's anti-entropy skips `structs.SerfCheckID` likewise).
        if check.check_id == SERF_HEALTH_CHECK_ID {
            continue;
        }
        if !checks.contains_key(check.check_id.as_str())
            && !removed.contains(check.service_id.as_str())
        {
            commands.push(Command::Deregister {
                node: name.to_string(),
                service_id: None,
                check_id: Some(check.check_id.clone()),
            });
        }
    }

    // Add or update what differs: one registration per service with all
    // its checks, one for the node-level checks.
    let check_in_sync = |c: &Check| {
        catalog
            .checks
            .get(&(name.to_string(), c.check_id.clone()))
            .is_some_and(|have| same_check(have, c))
    };
    let mut node_written = false;
    for (id, service) in &services {
        let own: Vec<Check> = checks
            .values()
            .filter(|c| c.service_id == *id)
            .map(|c| (*c).clone())
            .collect();
        let service_in_sync = catalog
            .services
            .get(&(name.to_string(), id.to_string()))
            .is_some_and(|have| same_service(have, service));
        if !service_in_sync || !own.iter().all(check_in_sync) {
            commands.push(register(node, Some((*service).clone()), own));
            node_written = true;
        }
    }
    let node_checks: Vec<Check> = checks
        .values()
        .filter(|c| c.service_id.is_empty() || !services.contains_key(c.service_id.as_str()))
        .map(|c| (*c).clone())
        .collect();
    if !node_checks.iter().all(check_in_sync) {
        commands.push(register(node, None, node_checks));
        node_written = true;
    }
    let node_in_sync = catalog
        .nodes
        .get(name)
        .is_some_and(|have| same_node(have, node));
    if !node_in_sync && !node_written {
        commands.push(register(node, None, Vec::new()));
    }
    commands
}

fn register(node: &Node, service: Option<Service>, checks: Vec<Check>) -> Command {
    Command::Register(Box::new(Registration {
        node: node.clone(),
        skip_node_update: false,
        service,
        checks,
    }))
}

fn same_node(a: &Node, b: &Node) -> bool {
    a.id == b.id
        && a.address == b.address
        && a.datacenter == b.datacenter
        && a.tagged_addresses == b.tagged_addresses
        && a.meta == b.meta
}

fn same_service(a: &Service, b: &Service) -> bool {
    let strip = |s: &Service| Service {
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    };
    strip(a) == strip(b)
}

fn same_check(a: &Check, b: &Check) -> bool {
    let strip = |c: &Check| Check {
        create_index: 0,
        modify_index: 0,
        ..c.clone()
    };
    strip(a) == strip(b)
}

/// Consul's `aeScale`: 1 up to 128 nodes, then one more per doubling.
pub fn scale_factor(cluster_size: usize) -> u64 {
    const THRESHOLD: usize = 128;
    if cluster_size <= THRESHOLD {
        return 1;
    }
    let ratio = cluster_size.div_ceil(THRESHOLD) as u64;
    // ceil(log2(n / 128)) + 1
    u64::from(64 - (ratio - 1).leading_zeros()) + 1
}

/// When the next full sync is due.
#[derive(Debug)]
pub struct SyncSchedule {
    interval: Duration,
    next: Instant,
    rng: Rng,
}

impl SyncSchedule {
    /// A schedule whose first sync is due at `now`.
    pub fn new(now: Instant, interval: Duration, seed: u64) -> SyncSchedule {
        SyncSchedule {
            interval,
            next: now,
            rng: Rng::from_seed(seed),
        }
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// After a successful full sync.
    pub fn synced(&mut self, now: Instant, cluster_size: usize) {
        let scaled = self.interval.saturating_mul(scale_factor(cluster_size));
        self.next = now + scaled + self.stagger(scaled);
    }

    /// After a failed one: retry sooner.
    pub fn failed(&mut self, now: Instant, cluster_size: usize) {
        let retry = SYNC_RETRY.min(self.interval);
        let scaled = retry.saturating_mul(scale_factor(cluster_size));
        self.next = now + retry + self.stagger(scaled);
    }

    fn stagger(&mut self, up_to: Duration) -> Duration {
        match up_to.as_nanos() {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.rng.below(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Origin;
    use crate::fsm::{Effects, Fsm};
    use crate::fuzzing::fixture;

    fn apply_all(fsm: &mut Fsm, commands: &[Command]) {
        for command in commands {
            let index = fsm.last_applied + 1;
            fsm.apply(index, command, &mut Effects::default());
        }
    }

    /// The agent's pending proposals applied to the fixture's store: the
    /// catalog as the agent made it.
    fn synced_fsm(fsm: Fsm, agent: &mut LocalAgent) -> Fsm {
        let mut fsm = fsm;
        let mut commands = Vec::new();
        while let Some(output) = agent.poll() {
            if let crate::agent::AgentOutput::Propose(command) = output {
                commands.push(command);
            }
        }
        apply_all(&mut fsm, &commands);
        fsm
    }

    fn web(agent: &LocalAgent) -> Service {
        let mut service = agent
            .desired_services()
            .next()
            .cloned()
            .expect("the fixture has a service");
        service.id = "web-extra".into();
        service.name = "web-extra".into();
        service
    }

    #[test]
    fn in_sync_after_the_agents_own_writes() {
        let (fsm, mut agent) = fixture();
        let fsm = synced_fsm(fsm, &mut agent);
        let commands = diff(&agent, &fsm.catalog);
        assert_eq!(commands, Vec::new(), "nothing to repair");
    }

    #[test]
    fn repairs_deletions_and_removes_unknown_entries() {
        let (fsm, mut agent) = fixture();
        let extra = web(&agent);
        agent
            .add_service(
                Instant::default(),
                extra,
                Vec::new(),
                Origin::Api { loopback: true },
            )
            .expect("add service");
        let mut fsm = synced_fsm(fsm, &mut agent);
        let node = agent.node().name.clone();
        // Behind the agent's back: its service is deregistered, a foreign
        // service and check appear on its node, serfHealth is changed.
        let foreign = Service {
            id: "intruder".into(),
            name: "intruder".into(),
            ..web(&agent)
        };
        let mut bad_serf = agent
            .desired_checks()
            .find(|c| c.check_id == "serfHealth")
            .cloned()
            .expect("serfHealth");
        bad_serf.status = crate::catalog::CheckStatus::Critical;
        apply_all(
            &mut fsm,
            &[
                Command::Deregister {
                    node: node.clone(),
                    service_id: Some("web-extra".into()),
                    check_id: None,
                },
                register(agent.node(), Some(foreign), vec![bad_serf]),
            ],
        );
        let repairs = diff(&agent, &fsm.catalog);
        assert!(!repairs.is_empty());
        apply_all(&mut fsm, &repairs);
        assert_eq!(diff(&agent, &fsm.catalog), Vec::new(), "converged");
        assert!(fsm
            .catalog
            .services
            .contains_key(&(node.clone(), "web-extra".to_string())));
        assert!(!fsm
            .catalog
            .services
            .contains_key(&(node.clone(), "intruder".to_string())));
        let serf = &fsm.catalog.checks[&(node, "serfHealth".to_string())];
        assert_eq!(serf.status, crate::catalog::CheckStatus::Passing);
    }

    #[test]
    fn a_missing_node_is_registered_again() {
        let (fsm, mut agent) = fixture();
        let mut fsm = synced_fsm(fsm, &mut agent);
        let node = agent.node().name.clone();
        apply_all(
            &mut fsm,
            &[Command::Deregister {
                node: node.clone(),
                service_id: None,
                check_id: None,
            }],
        );
        assert!(!fsm.catalog.nodes.contains_key(&node));
        let repairs = diff(&agent, &fsm.catalog);
        apply_all(&mut fsm, &repairs);
        assert!(fsm.catalog.nodes.contains_key(&node));
        assert_eq!(diff(&agent, &fsm.catalog), Vec::new());
    }

    fn pool_agent(server_port: Option<u16>) -> LocalAgent {
        let mut agent = LocalAgent::new(
            Node {
                id: "5e6f2c3a-0000-4000-8000-000000000001".into(),
                name: "pooled".into(),
                address: "10.0.0.7".into(),
                datacenter: "dc1".into(),
                tagged_addresses: Default::default(),
                meta: Default::default(),
                create_index: 0,
                modify_index: 0,
            },
            3,
        );
        agent.register_node_in_pool(server_port);
        agent
    }

    fn deregisters_check(commands: &[Command], id: &str) -> bool {
        commands
            .iter()
            .any(|c| matches!(c, Command::Deregister { check_id: Some(check), .. } if check == id))
    }

    /// `serfHealth` is the leader's (Consul's anti-entropy skips
    /// `structs.SerfCheckID`): an agent in a gossip pool, which does not
    /// register it, leaves whatever the leader wrote, passing or critical,
    /// while still removing other checks it does not know; a `-dev` agent,
    /// which does register it, repairs it but never deregisters it either.
    #[test]
    fn never_deregisters_serf_health() {
        use crate::agent::{serf_health_check, SERF_HEALTH_CHECK_ID};
        use crate::catalog::CheckStatus;
        let cases = [
            (true, CheckStatus::Passing),
            (true, CheckStatus::Critical),
            (false, CheckStatus::Critical),
        ];
        for (in_pool, status) in cases {
            let mut agent = if in_pool {
                pool_agent(Some(8300))
            } else {
                let mut agent = pool_agent(None);
                agent.register_node(Some(8300));
                agent
            };
            let mut fsm = synced_fsm(Fsm::default(), &mut agent);
            let name = agent.node().name.clone();
            let leader_serf = serf_health_check(&name, status, "from the leader");
            let mut intruder = serf_health_check(&name, CheckStatus::Passing, "");
            intruder.check_id = "intruder".into();
            apply_all(
                &mut fsm,
                &[register(agent.node(), None, vec![leader_serf, intruder])],
            );
            let repairs = diff(&agent, &fsm.catalog);
            assert!(
                !deregisters_check(&repairs, SERF_HEALTH_CHECK_ID),
                "in_pool={in_pool}: {repairs:?}"
            );
            assert!(
                deregisters_check(&repairs, "intruder"),
                "other unknown checks still go: {repairs:?}"
            );
            apply_all(&mut fsm, &repairs);
            let serf = &fsm.catalog.checks[&(name.clone(), SERF_HEALTH_CHECK_ID.to_string())];
            if in_pool {
                assert_eq!(repairs.len(), 1, "only the intruder: {repairs:?}");
                assert_eq!(serf.status, status, "the leader's status stays");
                assert_eq!(serf.output, "from the leader");
            } else {
                assert_eq!(
                    serf.status,
                    CheckStatus::Passing,
                    "the dev agent repairs it"
                );
            }
            assert_eq!(diff(&agent, &fsm.catalog), Vec::new(), "converged");
        }
    }

    /// A pooled server keeps its node and `consul` service in the catalog
    /// without ever writing `serfHealth`.
    #[test]
    fn pooled_agent_registers_its_node_without_serf_health() {
        let mut agent = pool_agent(Some(8300));
        let fsm = synced_fsm(Fsm::default(), &mut agent);
        let name = agent.node().name.clone();
        assert!(fsm.catalog.nodes.contains_key(&name));
        let consul = &fsm.catalog.services[&(name.clone(), "consul".to_string())];
        assert_eq!(consul.port, 8300);
        assert_eq!(fsm.catalog.node_checks(&name).count(), 0);
        assert_eq!(diff(&agent, &fsm.catalog), Vec::new());
    }

    #[test]
    fn schedule_scales_and_retries() {
        assert_eq!(scale_factor(1), 1);
        assert_eq!(scale_factor(128), 1);
        assert_eq!(scale_factor(129), 2);
        assert_eq!(scale_factor(256), 2);
        assert_eq!(scale_factor(257), 3);
        assert_eq!(scale_factor(4096), 6);
        let start = Instant::from_nanos(1_000);
        let mut schedule = SyncSchedule::new(start, SYNC_INTERVAL, 7);
        assert!(schedule.is_due(start));
        schedule.synced(start, 1);
        let wait = schedule.next().saturating_duration_since(start);
        assert!(wait >= SYNC_INTERVAL && wait < SYNC_INTERVAL.saturating_mul(2));
        schedule.synced(start, 1000);
        let wait = schedule.next().saturating_duration_since(start);
        assert!(wait >= SYNC_INTERVAL.saturating_mul(4), "{wait:?}");
        schedule.failed(start, 1);
        let wait = schedule.next().saturating_duration_since(start);
        assert!(wait >= SYNC_RETRY && wait < SYNC_RETRY.saturating_mul(2));
    }
}

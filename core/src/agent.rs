//! The agent's own services and checks (Consul's `agent/local` state plus
//! the check scheduler of `agent/checks`).
//!
//! The agent is authoritative for its node: every change here becomes a
//! catalog registration to propose. Time-driven decisions are made here from
//! `now`: TTL checks expire to critical (`TTL expired`), probe checks come
//! due ([`crate::checks`]), services whose check stayed critical longer than
//! `deregister_critical_service_after` are removed (Consul's reaper).
//!
//! Driving contract: call methods with `now`, then drain
//! [`LocalAgent::poll`] for commands to propose and probes to run; call
//! `handle_timeout(now)` at `poll_timeout`, and hand every probe's result
//! back through [`LocalAgent::on_result`].

use crate::catalog::{Check, CheckDefinition, CheckStatus, Node, Registration, Service};
use crate::checks::{CheckKind, CheckSpec, Counters, RunRequest, Schedule};
use crate::command::Command;
use crate::limits::{AGENT_SERVICES_MAX, CHECK_DEREGISTER_AFTER_MIN, CHECK_OUTPUT_BYTES_MAX};
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// The built-in node health check every agent registers.
pub const SERF_HEALTH_CHECK_ID: &str = "serfHealth";
/// serfHealth's name and outputs (Consul's `structs.SerfCheckName`,
/// `SerfCheckAliveOutput`, `SerfCheckFailedOutput`).
pub const SERF_HEALTH_CHECK_NAME: &str = "Serf Health Status";
pub const SERF_CHECK_ALIVE_OUTPUT: &str = "Agent alive and reachable";
pub const SERF_CHECK_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// The service every server registers for itself.
pub const CONSUL_SERVICE: &str = "consul";
/// Maintenance mode checks (Consul's `structs.NodeMaint` and
/// `ServiceMaintPrefix`).
pub const NODE_MAINTENANCE_CHECK_ID: &str = "_node_maintenance";
pub const SERVICE_MAINTENANCE_CHECK_PREFIX: &str = "_service_maintenance:";
const DEFAULT_NODE_MAINTENANCE_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_MAINTENANCE_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    UnknownService(String),
    UnknownCheck(String),
    NotTtl(String),
    TooMany,
    ServiceUnknownForCheck(String),
    /// Script checks while neither `enable_script_checks` nor
    /// `enable_local_script_checks` is set.
    ScriptsDisabled,
    /// Script checks from a remote API caller with only
    /// `enable_local_script_checks`.
    ScriptsDisabledRemote,
    /// Maintenance mode for a service this agent does not have.
    NoServiceForMaintenance(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::UnknownService(id) => write!(
                f,
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
            ),
            AgentError::UnknownCheck(id) => write!(
                f,
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            ),
            AgentError::NotTtl(id) => write!(f, "CheckID {id:?} does not have associated TTL"),
            AgentError::TooMany => f.write_str("Too many services or checks on this agent"),
            AgentError::ServiceUnknownForCheck(id) => {
                write!(f, "ServiceID {id:?} does not exist")
            }
            AgentError::ScriptsDisabled => f.write_str(
                "Scripts are disabled on this agent; to enable, configure \
                 'enable_script_checks' or 'enable_local_script_checks' to true",
            ),
            AgentError::ScriptsDisabledRemote => f.write_str(
                "Scripts are disabled on this agent from remote calls; to enable, \
                 configure 'enable_script_checks' to true",
            ),
            AgentError::NoServiceForMaintenance(id) => {
                write!(f, "No service registered with ID {id:?}")
            }
        }
    }
}

/// Where a service or check registration came from. Config-file entries
/// are the ones a reload replaces; API entries survive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    ConfigFile,
    /// `loopback`: the HTTP caller connected from a loopback address.
    Api {
        loopback: bool,
    },
}

/// Which script checks may be registered (`enable_script_checks`,
/// `enable_local_script_checks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScriptPolicy {
    #[default]
    Disabled,
    /// Only from config files and loopback API callers.
    LocalOnly,
    Enabled,
}

impl ScriptPolicy {
    fn allows(self, origin: Origin) -> Result<(), AgentError> {
        match (self, origin) {
            (ScriptPolicy::Enabled, _)
            | (ScriptPolicy::LocalOnly, Origin::ConfigFile | Origin::Api { loopback: true }) => {
                Ok(())
            }
            (ScriptPolicy::LocalOnly, _) => Err(AgentError::ScriptsDisabledRemote),
            (ScriptPolicy::Disabled, _) => Err(AgentError::ScriptsDisabled),
        }
    }
}

/// What the agent wants done: a catalog write, or a probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOutput {
    Propose(Command),
    Run(RunRequest),
}

/// A check the agent owns, with its timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCheck {
    pub check: Check,
    /// The registration it came from (reload compares these).
    pub spec: CheckSpec,
    pub origin: Origin,
    /// TTL expiry.
    pub deadline: Option<Instant>,
    pub schedule: Schedule,
    counters: Counters,
    /// Since when the check has been critical (for the reaper).
    critical_since: Option<Instant>,
}

impl LocalCheck {
    pub fn ttl(&self) -> Option<Duration> {
        self.spec.ttl()
    }

    /// When the reaper removes this check's service, if it stays critical.
    fn reap_at(&self) -> Option<Instant> {
        let after = self.spec.deregister_critical_service_after?;
        if self.check.service_id.is_empty() {
            return None;
        }
        Some(self.critical_since? + after.max(CHECK_DEREGISTER_AFTER_MIN))
    }
}

#[derive(Debug)]
pub struct LocalAgent {
    node: Node,
    services: BTreeMap<String, (Service, Origin)>,
    checks: BTreeMap<String, LocalCheck>,
    outputs: VecDeque<AgentOutput>,
    /// Check rows changed by the current operation, flushed as one
    /// registration.
    changed: BTreeMap<String, Check>,
    rng: Rng,
    next_run: u64,
    scripts: ScriptPolicy,
    /// The latest `now` seen, for changes made by calls without a clock
    /// (alias re-evaluation after a removal).
    now: Instant,
    /// What `register_node`/`register_node_in_pool` registered besides
    /// local services and checks (`serfHealth` for an agent without gossip,
    /// and `consul` on servers): anti-entropy keeps them too.
    system_service: Option<Service>,
    system_checks: Vec<Check>,
}

pub(crate) fn truncate_output(mut output: String) -> String {
    if output.len() > CHECK_OUTPUT_BYTES_MAX {
        let mut end = CHECK_OUTPUT_BYTES_MAX;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    output
}

impl LocalAgent {
    /// An agent for `node`; `seed` drives check staggering.
    pub fn new(node: Node, seed: u64) -> LocalAgent {
        LocalAgent {
            node,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            outputs: VecDeque::new(),
            changed: BTreeMap::new(),
            rng: Rng::from_seed(seed),
            next_run: 0,
            scripts: ScriptPolicy::Disabled,
            now: Instant::default(),
            system_service: None,
            system_checks: Vec::new(),
        }
    }

    pub fn set_script_policy(&mut self, policy: ScriptPolicy) {
        self.scripts = policy;
    }

    pub fn node(&self) -> &Node {
        &self.node
    }
    pub fn services(&self) -> impl Iterator<Item = (&String, &Service)> + '_ {
        self.services.iter().map(|(id, (s, _))| (id, s))
    }
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.get(id).map(|(s, _)| s)
    }
    pub fn checks(&self) -> &BTreeMap<String, LocalCheck> {
        &self.checks
    }

    fn registration(&self, service: Option<Service>, checks: Vec<Check>) -> Command {
        Command::Register(Box::new(Registration {
            node: self.node.clone(),
            skip_node_update: false,
            service,
            checks,
        }))
    }

    fn propose(&mut self, command: Command) {
        self.outputs.push_back(AgentOutput::Propose(command));
    }

    /// Registers the node itself with a passing `serfHealth` check: for an
    /// agent without gossip (`-dev`), which is alive by definition while it
    /// runs and so reports its own liveness. A server also registers the
    /// `consul` service on its RPC port, as Consul servers do; it is not an
    /// agent-local service.
    pub fn register_node(&mut self, server_port: Option<u16>) {
        let check = serf_health_check(
            &self.node.name,
            CheckStatus::Passing,
            SERF_CHECK_ALIVE_OUTPUT,
        );
        self.register_system(server_port, vec![check]);
    }

    /// Registers the node (and a server's `consul` service) WITHOUT the
    /// `serfHealth` check: for an agent in a gossip pool, whose liveness is
    /// the leader's to judge from gossip ([`crate::reconcile`]), as in
    /// Consul. Anti-entropy leaves the leader's `serfHealth` alone.
    pub fn register_node_in_pool(&mut self, server_port: Option<u16>) {
        self.register_system(server_port, Vec::new());
    }

    fn register_system(&mut self, server_port: Option<u16>, checks: Vec<Check>) {
        let service = server_port.map(|port| consul_service(&self.node.name, port));
        self.system_service = service.clone();
        self.system_checks = checks.clone();
        let command = self.registration(service, checks);
        self.propose(command);
    }

    /// The services this agent's node should have in the catalog: its
    /// local services plus the server's `consul` service.
    pub fn desired_services(&self) -> impl Iterator<Item = &Service> + '_ {
        self.services
            .values()
            .map(|(s, _)| s)
            .chain(self.system_service.iter())
    }

    /// The checks this agent's node should have in the catalog.
    pub fn desired_checks(&self) -> impl Iterator<Item = &Check> + '_ {
        self.checks
            .values()
            .map(|c| &c.check)
            .chain(self.system_checks.iter())
    }

    fn check_allowed(&self, spec: &CheckSpec, origin: Origin) -> Result<(), AgentError> {
        if spec.is_script() {
            self.scripts.allows(origin)?;
        }
        Ok(())
    }

    /// Adds or replaces a service with its checks. Nothing changes when any
    /// check is refused.
    pub fn add_service(
        &mut self,
        now: Instant,
        mut service: Service,
        checks: Vec<CheckSpec>,
        origin: Origin,
    ) -> Result<(), AgentError> {
        let is_new = !self.services.contains_key(&service.id);
        if is_new && self.services.len() + self.checks.len() + checks.len() >= AGENT_SERVICES_MAX {
            return Err(AgentError::TooMany);
        }
        for spec in &checks {
            self.check_allowed(spec, origin)?;
        }
        service.node = self.node.name.clone();
        self.services
            .insert(service.id.clone(), (service.clone(), origin));
        let mut rows = Vec::new();
        for spec in checks {
            rows.push(self.store_check(now, spec, origin));
        }
        let command = self.registration(Some(service), rows);
        self.propose(command);
        self.refresh_aliases();
        self.flush();
        Ok(())
    }

    fn store_check(&mut self, now: Instant, spec: CheckSpec, origin: Origin) -> Check {
        self.now = self.now.max(now);
        let mut check = spec.check.clone();
        check.node = self.node.name.clone();
        check.output = truncate_output(std::mem::take(&mut check.output));
        if let Some((service, _)) = self.services.get(&check.service_id) {
            check.service_name = service.name.clone();
            check.service_tags = service.tags.clone();
        }
        let deadline = spec.ttl().map(|ttl| now + ttl);
        let schedule = match spec.kind {
            CheckKind::Probe(_) => {
                let interval = spec.effective_interval();
                // Consul's lib.RandomStagger: the first run lands anywhere
                // in the first interval, so checks registered together do
                // not all fire at once.
                let stagger = Duration::from_nanos(self.rng.below(interval.as_nanos()));
                Schedule::first(now, stagger)
            }
            _ => Schedule::default(),
        };
        let local = LocalCheck {
            counters: Counters::new(&spec.thresholds),
            critical_since: check.status.is_critical().then_some(now),
            check: check.clone(),
            spec,
            origin,
            deadline,
            schedule,
        };
        self.changed.remove(&check.check_id);
        self.checks.insert(check.check_id.clone(), local);
        check
    }

    pub fn remove_service(&mut self, id: &str) -> Result<(), AgentError> {
        if self.services.remove(id).is_none() {
            return Err(AgentError::UnknownService(id.to_string()));
        }
        self.checks.retain(|_, c| c.check.service_id != id);
        self.changed.retain(|_, c| c.service_id != id);
        let command = Command::Deregister {
            node: self.node.name.clone(),
            service_id: Some(id.to_string()),
            check_id: None,
        };
        self.propose(command);
        self.refresh_aliases();
        self.flush();
        Ok(())
    }

    pub fn add_check(
        &mut self,
        now: Instant,
        spec: CheckSpec,
        origin: Origin,
    ) -> Result<(), AgentError> {
        let service_id = &spec.check.service_id;
        if !service_id.is_empty() && !self.services.contains_key(service_id) {
            return Err(AgentError::ServiceUnknownForCheck(service_id.clone()));
        }
        if !self.checks.contains_key(&spec.check.check_id)
            && self.services.len() + self.checks.len() >= AGENT_SERVICES_MAX
        {
            return Err(AgentError::TooMany);
        }
        self.check_allowed(&spec, origin)?;
        let row = self.store_check(now, spec, origin);
        let command = self.registration(None, vec![row]);
        self.propose(command);
        self.refresh_aliases();
        self.flush();
        Ok(())
    }

    pub fn remove_check(&mut self, id: &str) -> Result<(), AgentError> {
        if self.checks.remove(id).is_none() {
            return Err(AgentError::UnknownCheck(id.to_string()));
        }
        self.changed.remove(id);
        let command = Command::Deregister {
            node: self.node.name.clone(),
            service_id: None,
            check_id: Some(id.to_string()),
        };
        self.propose(command);
        self.refresh_aliases();
        self.flush();
        Ok(())
    }

    /// Sets a check's status and output; records the row for the next
    /// registration only when something changed.
    fn set_status(&mut self, now: Instant, id: &str, status: CheckStatus, output: String) {
        self.now = self.now.max(now);
        let Some(local) = self.checks.get_mut(id) else {
            return;
        };
        let output = truncate_output(output);
        if status.is_critical() {
            local.critical_since.get_or_insert(now);
        } else {
            local.critical_since = None;
        }
        if local.check.status == status && local.check.output == output {
            return;
        }
        local.check.status = status;
        local.check.output = output;
        self.changed.insert(id.to_string(), local.check.clone());
    }

    /// Proposes the rows changed since the last flush, in one registration.
    fn flush(&mut self) {
        if self.changed.is_empty() {
            return;
        }
        let rows: Vec<Check> = std::mem::take(&mut self.changed).into_values().collect();
        let command = self.registration(None, rows);
        self.propose(command);
    }

    /// `/v1/agent/check/pass|warn|fail|update`: sets a TTL check's status
    /// and re-arms its timer.
    pub fn update_ttl(
        &mut self,
        now: Instant,
        id: &str,
        status: CheckStatus,
        output: String,
    ) -> Result<(), AgentError> {
        let local = self
            .checks
            .get_mut(id)
            .ok_or_else(|| AgentError::UnknownCheck(id.to_string()))?;
        let ttl = local
            .ttl()
            .ok_or_else(|| AgentError::NotTtl(id.to_string()))?;
        local.deadline = Some(now + ttl);
        self.set_status(now, id, status, output);
        self.refresh_aliases();
        self.flush();
        Ok(())
    }

    /// A probe's result. Results of runs this agent is not waiting for
    /// (the check was replaced or removed meanwhile) are ignored.
    pub fn on_result(
        &mut self,
        now: Instant,
        id: &str,
        run: u64,
        result: CheckStatus,
        output: String,
    ) {
        let Some(local) = self.checks.get_mut(id) else {
            return;
        };
        let interval = local.spec.effective_interval();
        if !local.schedule.finish(now, run, interval) {
            return;
        }
        let thresholds = local.spec.thresholds;
        if let Some(status) = local.counters.observe(&thresholds, result) {
            self.set_status(now, id, status, output);
        }
        self.refresh_aliases();
        self.flush();
    }

    /// TTL expiries, due probes and the critical-service reaper.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut expired = Vec::new();
        let mut due = Vec::new();
        let mut reap = BTreeSet::new();
        for (id, local) in &mut self.checks {
            if local.deadline.is_some_and(|d| d <= now) {
                local.deadline = None;
                expired.push(id.clone());
            }
            if local.schedule.next_due.is_some_and(|d| d <= now) {
                due.push(id.clone());
            }
            if local.reap_at().is_some_and(|at| at <= now) {
                reap.insert(local.check.service_id.clone());
            }
        }
        for id in expired {
            self.set_status(now, &id, CheckStatus::Critical, "TTL expired".into());
        }
        for id in due {
            self.start_run(now, &id);
        }
        self.refresh_aliases();
        self.flush();
        for service_id in reap {
            // Consul's reaper: "removed check associated with service ...
            // has been critical for too long".
            let _ = self.remove_service(&service_id);
        }
    }

    fn start_run(&mut self, now: Instant, id: &str) {
        let run = self.next_run + 1;
        let Some(local) = self.checks.get_mut(id) else {
            return;
        };
        let CheckKind::Probe(probe) = &local.spec.kind else {
            return;
        };
        if local.schedule.start(now, run) {
            self.next_run = run;
            let request = RunRequest {
                check_id: id.to_string(),
                run,
                probe: probe.clone(),
                timeout: local.spec.timeout,
            };
            self.outputs.push_back(AgentOutput::Run(request));
        }
    }

    /// Re-evaluates alias checks from the local checks (Consul's
    /// `CheckAlias.processChecks` over local state). Alias checks ignore
    /// other alias checks, so evaluation cannot loop.
    fn refresh_aliases(&mut self) {
        let aliases: Vec<(String, String, String)> = self
            .checks
            .iter()
            .filter_map(|(id, c)| match &c.spec.kind {
                CheckKind::Alias { service, node } => {
                    Some((id.clone(), service.clone(), node.clone()))
                }
                _ => None,
            })
            .collect();
        for (id, service, node) in aliases {
            let (status, output) = self.alias_status(&id, &service, &node);
            self.set_status(self.now, &id, status, output);
        }
    }

    fn alias_status(&self, own_id: &str, service: &str, node: &str) -> (CheckStatus, String) {
        if !node.is_empty() && node != self.node.name {
            return (
                CheckStatus::Critical,
                format!("Aliasing checks of other nodes ({node}) is not supported yet"),
            );
        }
        if !service.is_empty() && !self.services.contains_key(service) {
            let name = &self.node.name;
            return (
                CheckStatus::Critical,
                format!("Service {service} could not be found on node {name}"),
            );
        }
        let mut status = CheckStatus::Passing;
        let mut output = "No checks found.".to_string();
        let relevant = self.checks.iter().filter(|(id, c)| {
            id.as_str() != own_id
                && !matches!(c.spec.kind, CheckKind::Alias { .. })
                && (c.check.service_id.is_empty() || c.check.service_id == service)
        });
        for (_, c) in relevant {
            match c.check.status {
                s if s.is_critical() || s == CheckStatus::Warning => {
                    status = if s == CheckStatus::Warning {
                        s
                    } else {
                        CheckStatus::Critical
                    };
                    output = format!(
                        "Aliased check {:?} failing: {}",
                        c.check.name, c.check.output
                    );
                    if status == CheckStatus::Critical {
                        break;
                    }
                }
                _ if status == CheckStatus::Passing => output = "All checks passing.".into(),
                _ => {}
            }
        }
        (status, output)
    }

    /// `PUT /v1/agent/maintenance?enable=true`: a critical node check.
    pub fn enable_node_maintenance(&mut self, now: Instant, reason: &str) {
        if self.checks.contains_key(NODE_MAINTENANCE_CHECK_ID) {
            return;
        }
        let reason = if reason.is_empty() {
            DEFAULT_NODE_MAINTENANCE_REASON
        } else {
            reason
        };
        let check = maintenance_check(
            NODE_MAINTENANCE_CHECK_ID,
            "Node Maintenance Mode",
            "",
            reason,
        );
        let row = self.store_check(now, CheckSpec::fixed(check), Origin::Api { loopback: true });
        let command = self.registration(None, vec![row]);
        self.propose(command);
        self.refresh_aliases();
        self.flush();
    }

    pub fn disable_node_maintenance(&mut self) {
        let _ = self.remove_check(NODE_MAINTENANCE_CHECK_ID);
    }

    /// `PUT /v1/agent/service/maintenance/<id>?enable=true`.
    pub fn enable_service_maintenance(
        &mut self,
        now: Instant,
        service_id: &str,
        reason: &str,
    ) -> Result<(), AgentError> {
        if !self.services.contains_key(service_id) {
            return Err(AgentError::NoServiceForMaintenance(service_id.to_string()));
        }
        let id = format!("{SERVICE_MAINTENANCE_CHECK_PREFIX}{service_id}");
        if self.checks.contains_key(&id) {
            return Ok(());
        }
        let reason = if reason.is_empty() {
            DEFAULT_SERVICE_MAINTENANCE_REASON
        } else {
            reason
        };
        let check = maintenance_check(&id, "Service Maintenance Mode", service_id, reason);
        self.add_check(now, CheckSpec::fixed(check), Origin::Api { loopback: true })
    }

    pub fn disable_service_maintenance(&mut self, service_id: &str) -> Result<(), AgentError> {
        if !self.services.contains_key(service_id) {
            return Err(AgentError::NoServiceForMaintenance(service_id.to_string()));
        }
        let _ = self.remove_check(&format!("{SERVICE_MAINTENANCE_CHECK_PREFIX}{service_id}"));
        Ok(())
    }

    /// Makes the config-file services and checks match `services` and
    /// `checks` (a reload): removes those no longer defined, adds new ones,
    /// replaces changed ones, and leaves identical ones (and their status)
    /// alone. API registrations are kept.
    pub fn reload(
        &mut self,
        now: Instant,
        services: Vec<(Service, Vec<CheckSpec>)>,
        checks: Vec<CheckSpec>,
    ) -> Result<(), AgentError> {
        for spec in services.iter().flat_map(|(_, c)| c).chain(&checks) {
            self.check_allowed(spec, Origin::ConfigFile)?;
        }
        let wanted_services: BTreeSet<&str> = services.iter().map(|(s, _)| s.id.as_str()).collect();
        let wanted_checks: BTreeSet<&str> = services
            .iter()
            .flat_map(|(_, c)| c)
            .chain(&checks)
            .map(|c| c.check.check_id.as_str())
            .collect();
        let gone_services: Vec<String> = self
            .services
            .iter()
            .filter(|(id, (_, o))| {
                *o == Origin::ConfigFile && !wanted_services.contains(id.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone_services {
            self.remove_service(&id)?;
        }
        let gone_checks: Vec<String> = self
            .checks
            .iter()
            .filter(|(id, c)| {
                c.origin == Origin::ConfigFile && !wanted_checks.contains(id.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone_checks {
            self.remove_check(&id)?;
        }
        for (service, specs) in services {
            let same_service = self.services.get(&service.id).is_some_and(|(s, o)| {
                *o == Origin::ConfigFile && same_service_definition(s, &service)
            });
            let same_checks = specs.iter().all(|spec| self.has_same_check(spec));
            if !(same_service && same_checks) {
                self.add_service(now, service, specs, Origin::ConfigFile)?;
            }
        }
        for spec in checks {
            if !self.has_same_check(&spec) {
                self.add_check(now, spec, Origin::ConfigFile)?;
            }
        }
        Ok(())
    }

    fn has_same_check(&self, spec: &CheckSpec) -> bool {
        self.checks
            .get(&spec.check.check_id)
            .is_some_and(|c| c.origin == Origin::ConfigFile && c.spec == *spec)
    }

    pub fn poll(&mut self) -> Option<AgentOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.checks
            .values()
            .flat_map(|c| [c.deadline, c.schedule.next_due, c.reap_at()])
            .flatten()
            .min()
    }

    /// Panics on a broken internal assumption (the simulator calls this).
    pub fn check_invariants(&self) {
        for (id, c) in &self.checks {
            assert_eq!(id, &c.check.check_id, "check stored under another ID");
            assert!(
                c.check.service_id.is_empty() || self.services.contains_key(&c.check.service_id),
                "check {id} bound to a missing service"
            );
            assert!(c.check.output.len() <= CHECK_OUTPUT_BYTES_MAX);
            if let CheckKind::Probe(_) = c.spec.kind {
                assert!(
                    c.schedule.next_due.is_some() != c.schedule.in_flight.is_some(),
                    "probe {id} must be either scheduled or running"
                );
            }
        }
    }
}

/// The `serfHealth` row of `node`, as the dev agent reports it for itself
/// and the leader writes it from gossip.
pub fn serf_health_check(node: &str, status: CheckStatus, output: &str) -> Check {
    Check {
        node: node.to_string(),
        check_id: SERF_HEALTH_CHECK_ID.into(),
        name: SERF_HEALTH_CHECK_NAME.into(),
        status,
        notes: String::new(),
        output: output.to_string(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        definition: CheckDefinition::default(),
        create_index: 0,
        modify_index: 0,
    }
}

/// The `consul` service of server `node` on its RPC `port`, as the server's
/// agent registers it and the leader writes it from gossip (the same row,
/// so the two never undo each other).
pub fn consul_service(node: &str, port: u16) -> Service {
    Service {
        node: node.to_string(),
        id: CONSUL_SERVICE.into(),
        name: CONSUL_SERVICE.into(),
        kind: String::new(),
        tags: Vec::new(),
        address: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: [("raft_version".to_string(), "3".to_string())]
            .into_iter()
            .collect(),
        port,
        weights: Default::default(),
        enable_tag_override: false,
        create_index: 0,
        modify_index: 0,
    }
}

fn same_service_definition(a: &Service, b: &Service) -> bool {
    let strip = |s: &Service| Service {
        node: String::new(),
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    };
    strip(a) == strip(b)
}

fn maintenance_check(id: &str, name: &str, service_id: &str, reason: &str) -> Check {
    Check {
        node: String::new(),
        check_id: id.to_string(),
        name: name.to_string(),
        status: CheckStatus::Critical,
        notes: reason.to_string(),
        output: String::new(),
        service_id: service_id.to_string(),
        service_name: String::new(),
        service_tags: Vec::new(),
        check_type: String::new(),
        definition: CheckDefinition::default(),
        create_index: 0,
        modify_index: 0,
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;

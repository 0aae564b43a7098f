//! The agent's own services and checks (Consul's `agent/local` state).
//!
//! The agent is authoritative for its node: every change here becomes a
//! catalog registration to propose. TTL checks expire to critical when not
//! updated in time (`TTL expired`), which is decided here from `now`.
//!
//! Driving contract: call methods with `now`, then drain [`LocalAgent::poll`]
//! for commands to propose; call `handle_timeout(now)` at `poll_timeout`.

use crate::catalog::{Check, CheckDefinition, CheckStatus, Node, Registration, Service};
use crate::command::Command;
use crate::limits::{AGENT_SERVICES_MAX, CHECK_OUTPUT_BYTES_MAX};
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The built-in node health check every agent registers.
pub const SERF_HEALTH_CHECK_ID: &str = "serfHealth";
/// The service every server registers for itself.
pub const CONSUL_SERVICE: &str = "consul";

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    UnknownService(String),
    UnknownCheck(String),
    NotTtl(String),
    TooMany,
    ServiceUnknownForCheck(String),
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
        }
    }
}

/// A check the agent owns, with its TTL timer when it is a TTL check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCheck {
    pub check: Check,
    pub ttl: Option<Duration>,
    pub deadline: Option<Instant>,
}

#[derive(Debug)]
pub struct LocalAgent {
    node: Node,
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, LocalCheck>,
    outputs: VecDeque<Command>,
}

fn truncate_output(mut output: String) -> String {
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
    pub fn new(node: Node) -> LocalAgent {
        LocalAgent {
            node,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }
    pub fn services(&self) -> &BTreeMap<String, Service> {
        &self.services
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

    /// Registers the node itself with a passing `serfHealth` check (until
    /// gossip exists, the agent is alive by definition while it runs). A
    /// server also registers the `consul` service on its RPC port, as Consul
    /// servers do; it is not an agent-local service.
    pub fn register_node(&mut self, server_port: Option<u16>) {
        let check = Check {
            node: self.node.name.clone(),
            check_id: SERF_HEALTH_CHECK_ID.into(),
            name: "Serf Health Status".into(),
            status: CheckStatus::Passing,
            notes: String::new(),
            output: "Agent alive and reachable".into(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: String::new(),
            definition: CheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        };
        let service = server_port.map(|port| Service {
            node: self.node.name.clone(),
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
        });
        let command = self.registration(service, vec![check]);
        self.outputs.push_back(command);
    }

    /// Adds or replaces a service with its checks.
    pub fn add_service(
        &mut self,
        now: Instant,
        mut service: Service,
        checks: Vec<(Check, Option<Duration>)>,
    ) -> Result<(), AgentError> {
        let is_new = !self.services.contains_key(&service.id);
        if is_new && self.services.len() + self.checks.len() + checks.len() >= AGENT_SERVICES_MAX {
            return Err(AgentError::TooMany);
        }
        service.node = self.node.name.clone();
        self.services.insert(service.id.clone(), service.clone());
        let mut rows = Vec::new();
        for (check, ttl) in checks {
            rows.push(self.store_check(now, check, ttl));
        }
        let command = self.registration(Some(service), rows);
        self.outputs.push_back(command);
        Ok(())
    }

    fn store_check(&mut self, now: Instant, mut check: Check, ttl: Option<Duration>) -> Check {
        check.node = self.node.name.clone();
        check.output = truncate_output(std::mem::take(&mut check.output));
        if let Some(service) = self.services.get(&check.service_id) {
            check.service_name = service.name.clone();
            check.service_tags = service.tags.clone();
        }
        let deadline = ttl.map(|ttl| now + ttl);
        self.checks.insert(
            check.check_id.clone(),
            LocalCheck {
                check: check.clone(),
                ttl,
                deadline,
            },
        );
        check
    }

    pub fn remove_service(&mut self, id: &str) -> Result<(), AgentError> {
        if self.services.remove(id).is_none() {
            return Err(AgentError::UnknownService(id.to_string()));
        }
        self.checks.retain(|_, c| c.check.service_id != id);
        self.outputs.push_back(Command::Deregister {
            node: self.node.name.clone(),
            service_id: Some(id.to_string()),
            check_id: None,
        });
        Ok(())
    }

    pub fn add_check(
        &mut self,
        now: Instant,
        check: Check,
        ttl: Option<Duration>,
    ) -> Result<(), AgentError> {
        if !check.service_id.is_empty() && !self.services.contains_key(&check.service_id) {
            return Err(AgentError::ServiceUnknownForCheck(check.service_id));
        }
        if !self.checks.contains_key(&check.check_id)
            && self.services.len() + self.checks.len() >= AGENT_SERVICES_MAX
        {
            return Err(AgentError::TooMany);
        }
        let row = self.store_check(now, check, ttl);
        let command = self.registration(None, vec![row]);
        self.outputs.push_back(command);
        Ok(())
    }

    pub fn remove_check(&mut self, id: &str) -> Result<(), AgentError> {
        if self.checks.remove(id).is_none() {
            return Err(AgentError::UnknownCheck(id.to_string()));
        }
        self.outputs.push_back(Command::Deregister {
            node: self.node.name.clone(),
            service_id: None,
            check_id: Some(id.to_string()),
        });
        Ok(())
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
            .ttl
            .ok_or_else(|| AgentError::NotTtl(id.to_string()))?;
        local.deadline = Some(now + ttl);
        let output = truncate_output(output);
        if local.check.status == status && local.check.output == output {
            return Ok(());
        }
        local.check.status = status;
        local.check.output = output;
        let row = local.check.clone();
        let command = self.registration(None, vec![row]);
        self.outputs.push_back(command);
        Ok(())
    }

    /// TTL checks whose deadline passed turn critical.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for local in self.checks.values_mut() {
            if local.deadline.is_some_and(|d| d <= now) {
                local.deadline = None;
                if local.check.status != CheckStatus::Critical {
                    local.check.status = CheckStatus::Critical;
                    local.check.output = "TTL expired".into();
                    expired.push(local.check.clone());
                }
            }
        }
        if !expired.is_empty() {
            let command = self.registration(None, expired);
            self.outputs.push_back(command);
        }
    }

    pub fn poll(&mut self) -> Option<Command> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.checks.values().filter_map(|c| c.deadline).min()
    }
}

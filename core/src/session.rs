//! Sessions (Consul's Chubby-style sessions): the table and its rules.
//!
//! Time-based parts (TTL expiry, lock-delay) are not here: they are decided
//! by the leader (`server.rs`) and arrive as commands, because apply must be
//! a pure function of the log.

use crate::ids::{RaftIndex, SessionId};
use crate::time::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happens to held keys when the session is invalidated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    #[default]
    Release,
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
    pub fn parse(text: &str) -> Option<Behavior> {
        match text {
            "" | "release" => Some(Behavior::Release),
            "delete" => Some(Behavior::Delete),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheckRef {
    pub id: String,
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub name: String,
    pub node: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheckRef>,
    pub lock_delay: Duration,
    pub behavior: Behavior,
    /// Zero means no TTL.
    pub ttl: Duration,
    pub create_index: RaftIndex,
    pub modify_index: RaftIndex,
}

impl Session {
    /// Every check ID whose failure invalidates this session.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.node_checks
            .iter()
            .map(String::as_str)
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    pub by_id: BTreeMap<SessionId, Session>,
}

impl Sessions {
    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.by_id.get(&id)
    }

    pub fn on_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.by_id.values().filter(move |s| s.node == node)
    }

    /// Sessions on `node` that depend on check `check_id`.
    pub fn depending_on(&self, node: &str, check_id: &str) -> Vec<SessionId> {
        self.on_node(node)
            .filter(|s| s.check_ids().any(|c| c == check_id))
            .map(|s| s.id)
            .collect()
    }
}

//! The agent's user events: the ring (`tribune_core::event`) plus a
//! version counter that wakes blocking `/v1/event/list` readers, firing,
//! and the task that takes events off the gossip pool.
//!
//! As in Consul, a fire on an agent with a serf pool (a server) goes out
//! as the serf user event `consul:event:<name>` (coalescing off) and is
//! recorded only when it comes back off the pool: serf hands a fired event
//! to the local agent as well, so every agent, the firing one included,
//! records it through the same filters ([`ingest`]), and once (the ring
//! drops a second delivery of an ID). An agent without a pool (`-dev`)
//! delivers what it fires to itself at once.

use crate::gossip::Gossip;
use crate::state::Node;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tribune_core::event::{Dropped, EventBuffer, Fire, Ingested, UserEvent};
use tribune_core::event_wire::{consul_event_name, decode_user_event};
use tribune_core::gossip::{SerfEvent, UserEventRecord};

pub struct Events {
    buffer: Mutex<EventBuffer>,
    version: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            buffer: Mutex::new(EventBuffer::default()),
            version: watch::Sender::new(0),
        }
    }
}

impl Events {
    fn buffer(&self) -> std::sync::MutexGuard<'_, EventBuffer> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Judges an event that reached this agent by its filters (Consul's
    /// `shouldProcessUserEvent`) and records it when they select `node`.
    pub fn deliver(&self, node: &Node, event: UserEvent) {
        let (name, id) = (event.name.clone(), event.id);
        let filters = match event.filters() {
            Ok(filters) => filters,
            Err(e) => {
                self.buffer().count(Dropped::BadFilter);
                return crate::log::warn(&format!("agent: dropping event {name:?} ({id}): {e}"));
            }
        };
        let me = node.identity.node_name.as_str();
        let selected = node.read(|inner| {
            let services = inner.agent.services();
            filters.select(me, services.map(|(id, s)| (id.as_str(), s.tags.as_slice())))
        });
        if !selected {
            return self.buffer().count(Dropped::NotTargeted);
        }
        let ingested = self.buffer().ingest(event);
        match ingested {
            Ingested::Recorded => {
                crate::log::debug(&format!("agent: new event: {name} ({id})"));
                self.version.send_modify(|v| *v += 1);
            }
            Ingested::RemoteExec => crate::log::info(&format!(
                "agent: ignoring remote exec event ({id}): tribune has no remote exec"
            )),
            Ingested::Duplicate => {}
        }
    }

    /// The matching events as a JSON array, and the listing's index.
    pub fn list(&self, name: Option<&str>) -> (Vec<u8>, u64) {
        let buffer = self.buffer();
        let (events, index) = buffer.list(name);
        let rendered: Vec<_> = events.iter().map(|e| e.json()).collect();
        (serde_json::to_vec(&rendered).unwrap_or_default(), index)
    }

    /// A receiver that sees every later recorded event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// Fires an event from this agent, validated as Consul's agent does, and
/// returns its JSON (with `LTime` 0, as Consul's reply has: the Lamport
/// time is given on receipt). The error text is Consul's or serf's.
pub async fn fire(node: &Node, fire: Fire) -> Result<Vec<u8>, String> {
    let (event, wire) = fire.prepare(node.uuid()).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&event.json()).unwrap_or_default();
    match node.gossip().cloned() {
        Some(gossip) => gossip.user_event(&wire.name, &wire.payload, false).await?,
        None => {
            let ltime = node.events.buffer().next_ltime();
            node.events.deliver(node, UserEvent { ltime, ..event });
        }
    }
    Ok(json)
}

/// The task that takes Consul user events off the gossip pool for the
/// agent's ring, until the pool stops. It subscribes before returning, so
/// no event fired after the call is missed.
pub fn ingest(node: Arc<Node>, gossip: &Gossip) -> impl Future<Output = ()> + Send + 'static {
    let mut events = gossip.subscribe();
    async move {
        loop {
            match events.recv().await {
                Ok(SerfEvent::User(user)) => receive(&node, &user),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => crate::log::warn(&format!(
                    "agent: fell behind the gossip pool and missed {missed} of its events"
                )),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// One serf user event: other serf users' events are not ours, and a
/// payload that is not Consul's `UserEvent` is dropped and counted.
fn receive(node: &Node, user: &UserEventRecord) {
    if consul_event_name(&user.name).is_none() {
        return;
    }
    match decode_user_event(&user.payload, user.ltime) {
        Ok(event) => node.events.deliver(node, event),
        Err(e) => {
            node.events.buffer().count(Dropped::Malformed);
            crate::log::warn(&format!(
                "agent: failed to decode event {:?}: {e}",
                user.name
            ));
        }
    }
}

//! User events (`consul event`, `/v1/event/fire`, `/v1/event/list`): the
//! agent keeps the most recent ones in a ring, as Consul's agent does.
//!
//! Events are not replicated state: in Consul they travel by gossip and
//! each agent remembers what reached it. Until gossip lands, an agent
//! records the events fired through it. Listing indexes follow Consul:
//! not monotonic, derived from the last event's ID ([`id_index`]), and
//! 1 (never 0) when nothing matches, so watchers don't spin.

use crate::ids::Uuid;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;

/// Events remembered per agent (Consul's `userEventBufferSize`... 256).
pub const EVENT_BUFFER_LEN: usize = 256;
/// Largest payload (serf's `UserEventSizeLimit` default).
pub const EVENT_PAYLOAD_BYTES_MAX: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    pub id: Uuid,
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub ltime: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventError {
    MissingName,
    TooLarge(usize),
    /// Consul refuses a tag filter without a service filter.
    TagWithoutService,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::MissingName => f.write_str("Missing name"),
            EventError::TooLarge(n) => write!(
                f,
                "user event exceeds configured limit of {EVENT_PAYLOAD_BYTES_MAX} bytes before encoding ({n} bytes)"
            ),
            EventError::TagWithoutService => {
                f.write_str("Cannot provide tag filter without service filter.")
            }
        }
    }
}

/// The event in Consul's JSON layout (`api.UserEvent`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEventJson<'a> {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: &'a str,
    pub payload: Option<String>,
    pub node_filter: &'a str,
    pub service_filter: &'a str,
    pub tag_filter: &'a str,
    pub version: u8,
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

impl UserEvent {
    pub fn json(&self) -> UserEventJson<'_> {
        UserEventJson {
            id: self.id.to_string(),
            name: &self.name,
            payload: (!self.payload.is_empty()).then(|| BASE64.encode(&self.payload)),
            node_filter: &self.node_filter,
            service_filter: &self.service_filter,
            tag_filter: &self.tag_filter,
            version: 1,
            ltime: self.ltime,
        }
    }
}

/// A request to fire an event.
#[derive(Clone, Debug, Default)]
pub struct Fire {
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
}

/// The agent's recent events, oldest first.
#[derive(Debug, Default)]
pub struct EventBuffer {
    events: VecDeque<UserEvent>,
    ltime: u64,
}

impl EventBuffer {
    /// Records a new event with `id`; the oldest falls out when full.
    pub fn fire(&mut self, id: Uuid, fire: Fire) -> Result<&UserEvent, EventError> {
        if fire.name.is_empty() {
            return Err(EventError::MissingName);
        }
        if fire.payload.len() > EVENT_PAYLOAD_BYTES_MAX {
            return Err(EventError::TooLarge(fire.payload.len()));
        }
        if !fire.tag_filter.is_empty() && fire.service_filter.is_empty() {
            return Err(EventError::TagWithoutService);
        }
        self.ltime += 1;
        if self.events.len() == EVENT_BUFFER_LEN {
            self.events.pop_front();
        }
        self.events.push_back(UserEvent {
            id,
            name: fire.name,
            payload: fire.payload,
            node_filter: fire.node_filter,
            service_filter: fire.service_filter,
            tag_filter: fire.tag_filter,
            ltime: self.ltime,
        });
        Ok(&self.events[self.events.len() - 1])
    }

    /// Events named `name` (all when `None`), oldest first, and the
    /// listing's index.
    pub fn list(&self, name: Option<&str>) -> (Vec<&UserEvent>, u64) {
        let events: Vec<&UserEvent> = self
            .events
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .collect();
        let index = events.last().map_or(1, |e| id_index(&e.id.to_string()));
        (events, index)
    }
}

/// Consul's `uuidToUint64`: the UUID's first 16 hex digits XOR its last
/// 16. Returns 0 for text that is not a UUID.
pub fn id_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return 0;
    }
    let high = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let low = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    high ^ low
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn fire(name: &str) -> Fire {
        Fire {
            name: name.into(),
            ..Fire::default()
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_filters_by_name() -> Result<(), EventError> {
        let mut rng = Rng::from_seed(7);
        let mut buffer = EventBuffer::default();
        assert_eq!(buffer.list(None), (Vec::new(), 1));
        for i in 0..EVENT_BUFFER_LEN + 10 {
            let name = if i % 2 == 0 { "deploy" } else { "other" };
            buffer.fire(rng.uuid(), fire(name))?;
        }
        let (all, index) = buffer.list(None);
        assert_eq!(all.len(), EVENT_BUFFER_LEN);
        assert_eq!(all[0].ltime, 11, "the ten oldest fell out");
        assert_eq!(index, id_index(&all[all.len() - 1].id.to_string()));
        let (deploys, _) = buffer.list(Some("deploy"));
        assert!(deploys.iter().all(|e| e.name == "deploy"));
        assert_eq!(deploys.len(), EVENT_BUFFER_LEN / 2);
        Ok(())
    }

    #[test]
    fn bad_events_are_refused() {
        let mut rng = Rng::from_seed(1);
        let mut buffer = EventBuffer::default();
        assert_eq!(
            buffer.fire(rng.uuid(), fire("")).map(|_| ()),
            Err(EventError::MissingName)
        );
        let big = Fire {
            payload: vec![0; EVENT_PAYLOAD_BYTES_MAX + 1],
            ..fire("x")
        };
        assert_eq!(
            buffer.fire(rng.uuid(), big).map(|_| ()),
            Err(EventError::TooLarge(EVENT_PAYLOAD_BYTES_MAX + 1))
        );
        let tag = Fire {
            tag_filter: "v1".into(),
            ..fire("x")
        };
        assert_eq!(
            buffer.fire(rng.uuid(), tag).map(|_| ()),
            Err(EventError::TagWithoutService)
        );
        assert_eq!(buffer.list(None).0.len(), 0);
    }

    #[test]
    fn id_index_matches_consul() {
        // high 0x0123456789abcdef ^ low 0xfedcba9876543210
        assert_eq!(
            id_index("01234567-89ab-cdef-fedc-ba9876543210"),
            0x0123_4567_89ab_cdef ^ 0xfedc_ba98_7654_3210
        );
        assert_eq!(id_index("nope"), 0);
        // Found by the coord_holders fuzzer: 32 bytes that are not 32 chars.
        assert_eq!(id_index("0123456789abcdef0123456789abcd\u{e9}"), 0);
    }
}

//! User events (`consul event`, `/v1/event/fire`, `/v1/event/list`): the
//! agent keeps the most recent ones in a ring, as Consul's agent does.
//!
//! Events are not replicated state: in Consul they travel by gossip and
//! each agent remembers what reached it. A server fires an event as a serf
//! user event (`crate::event_wire`), every agent of the pool (the firing
//! one included: serf delivers locally too) decodes it, keeps it when its
//! filters select this agent ([`UserEvent::targets`], Consul's
//! `shouldProcessUserEvent`) and records it here ([`EventBuffer::ingest`]).
//! An agent without a gossip pool (`-dev`) ingests what it fires directly.
//!
//! Listing indexes follow Consul: not monotonic, derived from the last
//! event's ID ([`id_index`]), and 1 (never 0) when nothing matches, so
//! watchers don't spin.

use crate::event_wire;
use crate::ids::Uuid;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use regex::{Regex, RegexBuilder};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;

/// Events remembered per agent (Consul's `userEventBufferSize`... 256).
pub const EVENT_BUFFER_LEN: usize = 256;
/// serf's `UserEventSizeLimit` (512 by default; Consul keeps it): the most
/// bytes of serf event name (`consul:event:<name>`) plus encoded event.
pub const EVENT_PAYLOAD_BYTES_MAX: usize = 512;
/// Event IDs remembered to drop a second delivery of the same event
/// (oldest forgotten first): four rings' worth, so an ID outlives its
/// event in the ring.
pub const EVENT_SEEN_IDS_MAX: usize = 4 * EVENT_BUFFER_LEN;
/// Largest compiled filter (the regex crate's `size_limit`). Filters come
/// from peers; this bounds what one can make an agent build. Go's RE2
/// bounds repetition instead (`{1001}` is an error there).
pub const EVENT_FILTER_REGEX_BYTES_MAX: usize = 1 << 20;
/// Consul's `userEventMaxVersion`: the version it writes; newer ones are
/// still processed (with a warning in Consul).
pub const EVENT_VERSION: i64 = 1;
/// Consul's `remoteExecName`: `consul exec` requests, never recorded.
pub const REMOTE_EXEC_EVENT: &str = "_rexec";

const _: () = assert!(EVENT_SEEN_IDS_MAX >= EVENT_BUFFER_LEN);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    pub id: Uuid,
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    /// Consul's `Version` (a Go `int`): [`EVENT_VERSION`] when fired here.
    pub version: i64,
    /// The serf Lamport time it arrived with (0 in a fire's reply, as
    /// Consul's `LTime` is set on receipt only).
    pub ltime: u64,
}

/// Which of an event's three filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Node,
    Service,
    Tag,
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterKind::Node => "node",
            FilterKind::Service => "service",
            FilterKind::Tag => "tag",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    MissingName,
    /// Serf name plus encoded event, over [`EVENT_PAYLOAD_BYTES_MAX`].
    TooLarge(usize),
    /// Consul refuses a tag filter without a service filter.
    TagWithoutService,
    /// A filter that is not a regular expression.
    InvalidFilter {
        kind: FilterKind,
        reason: String,
    },
}

/// The texts are Consul's `validateUserEventParams` and serf's, which the
/// HTTP API returns with a 500.
impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::MissingName => f.write_str("User event missing name"),
            EventError::TooLarge(_) => write!(
                f,
                "user event exceeds configured limit of {EVENT_PAYLOAD_BYTES_MAX} bytes before encoding"
            ),
            EventError::TagWithoutService => {
                f.write_str("Cannot provide tag filter without service filter")
            }
            EventError::InvalidFilter { kind, reason } => {
                write!(f, "Invalid {kind} filter: {reason}")
            }
        }
    }
}

/// Compiles one filter. The error reads like Go's (`error parsing regexp:
/// <what>: `<expr>``) with the regex crate's description of what.
pub fn compile_filter(kind: FilterKind, pattern: &str) -> Result<Regex, EventError> {
    RegexBuilder::new(pattern)
        .size_limit(EVENT_FILTER_REGEX_BYTES_MAX)
        .build()
        .map_err(|e| {
            let full = e.to_string();
            let what = full
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            EventError::InvalidFilter {
                kind,
                reason: format!("error parsing regexp: {what}: `{pattern}`"),
            }
        })
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
    pub version: i64,
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
            version: self.version,
            ltime: self.ltime,
        }
    }

    /// Consul's `shouldProcessUserEvent`: whether this agent (named
    /// `node`, running `services` as (service ID, tags)) is one the event
    /// is for. See [`EventFilters::select`]; a filter that does not
    /// compile selects nobody (Consul logs and drops the event).
    pub fn targets<'s>(
        &self,
        node: &str,
        services: impl IntoIterator<Item = (&'s str, &'s [String])>,
    ) -> Result<bool, EventError> {
        Ok(self.filters()?.select(node, services))
    }

    /// The event's filters, compiled (which can take a while for a big
    /// one, so the shell does it outside its locks).
    pub fn filters(&self) -> Result<EventFilters, EventError> {
        let compile = |kind, pattern: &str| {
            (!pattern.is_empty())
                .then(|| compile_filter(kind, pattern))
                .transpose()
        };
        Ok(EventFilters {
            node: compile(FilterKind::Node, &self.node_filter)?,
            service: compile(FilterKind::Service, &self.service_filter)?,
            tag: compile(FilterKind::Tag, &self.tag_filter)?,
        })
    }
}

/// An event's compiled filters (absent ones select everybody).
#[derive(Clone, Debug)]
pub struct EventFilters {
    node: Option<Regex>,
    service: Option<Regex>,
    tag: Option<Regex>,
}

impl EventFilters {
    /// The node filter must match the node name; the service filter some
    /// local service's ID (the key of Consul's local service map, not its
    /// name), and with a tag filter one of that same service's tags.
    /// Matches are unanchored, like Go's `MatchString`. A tag filter
    /// without a service filter is ignored, as in Consul.
    pub fn select<'s>(
        &self,
        node: &str,
        services: impl IntoIterator<Item = (&'s str, &'s [String])>,
    ) -> bool {
        if self.node.as_ref().is_some_and(|re| !re.is_match(node)) {
            return false;
        }
        let Some(service) = &self.service else {
            return true;
        };
        services.into_iter().any(|(id, tags)| {
            service.is_match(id)
                && self
                    .tag
                    .as_ref()
                    .is_none_or(|t| tags.iter().any(|tag| t.is_match(tag)))
        })
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

impl Fire {
    /// Consul's `validateUserEventParams` and serf's size check: the event
    /// with `id`, and what to give serf. `ltime` is 0 (set on receipt).
    pub fn prepare(self, id: Uuid) -> Result<(UserEvent, event_wire::SerfUserEvent), EventError> {
        if self.name.is_empty() {
            return Err(EventError::MissingName);
        }
        if !self.tag_filter.is_empty() && self.service_filter.is_empty() {
            return Err(EventError::TagWithoutService);
        }
        for (kind, pattern) in [
            (FilterKind::Node, &self.node_filter),
            (FilterKind::Service, &self.service_filter),
            (FilterKind::Tag, &self.tag_filter),
        ] {
            if !pattern.is_empty() {
                compile_filter(kind, pattern)?;
            }
        }
        let event = UserEvent {
            id,
            name: self.name,
            payload: self.payload,
            node_filter: self.node_filter,
            service_filter: self.service_filter,
            tag_filter: self.tag_filter,
            version: EVENT_VERSION,
            ltime: 0,
        };
        let wire = event_wire::to_serf(&event)?;
        Ok((event, wire))
    }
}

/// What [`EventBuffer::ingest`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    Recorded,
    /// Its ID was seen before (serf delivered it again).
    Duplicate,
    /// A `consul exec` request: tribune has no remote exec, so it is
    /// dropped, as Consul does with `disable_remote_exec`.
    RemoteExec,
}

/// Why an arriving event was not ingested, for [`EventBuffer::count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its payload is not Consul's `UserEvent`.
    Malformed,
    /// One of its filters does not compile.
    BadFilter,
    /// Its filters select other agents.
    NotTargeted,
}

/// What became of arriving events since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    pub recorded: u64,
    pub duplicates: u64,
    pub remote_exec: u64,
    pub malformed: u64,
    pub bad_filters: u64,
    pub not_targeted: u64,
}

/// The agent's recent events, oldest first.
#[derive(Debug, Default)]
pub struct EventBuffer {
    events: VecDeque<UserEvent>,
    /// The last Lamport time given to an event fired without gossip.
    ltime: u64,
    seen: BTreeSet<Uuid>,
    /// `seen` in arrival order, to forget the oldest.
    seen_order: VecDeque<Uuid>,
    stats: EventStats,
}

impl EventBuffer {
    /// Records an arriving event (Consul's `ingestUserEvent`) unless its
    /// ID was seen already; the oldest event falls out when full.
    pub fn ingest(&mut self, event: UserEvent) -> Ingested {
        if !self.remember(event.id) {
            self.stats.duplicates += 1;
            return Ingested::Duplicate;
        }
        if event.name == REMOTE_EXEC_EVENT {
            self.stats.remote_exec += 1;
            return Ingested::RemoteExec;
        }
        if self.events.len() == EVENT_BUFFER_LEN {
            self.events.pop_front();
        }
        self.events.push_back(event);
        self.stats.recorded += 1;
        Ingested::Recorded
    }

    /// An event fired where there is no gossip pool: it gets the next
    /// local Lamport time, as serf would give it one.
    pub fn next_ltime(&mut self) -> u64 {
        self.ltime += 1;
        self.ltime
    }

    /// Counts an arriving event that was dropped before [`Self::ingest`].
    pub fn count(&mut self, dropped: Dropped) {
        let counter = match dropped {
            Dropped::Malformed => &mut self.stats.malformed,
            Dropped::BadFilter => &mut self.stats.bad_filters,
            Dropped::NotTargeted => &mut self.stats.not_targeted,
        };
        *counter += 1;
    }

    pub fn stats(&self) -> EventStats {
        self.stats
    }

    /// True when `id` is new; remembers it.
    fn remember(&mut self, id: Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > EVENT_SEEN_IDS_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
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

    pub fn check_invariants(&self) {
        assert!(self.events.len() <= EVENT_BUFFER_LEN);
        assert_eq!(self.seen.len(), self.seen_order.len());
        assert!(self.seen.len() <= EVENT_SEEN_IDS_MAX);
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

    fn event(rng: &mut Rng, name: &str) -> UserEvent {
        fire(name).prepare(rng.uuid()).expect("valid").0
    }

    #[test]
    fn ring_keeps_the_newest_and_filters_by_name() {
        let mut rng = Rng::from_seed(7);
        let mut buffer = EventBuffer::default();
        assert_eq!(buffer.list(None), (Vec::new(), 1));
        for i in 0..EVENT_BUFFER_LEN + 10 {
            let name = if i % 2 == 0 { "deploy" } else { "other" };
            let e = UserEvent {
                ltime: buffer.next_ltime(),
                ..event(&mut rng, name)
            };
            assert_eq!(buffer.ingest(e), Ingested::Recorded);
        }
        let (all, index) = buffer.list(None);
        assert_eq!(all.len(), EVENT_BUFFER_LEN);
        assert_eq!(all[0].ltime, 11, "the ten oldest fell out");
        assert_eq!(index, id_index(&all[all.len() - 1].id.to_string()));
        let (deploys, _) = buffer.list(Some("deploy"));
        assert!(deploys.iter().all(|e| e.name == "deploy"));
        assert_eq!(deploys.len(), EVENT_BUFFER_LEN / 2);
        buffer.check_invariants();
    }

    #[test]
    fn a_second_delivery_of_an_id_is_dropped() {
        let mut rng = Rng::from_seed(3);
        let mut buffer = EventBuffer::default();
        let first = event(&mut rng, "deploy");
        assert_eq!(buffer.ingest(first.clone()), Ingested::Recorded);
        // The same ID again, even with another Lamport time (a push/pull
        // replaying serf's event buffer).
        let again = UserEvent {
            ltime: 9,
            ..first.clone()
        };
        assert_eq!(buffer.ingest(again), Ingested::Duplicate);
        assert_eq!(buffer.list(None).0, vec![&first]);
        // IDs are forgotten oldest first, after EVENT_SEEN_IDS_MAX others.
        for _ in 0..EVENT_SEEN_IDS_MAX {
            buffer.ingest(event(&mut rng, "other"));
        }
        assert_eq!(buffer.ingest(first), Ingested::Recorded);
        let stats = buffer.stats();
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.recorded, 2 + EVENT_SEEN_IDS_MAX as u64);
        buffer.check_invariants();
    }

    #[test]
    fn remote_exec_events_are_not_recorded() {
        let mut rng = Rng::from_seed(4);
        let mut buffer = EventBuffer::default();
        let exec = event(&mut rng, REMOTE_EXEC_EVENT);
        assert_eq!(buffer.ingest(exec), Ingested::RemoteExec);
        assert_eq!(buffer.list(None).0.len(), 0);
        // Other reserved-looking names are ordinary events, as in Consul.
        assert_eq!(buffer.ingest(event(&mut rng, "_mine")), Ingested::Recorded);
        assert_eq!(buffer.stats().remote_exec, 1);
    }

    #[test]
    fn bad_events_are_refused_with_consuls_texts() {
        let mut rng = Rng::from_seed(1);
        let refused = |f: Fire| f.prepare(Uuid::new(1)).map(|_| ()).unwrap_err();
        assert_eq!(refused(fire("")), EventError::MissingName);
        assert_eq!(refused(fire("")).to_string(), "User event missing name");
        let big = Fire {
            payload: vec![0; EVENT_PAYLOAD_BYTES_MAX],
            ..fire("x")
        };
        let err = refused(big);
        assert!(matches!(err, EventError::TooLarge(n) if n > EVENT_PAYLOAD_BYTES_MAX));
        assert_eq!(
            err.to_string(),
            "user event exceeds configured limit of 512 bytes before encoding"
        );
        let tag = Fire {
            tag_filter: "v1".into(),
            ..fire("x")
        };
        assert_eq!(
            refused(tag).to_string(),
            "Cannot provide tag filter without service filter"
        );
        let bad_regex = Fire {
            node_filter: "web(".into(),
            ..fire("x")
        };
        let err = refused(bad_regex);
        assert!(
            matches!(
                &err,
                EventError::InvalidFilter {
                    kind: FilterKind::Node,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("Invalid node filter: error parsing regexp: ")
                && text.ends_with(": `web(`"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        let (ok, wire) = fire("deploy").prepare(rng.uuid()).expect("valid");
        assert_eq!((ok.version, ok.ltime), (EVENT_VERSION, 0));
        assert_eq!(wire.name, "consul:event:deploy");
    }

    fn filtered(node: &str, service: &str, tag: &str) -> UserEvent {
        UserEvent {
            node_filter: node.into(),
            service_filter: service.into(),
            tag_filter: tag.into(),
            ..event(&mut Rng::from_seed(5), "deploy")
        }
    }

    #[test]
    fn filters_select_agents_like_consul() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (web, db) = (tags(&["v1", "primary"]), tags(&["v2"]));
        let services: Vec<(&str, &[String])> = vec![("web-1", &web), ("db", &db)];
        let on = |e: UserEvent, node: &str| e.targets(node, services.iter().copied()).unwrap();
        // No filters: everyone.
        assert!(on(filtered("", "", ""), "s1"));
        // Unanchored node regex against the node name.
        assert!(on(filtered("^s[12]$", "", ""), "s2"));
        assert!(!on(filtered("^s[12]$", "", ""), "s3"));
        assert!(on(filtered("1", "", ""), "node-10"));
        // The service filter matches a service ID; the tag filter a tag of
        // that same service.
        assert!(on(filtered("", "web", ""), "s1"));
        assert!(!on(filtered("", "^web$", ""), "s1"));
        assert!(on(filtered("", "web", "^prim"), "s1"));
        assert!(!on(filtered("", "web", "v2"), "s1"), "v2 belongs to db");
        assert!(on(filtered("", ".", "v2"), "s1"));
        // Both filters must pass.
        assert!(!on(filtered("s9", "web", ""), "s1"));
        // An agent without services is never selected by a service filter.
        assert!(!filtered("", ".*", "")
            .targets("s1", std::iter::empty())
            .unwrap());
        // A filter that does not compile (a peer is not validated by us).
        let err = filtered("", "(", "").targets("s1", services.iter().copied());
        assert!(matches!(
            err,
            Err(EventError::InvalidFilter {
                kind: FilterKind::Service,
                ..
            })
        ));
        let huge = filtered("a{1000}{1000}", "", "").targets("s1", std::iter::empty());
        assert!(huge.is_err(), "{huge:?}");
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

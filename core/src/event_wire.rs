//! Consul's user events on the serf pool: a serf user event named
//! `consul:event:<name>` whose payload is Consul's `agent.UserEvent`
//! struct in msgpack.
//!
//! Consul (agent/user_event.go) encodes with its own handle,
//! `msgpackHandleUserEvent = &codec.MsgpackHandle{RawToString: true,
//! WriteExt: true}` (consul-net-rpc/go-msgpack, a fork of go-msgpack
//! 0.5.5), so unlike memberlist's messages (see [`msgpack`]):
//! - strings of 32..=255 bytes are str8 (`0xd9`), so the 36-byte ID is
//!   `d9 24 ...`;
//! - `[]byte` (the payload) is bin (`c4 len ...`), never str;
//! - the struct is a map keyed by the codec tags, **sorted** bytewise
//!   (go-msgpack writes `sfip`, its fields sorted by encoded name):
//!   `ID`, `n`, `nf`, `p`, `sf`, `tf`, `v`. `ID`, `n` and `v` are always
//!   there; `p`, `nf`, `sf`, `tf` are `omitempty`. `LTime` is `codec:"-"`:
//!   it never travels and is taken from the serf event on receipt.
//!
//! Decoding reads what go-msgpack reads: str or bin for any of the
//! strings and the payload, every integer width for `v`, nil as zero,
//! unknown keys skipped, the last of duplicate keys winning, bytes after
//! the map ignored. Two refusals are tribune's own: a string that is not
//! UTF-8, and an `ID` that is not a UUID (every Consul writes a UUID from
//! `go-uuid`; tribune keys events by it). Any bytes give an event or an
//! error, never a panic (`fuzz/fuzz_targets/user_event.rs`).

use crate::event::{EventError, UserEvent, EVENT_PAYLOAD_BYTES_MAX};
use crate::gossip::msgpack::{
    read_value, write_bin, write_int, write_key, write_map_len, write_str_ext, Fields,
};
use crate::gossip::WireError;

/// Consul's `userEventPrefix`: the serf event name of a Consul user event.
pub const USER_EVENT_PREFIX: &str = "consul:event:";

/// The serf event name Consul fires `name` under.
pub fn serf_event_name(name: &str) -> String {
    format!("{USER_EVENT_PREFIX}{name}")
}

/// The Consul event name inside a serf event name, or `None` when the
/// serf event is not a Consul user event (another serf user's event).
pub fn consul_event_name(serf_name: &str) -> Option<&str> {
    serf_name.strip_prefix(USER_EVENT_PREFIX)
}

/// `event` as Consul's `encodeMsgPackUserEvent` writes it. `ltime` is not
/// written (Consul's `codec:"-"`).
pub fn encode_user_event(event: &UserEvent) -> Vec<u8> {
    let id = event.id.to_string();
    let optional = [
        ("nf", event.node_filter.as_bytes()),
        ("p", event.payload.as_slice()),
        ("sf", event.service_filter.as_bytes()),
        ("tf", event.tag_filter.as_bytes()),
    ];
    let present = optional.iter().filter(|(_, v)| !v.is_empty()).count();
    let mut out = Vec::with_capacity(64 + event.payload.len() + event.name.len());
    write_map_len(&mut out, 3 + present);
    write_key(&mut out, "ID");
    write_str_ext(&mut out, id.as_bytes());
    write_key(&mut out, "n");
    write_str_ext(&mut out, event.name.as_bytes());
    // Sorted: "n" < "nf" < "p" < "sf" < "tf" < "v".
    for (key, value) in optional {
        if value.is_empty() {
            continue;
        }
        write_key(&mut out, key);
        if key == "p" {
            write_bin(&mut out, value);
        } else {
            write_str_ext(&mut out, value);
        }
    }
    write_key(&mut out, "v");
    write_int(&mut out, event.version);
    out
}

/// Reads Consul's `UserEvent` from a serf event's payload; `ltime` is the
/// serf event's Lamport time (Consul's `msg.LTime = uint64(e.LTime)`).
pub fn decode_user_event(payload: &[u8], ltime: u64) -> Result<UserEvent, WireError> {
    let (value, _) = read_value(payload)?;
    if !matches!(value, crate::gossip::msgpack::Value::Map(_)) {
        return Err(WireError::Field {
            field: "UserEvent",
            reason: "expected a map",
        });
    }
    let fields = Fields::of(&value, "UserEvent")?;
    let id = fields.string("ID")?.parse().map_err(|_| WireError::Field {
        field: "ID",
        reason: "not a UUID",
    })?;
    Ok(UserEvent {
        id,
        name: fields.string("n")?,
        payload: fields.bytes("p")?,
        node_filter: fields.string("nf")?,
        service_filter: fields.string("sf")?,
        tag_filter: fields.string("tf")?,
        version: fields.int("v")?,
        ltime,
    })
}

/// A Consul user event as serf carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerfUserEvent {
    pub name: String,
    pub payload: Vec<u8>,
}

/// The serf event for `event`, refused when serf would refuse it: serf's
/// `UserEvent` checks the name plus the payload against its
/// `UserEventSizeLimit` (512 bytes, Consul does not change it), and for
/// Consul the payload is the whole encoded struct.
pub fn to_serf(event: &UserEvent) -> Result<SerfUserEvent, EventError> {
    let name = serf_event_name(&event.name);
    let payload = encode_user_event(event);
    let len = name.len() + payload.len();
    if len > EVENT_PAYLOAD_BYTES_MAX {
        return Err(EventError::TooLarge(len));
    }
    Ok(SerfUserEvent { name, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Uuid;
    use proptest::prelude::*;

    const ID: &str = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c";

    fn event() -> UserEvent {
        UserEvent {
            id: ID.parse().expect("uuid"),
            name: "deploy".into(),
            payload: b"v1.2".to_vec(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        }
    }

    /// The bytes go-msgpack writes for Consul's
    /// `&UserEvent{ID: ID, Name: "deploy", Payload: []byte("v1.2"),
    /// ServiceFilter: "web", TagFilter: "v1", Version: 1}` with
    /// `MsgpackHandle{RawToString: true, WriteExt: true}`, built by hand
    /// from the rules in the module doc (not by [`encode_user_event`]).
    fn go_bytes() -> Vec<u8> {
        let mut b = vec![0x86]; // map of 6: ID n p sf tf v (nf is empty)
        b.extend(b"\xa2ID\xd9\x24");
        b.extend(ID.as_bytes());
        b.extend(b"\xa1n\xa6deploy");
        b.extend(b"\xa1p\xc4\x04v1.2");
        b.extend(b"\xa2sf\xa3web");
        b.extend(b"\xa2tf\xa2v1");
        b.extend(b"\xa1v\x01");
        b
    }

    #[test]
    fn encodes_byte_for_byte_like_consul() {
        let e = UserEvent {
            service_filter: "web".into(),
            tag_filter: "v1".into(),
            ..event()
        };
        assert_eq!(encode_user_event(&e), go_bytes());
        // No payload, no filters: only the three fields without omitempty.
        let bare = UserEvent {
            payload: Vec::new(),
            ..event()
        };
        let mut want = vec![0x83];
        want.extend(b"\xa2ID\xd9\x24");
        want.extend(ID.as_bytes());
        want.extend(b"\xa1n\xa6deploy\xa1v\x01");
        assert_eq!(encode_user_event(&bare), want);
    }

    #[test]
    fn decodes_what_consul_writes() {
        let e = decode_user_event(&go_bytes(), 42).expect("decodes");
        assert_eq!(
            e,
            UserEvent {
                service_filter: "web".into(),
                tag_filter: "v1".into(),
                ltime: 42,
                ..event()
            }
        );
    }

    #[test]
    fn decodes_the_old_raw_encoding_and_tolerates_extras() {
        // Without WriteExt (older handles): str16 ID, payload as a str,
        // keys in another order, an unknown key, a nil filter, `v` as
        // int16, a duplicate `n` (the last wins) and trailing bytes.
        let mut b = vec![0x88];
        b.extend(b"\xa1v\xd1\x00\x02");
        b.extend(b"\xa1n\xa3old");
        b.extend(b"\xa2ID\xda\x00\x24");
        b.extend(ID.as_bytes());
        b.extend(b"\xa1p\xa2hi");
        b.extend(b"\xa5Extra\x92\x01\xc0");
        b.extend(b"\xa2nf\xc0");
        b.extend(b"\xa1n\xa6deploy");
        b.extend(b"\xa2sf\xa3web");
        b.extend(b"\xff\xff");
        let e = decode_user_event(&b, 7).expect("decodes");
        assert_eq!(e.name, "deploy");
        assert_eq!(e.payload, b"hi");
        assert_eq!(e.node_filter, "");
        assert_eq!(e.service_filter, "web");
        assert_eq!(e.version, 2);
        assert_eq!(e.ltime, 7);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\xc0".to_vec(),              // nil, not a struct
            b"\x92\x01\x02".to_vec(),      // an array
            b"\x81\xa1n".to_vec(),         // truncated
            b"\x81\xa2ID\xa3abc".to_vec(), // ID not a UUID
            b"\x80".to_vec(),              // no ID at all
            {
                let mut b = go_bytes();
                b[0] = 0x87; // claims one more entry than there is
                b
            },
            {
                let mut b = go_bytes();
                let at = b.len() - 1;
                b[at] = 0xa1; // `v` as a string
                b.push(b'x');
                b
            },
        ];
        for bytes in cases {
            assert!(decode_user_event(&bytes, 1).is_err(), "{bytes:x?}");
        }
        let mut bad_utf8 = vec![0x82, 0xa2, b'I', b'D', 0xd9, 0x24];
        bad_utf8.extend(ID.as_bytes());
        bad_utf8.extend(b"\xa1n\xa2\xff\xfe");
        assert!(matches!(
            decode_user_event(&bad_utf8, 1),
            Err(WireError::Field { field: "n", .. })
        ));
    }

    #[test]
    fn names_carry_consuls_prefix() {
        assert_eq!(serf_event_name("deploy"), "consul:event:deploy");
        assert_eq!(consul_event_name("consul:event:deploy"), Some("deploy"));
        assert_eq!(consul_event_name("deploy"), None);
        assert_eq!(consul_event_name("consul:event:"), Some(""));
    }

    #[test]
    fn serf_size_limit_counts_the_prefixed_name_and_encoded_struct() {
        let wire = to_serf(&event()).expect("fits");
        assert_eq!(wire.name, "consul:event:deploy");
        assert_eq!(decode_user_event(&wire.payload, 0), Ok(event()));
        // The overhead: 19 bytes of name, and ID, keys and headers (bin16
        // for a payload over 255 bytes).
        let long = UserEvent {
            payload: vec![b'x'; 300],
            ..event()
        };
        let long_wire = to_serf(&long).expect("fits");
        let overhead = long_wire.name.len() + long_wire.payload.len() - 300;
        // map 1, "ID" 3 + 2 + 36, "n" 2 + 7, "p" 2 + 3, "v" 2 + 1.
        assert_eq!(overhead, 19 + 59);
        let fits = UserEvent {
            payload: vec![b'x'; EVENT_PAYLOAD_BYTES_MAX - overhead],
            ..event()
        };
        assert!(to_serf(&fits).is_ok());
        let over = UserEvent {
            payload: vec![b'x'; EVENT_PAYLOAD_BYTES_MAX - overhead + 1],
            ..event()
        };
        assert_eq!(
            to_serf(&over).map(|_| ()),
            Err(EventError::TooLarge(EVENT_PAYLOAD_BYTES_MAX + 1))
        );
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z0-9.*^$ -]{0,40}").expect("strategy")
    }

    proptest! {
        #[test]
        fn round_trips(
            id in 1..=u128::MAX,
            name in text(),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            filters in (text(), text(), text()),
            version in any::<i64>(),
            ltime in any::<u64>(),
        ) {
            let e = UserEvent {
                id: Uuid::new(id),
                name,
                payload,
                node_filter: filters.0,
                service_filter: filters.1,
                tag_filter: filters.2,
                version,
                ltime,
            };
            prop_assert_eq!(decode_user_event(&encode_user_event(&e), ltime), Ok(e));
        }

        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_user_event(&data, 0);
        }
    }
}

//! Conservative encoded sizes of gossip messages, so the state machine can
//! pack packets within memberlist's UDP budget without seeing the codec.
//!
//! memberlist encodes each message as a type byte followed by a msgpack
//! map keyed by Go field names. The estimate charges every field its key,
//! the widest msgpack header for its kind, and its payload, so it never
//! undershoots the real encoding (the codec's tests can check that bound).

use super::message::Message;

/// Widest msgpack map header (map32).
const MAP_HEADER_BYTES: usize = 5;
/// Widest msgpack header of a string or binary (str32/bin32).
const BLOB_HEADER_BYTES: usize = 5;
/// Widest msgpack unsigned integer (uint64 with its tag).
const UINT_BYTES: usize = 9;

fn key(name: &str) -> usize {
    // Keys are short strings: fixstr header + bytes.
    1 + name.len()
}

fn blob(name: &str, len: usize) -> usize {
    key(name) + BLOB_HEADER_BYTES + len
}

fn uint(name: &str) -> usize {
    key(name) + UINT_BYTES
}

/// Upper bound of `msg`'s encoded size in a packet: its type byte plus
/// body (without the compound part-length prefix).
pub fn estimated_len(msg: &Message) -> usize {
    let body = match msg {
        Message::Ping(p) => {
            uint("SeqNo")
                + blob("Node", p.node.len())
                + blob("SourceAddr", p.source_addr.len())
                + uint("SourcePort")
                + blob("SourceNode", p.source_node.len())
        }
        Message::IndirectPing(p) => {
            uint("SeqNo")
                + blob("Target", p.target.len())
                + uint("Port")
                + blob("Node", p.node.len())
                + key("Nack")
                + 1
                + blob("SourceAddr", p.source_addr.len())
                + uint("SourcePort")
                + blob("SourceNode", p.source_node.len())
        }
        Message::Ack(a) => uint("SeqNo") + blob("Payload", a.payload.len()),
        Message::Nack(_) => uint("SeqNo"),
        Message::Suspect(s) => {
            uint("Incarnation") + blob("Node", s.node.len()) + blob("From", s.from.len())
        }
        Message::Dead(d) => {
            uint("Incarnation") + blob("Node", d.node.len()) + blob("From", d.from.len())
        }
        Message::Alive(a) => {
            uint("Incarnation")
                + blob("Node", a.node.len())
                + blob("Addr", a.addr.len())
                + uint("Port")
                + blob("Meta", a.meta.len())
                + blob("Vsn", a.vsn.len())
        }
        Message::PushPull(p) => {
            let nodes: usize = p
                .nodes
                .iter()
                .map(|n| {
                    MAP_HEADER_BYTES
                        + blob("Name", n.name.len())
                        + blob("Addr", n.addr.len())
                        + uint("Port")
                        + blob("Meta", n.meta.len())
                        + uint("Incarnation")
                        + uint("State")
                        + blob("Vsn", n.vsn.len())
                })
                .sum();
            uint("Nodes") + uint("UserStateLen") + key("Join") + 1 + nodes + p.user_state.len()
        }
        // A user message is its type byte and the raw payload.
        Message::User(bytes) => return 1 + bytes.len(),
        Message::Err(e) => blob("Error", e.error.len()),
    };
    1 + MAP_HEADER_BYTES + body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::message::{Alive, Ping};

    #[test]
    fn estimates_grow_with_payload_and_cover_the_fixed_fields() {
        let small = Message::Alive(Alive::default());
        let big = Message::Alive(Alive {
            meta: vec![0; 100],
            ..Alive::default()
        });
        assert_eq!(estimated_len(&big), estimated_len(&small) + 100);
        // Field keys alone of a ping exceed 40 bytes in msgpack.
        assert!(estimated_len(&Message::Ping(Ping::default())) > 40);
        assert_eq!(estimated_len(&Message::User(vec![1, 2, 3])), 4);
    }
}

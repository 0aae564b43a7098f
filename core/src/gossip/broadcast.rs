//! memberlist's `TransmitLimitedQueue`: messages waiting to be gossiped,
//! each sent at most `retransmit_mult * ceil(log10(n + 1))` times.
//!
//! Order of service: fewest transmissions first (fresh news spreads
//! first), then the largest message that still fits the packet, then the
//! newest. Sizes are the exact encoded lengths, so a packet holds what
//! really fits (memberlist queues pre-encoded messages for the same
//! reason). A named entry (memberlist's `NamedBroadcast`, the node name for
//! alive/suspect/dead) replaces the queued entry with the same name: only
//! the latest word about a member is worth sending. An entry that reaches
//! its limit or is replaced is "finished"; entries queued with a notify
//! token report it through [`BroadcastQueue::take_finished`] (`leave` waits
//! for its dead message this way).

use super::codec::encode_message;
use super::config::retransmit_limit;
use super::message::Message;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Position of an entry: (transmits, larger first, newer first).
type OrderKey = (u32, Reverse<usize>, Reverse<u64>);

/// A queued entry chosen for a packet by [`BroadcastQueue::select`], not
/// yet counted as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick(OrderKey);

impl Pick {
    /// The entry's encoded length in bytes (without a compound prefix).
    pub fn bytes(&self) -> usize {
        self.0 .1 .0
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: Option<String>,
    msg: Message,
    /// `msg` encoded, for its exact length and for compressed packing.
    bytes: Vec<u8>,
    notify: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct BroadcastQueue {
    entries: BTreeMap<OrderKey, Entry>,
    by_name: BTreeMap<String, OrderKey>,
    next_id: u64,
    finished: Vec<u64>,
}

impl BroadcastQueue {
    pub fn new() -> BroadcastQueue {
        BroadcastQueue::default()
    }

    /// Queues `msg` with no transmissions yet. A `name` replaces an entry
    /// queued under the same name; `notify` is reported once the entry is
    /// finished.
    pub fn queue(&mut self, name: Option<String>, msg: Message, notify: Option<u64>) {
        if let Some(old_key) = name.as_ref().and_then(|n| self.by_name.get(n).copied()) {
            self.remove_finished(old_key);
        }
        self.next_id += 1;
        let bytes = encode_message(&msg);
        let key = (0, Reverse(bytes.len()), Reverse(self.next_id));
        if let Some(n) = &name {
            self.by_name.insert(n.clone(), key);
        }
        self.entries.insert(
            key,
            Entry {
                name,
                msg,
                bytes,
                notify,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages for one packet: each costs `overhead` plus its encoded
    /// length, all within `limit` bytes. Every chosen entry counts one
    /// transmission.
    pub fn get_broadcasts(
        &mut self,
        overhead: usize,
        limit: usize,
        retransmit_mult: usize,
        cluster_size: usize,
    ) -> Vec<Message> {
        let picks = self.select(overhead, limit, usize::MAX);
        self.send(&picks, retransmit_mult, cluster_size)
    }

    /// The entries one packet would carry, in service order, without
    /// sending them: at most `parts_max`, each costing `overhead` plus its
    /// length, all within `limit` bytes. In each tier the largest entry
    /// that still fits goes next.
    pub fn select(&self, overhead: usize, limit: usize, parts_max: usize) -> Vec<Pick> {
        let (Some(first), Some(last)) = (self.entries.keys().next(), self.entries.keys().last())
        else {
            return Vec::new();
        };
        let (mut tier, max_tier) = (first.0, last.0);
        let mut used = 0usize;
        let mut out = Vec::new();
        // The last pick in the current tier: later picks in a tier come
        // after it, since the room only shrinks.
        let mut last_pick: Option<OrderKey> = None;
        while tier <= max_tier && out.len() < parts_max {
            let Some(free) = limit.checked_sub(used + overhead).filter(|f| *f > 0) else {
                break;
            };
            // Within a tier, entries are ordered largest first, so the first
            // entry at or after `free` is the largest one that fits.
            let fits_from = (tier, Reverse(free), Reverse(u64::MAX));
            let start = match last_pick {
                Some(k) if k > fits_from => Bound::Excluded(k),
                _ => Bound::Included(fits_from),
            };
            let end = Bound::Excluded((tier + 1, Reverse(usize::MAX), Reverse(u64::MAX)));
            let Some(key) = self.entries.range((start, end)).map(|(k, _)| *k).next() else {
                tier += 1;
                last_pick = None;
                continue;
            };
            used += overhead + key.1 .0;
            out.push(Pick(key));
            last_pick = Some(key);
        }
        out
    }

    /// The picked entries' encoded messages, in pick order.
    pub fn encoded<'a>(&'a self, picks: &'a [Pick]) -> impl Iterator<Item = &'a [u8]> + 'a {
        picks
            .iter()
            .filter_map(|p| self.entries.get(&p.0).map(|e| e.bytes.as_slice()))
    }

    /// Sends `picks` (from [`select`](Self::select), with no change to the
    /// queue in between): each counts one transmission and finishes at the
    /// retransmit limit. Returns their messages in pick order.
    pub fn send(
        &mut self,
        picks: &[Pick],
        retransmit_mult: usize,
        cluster_size: usize,
    ) -> Vec<Message> {
        let transmit_limit = retransmit_limit(retransmit_mult, cluster_size);
        let mut out = Vec::with_capacity(picks.len());
        let mut reinsert = Vec::new();
        for &Pick(key) in picks {
            let Some(entry) = self.entries.remove(&key) else {
                continue;
            };
            out.push(entry.msg.clone());
            let transmits = key.0 + 1;
            if transmits as usize >= transmit_limit {
                self.forget_name(&entry, key);
                self.finished.extend(entry.notify);
            } else {
                reinsert.push(((transmits, key.1, key.2), entry));
            }
        }
        for (key, entry) in reinsert {
            if let Some(n) = &entry.name {
                self.by_name.insert(n.clone(), key);
            }
            self.entries.insert(key, entry);
        }
        out
    }

    /// Drops the most-transmitted entries until at most `max_retain` remain
    /// (memberlist's `Prune`).
    pub fn prune(&mut self, max_retain: usize) {
        while self.entries.len() > max_retain {
            let Some(key) = self.entries.keys().last().copied() else {
                break;
            };
            self.remove_finished(key);
        }
    }

    /// Notify tokens of entries finished since the last call.
    pub fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished)
    }

    /// Queued messages in service order, for tests and diagnostics.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Message)> {
        self.entries.iter().map(|(k, e)| (k.0, &e.msg))
    }

    fn remove_finished(&mut self, key: OrderKey) {
        if let Some(entry) = self.entries.remove(&key) {
            self.forget_name(&entry, key);
            self.finished.extend(entry.notify);
        }
    }

    fn forget_name(&mut self, entry: &Entry, key: OrderKey) {
        if let Some(n) = &entry.name {
            if self.by_name.get(n) == Some(&key) {
                self.by_name.remove(n);
            }
        }
    }

    /// Every name index points at a live entry carrying that name.
    pub fn check_invariants(&self) {
        for (name, key) in &self.by_name {
            let entry = self.entries.get(key);
            assert!(
                entry.is_some_and(|e| e.name.as_deref() == Some(name)),
                "broadcast name index points at a missing entry"
            );
        }
        let named = self.entries.values().filter(|e| e.name.is_some()).count();
        assert_eq!(named, self.by_name.len(), "one entry per broadcast name");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::message::{Alive, Dead};

    fn user(len: usize) -> Message {
        Message::User(vec![7; len])
    }

    fn alive(node: &str, incarnation: u32) -> Message {
        Message::Alive(Alive {
            node: node.into(),
            incarnation,
            ..Alive::default()
        })
    }

    #[test]
    fn newer_named_broadcast_replaces_older_and_finishes_it() {
        let mut q = BroadcastQueue::new();
        q.queue(Some("a".into()), alive("a", 1), Some(1));
        q.queue(Some("b".into()), alive("b", 1), None);
        q.queue(
            Some("a".into()),
            Message::Dead(Dead {
                node: "a".into(),
                ..Dead::default()
            }),
            Some(2),
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.take_finished(), vec![1]);
        assert!(q.iter().any(|(_, m)| matches!(m, Message::Dead(_))));
        q.check_invariants();
    }

    #[test]
    fn fewest_transmits_first_then_largest_then_newest() {
        let mut q = BroadcastQueue::new();
        q.queue(None, user(10), None);
        q.queue(None, user(30), None);
        q.queue(None, user(10), None);
        let order: Vec<usize> = q
            .iter()
            .map(|(_, m)| match m {
                Message::User(b) => b.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![30, 10, 10]);
        // One packet with room for the big one only; it moves to tier 1.
        let sent = q.get_broadcasts(2, 40, 4, 10);
        assert_eq!(sent, vec![user(30)]);
        let tiers: Vec<u32> = q.iter().map(|(t, _)| t).collect();
        assert_eq!(tiers, vec![0, 0, 1]);
    }

    #[test]
    fn select_leaves_the_queue_alone_and_send_counts_only_the_picks() {
        let mut q = BroadcastQueue::new();
        for len in [50, 40, 30, 20, 10] {
            q.queue(None, user(len), None);
        }
        // Room for 51 + 2, 41 + 2 and 21 + 2 (each message is its type
        // byte and payload): in a tier the largest that fits goes next.
        let picks = q.select(2, 120, usize::MAX);
        let lens: Vec<usize> = picks.iter().map(Pick::bytes).collect();
        assert_eq!(lens, vec![51, 41, 21]);
        assert_eq!(q.select(2, 120, usize::MAX), picks, "select is a pure read");
        assert_eq!(q.select(2, 120, 2).len(), 2, "parts_max bounds the picks");
        let encoded: Vec<&[u8]> = q.encoded(&picks[..2]).collect();
        assert_eq!(
            encoded,
            vec![&encode_message(&user(50))[..], &encode_message(&user(40))]
        );
        // Send only the first two: they move to tier 1, the rest stay fresh.
        assert_eq!(q.send(&picks[..2], 4, 10), vec![user(50), user(40)]);
        let tiers: Vec<(u32, usize)> = q
            .iter()
            .map(|(t, m)| (t, encode_message(m).len()))
            .collect();
        assert_eq!(tiers, vec![(0, 31), (0, 21), (0, 11), (1, 51), (1, 41)]);
        q.check_invariants();
    }

    #[test]
    fn retransmit_limit_bounds_transmissions() {
        let mut q = BroadcastQueue::new();
        q.queue(Some("x".into()), alive("x", 1), Some(9));
        // n = 9 -> limit = 2 * ceil(log10(10)) = 2.
        assert_eq!(q.get_broadcasts(2, 1400, 2, 9).len(), 1);
        assert!(q.take_finished().is_empty());
        assert_eq!(q.get_broadcasts(2, 1400, 2, 9).len(), 1);
        assert_eq!(q.take_finished(), vec![9]);
        assert!(q.is_empty());
        assert!(q.get_broadcasts(2, 1400, 2, 9).is_empty());
        q.check_invariants();
    }

    #[test]
    fn packs_within_the_byte_budget() {
        let mut q = BroadcastQueue::new();
        for _ in 0..100 {
            q.queue(None, user(97), None);
        }
        let sent = q.get_broadcasts(2, 1000, 4, 100);
        let bytes: usize = sent.iter().map(|m| 2 + encode_message(m).len()).sum();
        assert_eq!(sent.len(), 10);
        assert!(bytes <= 1000);
        q.prune(5);
        assert_eq!(q.len(), 5);
        // Pruning drops the already-sent ones first.
        assert!(q.iter().all(|(t, _)| t == 0));
    }
}

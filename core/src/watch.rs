//! Index watches for blocking queries.
//!
//! A blocking query registers a waiter on one or more targets (a KV key, a KV
//! prefix, or a whole table). Each apply reports what it touched
//! ([`WatchKey`]); [`Watches::fire`] returns the waiters to wake, and the
//! shell wakes them (core never blocks). The total number of waiters is
//! bounded: past [`BLOCKING_WAITERS_MAX`] a register is refused and the
//! caller answers at once, which a blocking-query client must tolerate anyway.

use crate::limits::BLOCKING_WAITERS_MAX;
use std::collections::{BTreeMap, BTreeSet};

/// A table of the store, for coarse watches and per-table indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Kv,
    Nodes,
    Services,
    Checks,
    Sessions,
}

/// What one apply touched.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchKey {
    Kv(String),
    Table(Table),
}

/// What a waiter waits on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchTarget {
    KvKey(String),
    KvPrefix(String),
    Table(Table),
}

pub type WaiterId = u64;

/// Refused: the waiter bound is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyWaiters;

#[derive(Debug, Default)]
pub struct Watches {
    by_target: BTreeMap<WatchTarget, BTreeSet<WaiterId>>,
    by_waiter: BTreeMap<WaiterId, Vec<WatchTarget>>,
    /// Prefix watches exist: lets the common no-prefix case skip the scan.
    prefix_count: usize,
    next_id: WaiterId,
}

impl Watches {
    pub fn len(&self) -> usize {
        self.by_waiter.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_waiter.is_empty()
    }

    pub fn register(&mut self, targets: Vec<WatchTarget>) -> Result<WaiterId, TooManyWaiters> {
        if self.by_waiter.len() >= BLOCKING_WAITERS_MAX {
            return Err(TooManyWaiters);
        }
        self.next_id += 1;
        let id = self.next_id;
        for target in &targets {
            if matches!(target, WatchTarget::KvPrefix(_)) {
                self.prefix_count += 1;
            }
            self.by_target.entry(target.clone()).or_default().insert(id);
        }
        self.by_waiter.insert(id, targets);
        Ok(id)
    }

    /// Forgets a waiter (its wait elapsed or its client went away).
    pub fn cancel(&mut self, id: WaiterId) {
        let Some(targets) = self.by_waiter.remove(&id) else {
            return;
        };
        for target in targets {
            if matches!(target, WatchTarget::KvPrefix(_)) {
                self.prefix_count -= 1;
            }
            if let Some(set) = self.by_target.get_mut(&target) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_target.remove(&target);
                }
            }
        }
    }

    fn take_target(&mut self, target: &WatchTarget, out: &mut BTreeSet<WaiterId>) {
        if let Some(set) = self.by_target.get(target) {
            out.extend(set.iter().copied());
        }
    }

    /// The waiters woken by `touched`, removed from the registry, in
    /// ascending order (deterministic).
    pub fn fire(&mut self, touched: &[WatchKey]) -> Vec<WaiterId> {
        if self.by_waiter.is_empty() {
            return Vec::new();
        }
        let mut woken = BTreeSet::new();
        for key in touched {
            match key {
                WatchKey::Table(table) => self.take_target(&WatchTarget::Table(*table), &mut woken),
                WatchKey::Kv(key) => {
                    self.take_target(&WatchTarget::KvKey(key.clone()), &mut woken);
                    self.take_target(&WatchTarget::Table(Table::Kv), &mut woken);
                    if self.prefix_count > 0 {
                        let boundaries = (0..=key.len()).filter(|&i| key.is_char_boundary(i));
                        for end in boundaries {
                            let prefix = WatchTarget::KvPrefix(key[..end].to_string());
                            self.take_target(&prefix, &mut woken);
                        }
                    }
                }
            }
        }
        for id in &woken {
            self.cancel(*id);
        }
        woken.into_iter().collect()
    }

    pub fn check_invariants(&self) {
        let mut prefixes = 0;
        for (id, targets) in &self.by_waiter {
            for target in targets {
                prefixes += usize::from(matches!(target, WatchTarget::KvPrefix(_)));
                assert!(self.by_target.get(target).is_some_and(|s| s.contains(id)));
            }
        }
        assert_eq!(prefixes, self.prefix_count);
        assert!(self.by_waiter.len() <= BLOCKING_WAITERS_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_and_table_watches_fire() {
        let mut w = Watches::default();
        let exact = w
            .register(vec![WatchTarget::KvKey("a/b".into())])
            .expect("room");
        let prefix = w
            .register(vec![WatchTarget::KvPrefix("a/".into())])
            .expect("room");
        let other = w
            .register(vec![WatchTarget::KvKey("a/bc".into())])
            .expect("room");
        let table = w
            .register(vec![WatchTarget::Table(Table::Nodes)])
            .expect("room");
        assert_eq!(w.fire(&[WatchKey::Kv("a/b".into())]), vec![exact, prefix]);
        assert_eq!(w.len(), 2);
        assert_eq!(w.fire(&[WatchKey::Table(Table::Nodes)]), vec![table]);
        assert_eq!(w.fire(&[WatchKey::Kv("z".into())]), Vec::<WaiterId>::new());
        w.cancel(other);
        assert!(w.is_empty());
        w.check_invariants();
    }

    #[test]
    fn waiter_count_is_bounded() {
        let mut w = Watches::default();
        for _ in 0..BLOCKING_WAITERS_MAX {
            w.register(vec![WatchTarget::Table(Table::Kv)])
                .expect("room");
        }
        assert_eq!(
            w.register(vec![WatchTarget::Table(Table::Kv)]),
            Err(TooManyWaiters)
        );
        let woken = w.fire(&[WatchKey::Kv("x".into())]);
        assert_eq!(woken.len(), BLOCKING_WAITERS_MAX);
        w.check_invariants();
    }
}

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
    kv_keys: BTreeMap<String, BTreeSet<WaiterId>>,
    /// Keyed by the prefix string so `fire` can look up every prefix of a
    /// touched key by `&str`, without allocating.
    kv_prefixes: BTreeMap<String, BTreeSet<WaiterId>>,
    tables: BTreeMap<Table, BTreeSet<WaiterId>>,
    by_waiter: BTreeMap<WaiterId, Vec<WatchTarget>>,
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
            let set = match target {
                WatchTarget::KvKey(key) => self.kv_keys.entry(key.clone()).or_default(),
                WatchTarget::KvPrefix(prefix) => {
                    self.kv_prefixes.entry(prefix.clone()).or_default()
                }
                WatchTarget::Table(table) => self.tables.entry(*table).or_default(),
            };
            set.insert(id);
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
            match target {
                WatchTarget::KvKey(key) => remove_from(&mut self.kv_keys, &key, id),
                WatchTarget::KvPrefix(prefix) => remove_from(&mut self.kv_prefixes, &prefix, id),
                WatchTarget::Table(table) => remove_from(&mut self.tables, &table, id),
            }
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
                WatchKey::Table(table) => extend(&mut woken, self.tables.get(table)),
                WatchKey::Kv(key) => {
                    extend(&mut woken, self.kv_keys.get(key.as_str()));
                    extend(&mut woken, self.tables.get(&Table::Kv));
                    if !self.kv_prefixes.is_empty() {
                        let boundaries = (0..=key.len()).filter(|&i| key.is_char_boundary(i));
                        for end in boundaries {
                            extend(&mut woken, self.kv_prefixes.get(&key[..end]));
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
        let mut registrations = 0;
        for (id, targets) in &self.by_waiter {
            for target in targets {
                let set = match target {
                    WatchTarget::KvKey(key) => self.kv_keys.get(key),
                    WatchTarget::KvPrefix(prefix) => self.kv_prefixes.get(prefix),
                    WatchTarget::Table(table) => self.tables.get(table),
                };
                assert!(
                    set.is_some_and(|s| s.contains(id)),
                    "waiter {id} not indexed"
                );
                registrations += 1;
            }
        }
        let indexed: usize = self.kv_keys.values().map(BTreeSet::len).sum::<usize>()
            + self.kv_prefixes.values().map(BTreeSet::len).sum::<usize>()
            + self.tables.values().map(BTreeSet::len).sum::<usize>();
        assert!(indexed <= registrations, "stale waiter left in an index");
        assert!(self.by_waiter.len() <= BLOCKING_WAITERS_MAX);
    }
}

fn extend(out: &mut BTreeSet<WaiterId>, set: Option<&BTreeSet<WaiterId>>) {
    if let Some(set) = set {
        out.extend(set.iter().copied());
    }
}

fn remove_from<K, Q>(map: &mut BTreeMap<K, BTreeSet<WaiterId>>, key: &Q, id: WaiterId)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(key);
        }
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

//! The KV table: entries, tombstones and lock ownership.
//!
//! Semantics follow Consul's state store (`kvs.go`):
//! - a plain set keeps `CreateIndex`, `LockIndex` and the lock holder;
//! - `cas` with index 0 creates only; otherwise the `ModifyIndex` must match;
//! - `lock` (acquire) succeeds when the key is free or already held by the
//!   same session; `LockIndex` grows only when the holder changes;
//! - `unlock` (release) needs the holder's session and keeps `LockIndex`;
//! - a delete leaves a tombstone holding the delete's index, so the index a
//!   blocking query sees for a key or prefix never goes backwards.

use crate::ids::{RaftIndex, SessionId};
use crate::kv_key::KvKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// One stored key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    #[serde(
        serialize_with = "crate::restore::byte_buf::serialize",
        deserialize_with = "crate::restore::byte_buf::deserialize_boxed"
    )]
    pub value: Box<[u8]>,
    pub flags: u64,
    pub lock_index: u64,
    pub session: Option<SessionId>,
    pub create_index: RaftIndex,
    pub modify_index: RaftIndex,
}

/// The key/value table. `locks` and `tombstones_by_index` are derived
/// (rebuilt on restore).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    entries: BTreeMap<KvKey, KvEntry>,
    tombstones: BTreeMap<KvKey, RaftIndex>,
    /// `tombstones` by index, for reaping the oldest (derived, rebuilt on
    /// restore).
    tombstones_by_index: BTreeSet<(RaftIndex, KvKey)>,
    locks: BTreeSet<(SessionId, Box<str>)>,
}

/// The outcome of a conditional write. `Unchanged` is a success that wrote
/// nothing new (Consul skips such writes, so indexes and watchers stay put).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvWrite {
    Refused,
    Unchanged,
    Changed,
}

impl KvWrite {
    pub fn ok(self) -> bool {
        self != KvWrite::Refused
    }
    pub fn changed(self) -> bool {
        self == KvWrite::Changed
    }
}

/// One key's stored state (live entry and/or tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    entry: Option<KvEntry>,
    tombstone: Option<RaftIndex>,
}

/// The serializable part of [`Kv`].
#[derive(Serialize, Deserialize)]
pub struct KvSnapshot {
    pub entries: Vec<(Box<str>, KvEntry)>,
    pub tombstones: Vec<(Box<str>, RaftIndex)>,
}

/// [`KvSnapshot`]'s encoding written from the table in place, without
/// copying it first (a snapshot of a large store would otherwise hold the
/// store twice, once as the copy and once encoded).
pub struct KvSnapshotRef<'a>(&'a Kv);

impl Serialize for KvSnapshotRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("KvSnapshot", 2)?;
        out.serialize_field("entries", &InOrder(&self.0.entries))?;
        out.serialize_field("tombstones", &InOrder(&self.0.tombstones))?;
        out.end()
    }
}

/// A table as the sequence of `(key, value)` pairs a `Vec<(Box<str>, V)>`
/// would encode to.
struct InOrder<'a, V>(&'a BTreeMap<KvKey, V>);

impl<V: Serialize> Serialize for InOrder<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

/// Iterates the entries under `prefix` in key order.
fn prefix_range<'a, V>(
    map: &'a BTreeMap<KvKey, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a KvKey, &'a V)> + 'a {
    let prefix = prefix.as_bytes();
    map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.as_bytes().starts_with(prefix))
}

impl Kv {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key.as_bytes())
    }

    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a KvEntry)> {
        prefix_range(&self.entries, prefix).map(|(k, v)| (k.as_str(), v))
    }

    /// Keys under `prefix`, folded at the first `separator` after the prefix
    /// (Consul's `?keys&separator=`): `a/b/c` under `a/` with `/` is `a/b/`.
    pub fn keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (key, _) in self.list(prefix) {
            let folded = if separator.is_empty() {
                key
            } else {
                match key[prefix.len()..].find(separator) {
                    Some(at) => &key[..prefix.len() + at + separator.len()],
                    None => key,
                }
            };
            if out.last().map(String::as_str) != Some(folded) {
                out.push(folded.to_string());
            }
        }
        out
    }

    /// The highest index that describes `key` (entry or tombstone), 0 if none.
    pub fn key_index(&self, key: &str) -> RaftIndex {
        match self.entries.get(key.as_bytes()) {
            Some(entry) => entry.modify_index,
            None => self.tombstones.get(key.as_bytes()).copied().unwrap_or(0),
        }
    }

    /// The highest index among entries and tombstones under `prefix`.
    pub fn prefix_index(&self, prefix: &str) -> RaftIndex {
        let live = self.list(prefix).map(|(_, e)| e.modify_index).max();
        let dead = prefix_range(&self.tombstones, prefix)
            .map(|(_, i)| *i)
            .max();
        live.unwrap_or(0).max(dead.unwrap_or(0))
    }

    /// Keys held by `session`, in key order.
    pub fn held_by(&self, session: SessionId) -> Vec<String> {
        let start = (session, Box::<str>::from(""));
        self.locks
            .range(start..)
            .take_while(|(s, _)| *s == session)
            .map(|(_, k)| k.to_string())
            .collect()
    }

    /// Plain write: keeps create index, lock index and holder. Writing the
    /// same value and flags again changes nothing (Consul's `kvsSetTxn`).
    pub fn set(&mut self, index: RaftIndex, key: &str, value: &[u8], flags: u64) -> KvWrite {
        match self.entries.get_mut(key.as_bytes()) {
            Some(entry) if *entry.value == *value && entry.flags == flags => KvWrite::Unchanged,
            Some(entry) => {
                // Overwrites of same-sized values (counters, configs) reuse
                // the allocation instead of freeing and allocating again.
                if entry.value.len() == value.len() {
                    entry.value.copy_from_slice(value);
                } else {
                    entry.value = value.into();
                }
                entry.flags = flags;
                entry.modify_index = index;
                KvWrite::Changed
            }
            None => {
                self.remove_tombstone(key);
                self.entries.insert(
                    KvKey::new(key),
                    KvEntry {
                        value: value.into(),
                        flags,
                        lock_index: 0,
                        session: None,
                        create_index: index,
                        modify_index: index,
                    },
                );
                KvWrite::Changed
            }
        }
    }

    /// Check-and-set: 0 means "only if absent".
    pub fn cas(
        &mut self,
        index: RaftIndex,
        key: &str,
        value: &[u8],
        flags: u64,
        cas: u64,
    ) -> KvWrite {
        let matches = match self.entries.get(key.as_bytes()) {
            None => cas == 0,
            Some(entry) => cas != 0 && entry.modify_index == cas,
        };
        if !matches {
            return KvWrite::Refused;
        }
        self.set(index, key, value, flags)
    }

    /// Acquire for `session` (which the caller has checked exists).
    pub fn lock(
        &mut self,
        index: RaftIndex,
        key: &str,
        value: &[u8],
        flags: u64,
        session: SessionId,
    ) -> KvWrite {
        match self.entries.get(key.as_bytes()).and_then(|e| e.session) {
            Some(holder) if holder != session => KvWrite::Refused,
            // The holder re-acquiring only updates the contents.
            Some(_) => self.set(index, key, value, flags),
            None => {
                self.set(index, key, value, flags);
                let entry = self
                    .entries
                    .get_mut(key.as_bytes())
                    .expect("set just wrote this key");
                entry.lock_index += 1;
                entry.session = Some(session);
                entry.modify_index = index;
                self.locks.insert((session, key.into()));
                KvWrite::Changed
            }
        }
    }

    /// Release by `session`; refused unless that session holds the key.
    pub fn unlock(
        &mut self,
        index: RaftIndex,
        key: &str,
        value: &[u8],
        flags: u64,
        session: SessionId,
    ) -> KvWrite {
        if self.entries.get(key.as_bytes()).and_then(|e| e.session) != Some(session) {
            return KvWrite::Refused;
        }
        self.set(index, key, value, flags);
        self.clear_holder(index, key);
        KvWrite::Changed
    }

    /// Drops the holder of `key` (session invalidated with behavior release).
    pub fn clear_holder(&mut self, index: RaftIndex, key: &str) {
        if let Some(entry) = self.entries.get_mut(key.as_bytes()) {
            if let Some(session) = entry.session.take() {
                self.locks.remove(&(session, Box::from(key)));
                entry.modify_index = index;
            }
        }
    }

    /// Deletes `key` if present, leaving a tombstone.
    pub fn delete(&mut self, index: RaftIndex, key: &str) -> KvWrite {
        match self.entries.remove(key.as_bytes()) {
            Some(entry) => {
                if let Some(session) = entry.session {
                    self.locks.remove(&(session, Box::from(key)));
                }
                self.insert_tombstone(key, index);
                KvWrite::Changed
            }
            None => KvWrite::Unchanged,
        }
    }

    /// Delete only if `ModifyIndex == cas`; a missing key counts as deleted.
    pub fn delete_cas(&mut self, index: RaftIndex, key: &str, cas: u64) -> KvWrite {
        match self.entries.get(key.as_bytes()) {
            None => KvWrite::Unchanged,
            Some(entry) if entry.modify_index == cas => {
                self.delete(index, key);
                KvWrite::Changed
            }
            Some(_) => KvWrite::Refused,
        }
    }

    /// Deletes every key starting with `prefix`; returns the keys removed.
    pub fn delete_tree(&mut self, index: RaftIndex, prefix: &str) -> Vec<String> {
        let doomed: Vec<String> = self.list(prefix).map(|(k, _)| k.to_string()).collect();
        for key in &doomed {
            self.delete(index, key);
        }
        doomed
    }

    /// Everything stored about `key`, for a txn's undo log.
    pub fn key_state(&self, key: &str) -> KeyState {
        KeyState {
            entry: self.entries.get(key.as_bytes()).cloned(),
            tombstone: self.tombstones.get(key.as_bytes()).copied(),
        }
    }

    /// Puts `key` back exactly as `state` recorded it (txn rollback).
    pub fn put_key_state(&mut self, key: &str, state: KeyState) {
        if let Some(old) = self.entries.remove(key.as_bytes()) {
            if let Some(session) = old.session {
                self.locks.remove(&(session, Box::from(key)));
            }
        }
        self.remove_tombstone(key);
        if let Some(entry) = state.entry {
            if let Some(session) = entry.session {
                self.locks.insert((session, key.into()));
            }
            self.entries.insert(KvKey::new(key), entry);
        }
        if let Some(index) = state.tombstone {
            self.insert_tombstone(key, index);
        }
    }

    fn insert_tombstone(&mut self, key: &str, index: RaftIndex) {
        if let Some(old) = self.tombstones.insert(KvKey::new(key), index) {
            self.tombstones_by_index.remove(&(old, KvKey::new(key)));
        }
        self.tombstones_by_index.insert((index, KvKey::new(key)));
    }

    fn remove_tombstone(&mut self, key: &str) {
        if let Some(index) = self.tombstones.remove(key.as_bytes()) {
            self.tombstones_by_index.remove(&(index, KvKey::new(key)));
        }
    }

    /// The index of the newest tombstone, if any.
    pub fn newest_tombstone(&self) -> Option<RaftIndex> {
        self.tombstones_by_index.last().map(|(index, _)| *index)
    }

    /// Forgets every tombstone with an index up to `index` (Consul's
    /// tombstone reaping); returns the keys they described, oldest first.
    pub fn reap_tombstones(&mut self, index: RaftIndex) -> Vec<String> {
        let mut reaped = Vec::new();
        while let Some((at, key)) = self.tombstones_by_index.first() {
            if *at > index {
                break;
            }
            self.tombstones.remove(key.as_bytes());
            reaped.push(key.as_str().to_string());
            self.tombstones_by_index.pop_first();
        }
        reaped
    }

    /// The table's snapshot encoding, borrowed (see [`KvSnapshotRef`]).
    pub fn snapshot_ref(&self) -> KvSnapshotRef<'_> {
        KvSnapshotRef(self)
    }

    pub fn snapshot(&self) -> KvSnapshot {
        KvSnapshot {
            entries: self
                .entries
                .iter()
                .map(|(k, v)| (Box::from(k.as_str()), v.clone()))
                .collect(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(k, v)| (Box::from(k.as_str()), *v))
                .collect(),
        }
    }

    pub fn restore(snapshot: KvSnapshot) -> Kv {
        let locks = snapshot
            .entries
            .iter()
            .filter_map(|(k, e)| e.session.map(|s| (s, k.clone())))
            .collect();
        Kv {
            entries: snapshot
                .entries
                .into_iter()
                .map(|(k, e)| (KvKey::new(&k), e))
                .collect(),
            tombstones_by_index: snapshot
                .tombstones
                .iter()
                .map(|(k, i)| (*i, KvKey::new(k)))
                .collect(),
            tombstones: snapshot
                .tombstones
                .into_iter()
                .map(|(k, i)| (KvKey::new(&k), i))
                .collect(),
            locks,
        }
    }

    /// Checks the table's internal consistency, as an error (restore uses
    /// this on untrusted snapshots). `last_applied` bounds every index.
    pub fn validate(&self, last_applied: RaftIndex) -> Result<(), String> {
        for (session, key) in &self.locks {
            match self.entries.get(key.as_bytes()) {
                Some(entry) if entry.session == Some(*session) => {}
                _ => return Err(format!("lock record for {key:?} disagrees with its entry")),
            }
        }
        for (key, entry) in &self.entries {
            if entry.create_index == 0 || entry.create_index > entry.modify_index {
                return Err(format!("key {key:?} has bad indexes"));
            }
            if entry.modify_index > last_applied {
                return Err(format!("key {key:?} modified after index {last_applied}"));
            }
            if self.tombstones.contains_key(key.as_bytes()) {
                return Err(format!("key {key:?} is both live and a tombstone"));
            }
            if let Some(session) = entry.session {
                if !self.locks.contains(&(session, Box::from(key.as_str()))) {
                    return Err(format!("lock on {key:?} is not indexed"));
                }
                if entry.lock_index == 0 {
                    return Err(format!("held key {key:?} has LockIndex 0"));
                }
            }
        }
        if let Some((key, index)) = self
            .tombstones
            .iter()
            .find(|(_, i)| **i == 0 || **i > last_applied)
        {
            return Err(format!("tombstone {key:?} has index {index}"));
        }
        if self.tombstones_by_index.len() != self.tombstones.len()
            || self
                .tombstones_by_index
                .iter()
                .any(|(index, key)| self.tombstones.get(key.as_bytes()) != Some(index))
        {
            return Err("tombstone index disagrees with the tombstones".into());
        }
        Ok(())
    }

    /// Panics on a broken internal assumption.
    pub fn check_invariants(&self, last_applied: RaftIndex) {
        if let Err(why) = self.validate(last_applied) {
            panic!("kv invariant broken: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Uuid;

    const S1: SessionId = Uuid::new(1);
    const S2: SessionId = Uuid::new(2);

    #[test]
    fn set_keeps_create_index_and_holder() {
        let mut kv = Kv::default();
        kv.set(5, "a", b"1", 0);
        assert!(kv.lock(6, "a", b"2", 0, S1).changed());
        assert_eq!(kv.set(7, "a", b"3", 9), KvWrite::Changed);
        assert_eq!(kv.set(8, "a", b"3", 9), KvWrite::Unchanged, "same content");
        let entry = kv.get("a").expect("present");
        assert_eq!((entry.create_index, entry.modify_index), (5, 7));
        assert_eq!(
            (entry.lock_index, entry.session, entry.flags),
            (1, Some(S1), 9)
        );
        kv.check_invariants(u64::MAX);
    }

    #[test]
    fn cas_zero_creates_only() {
        let mut kv = Kv::default();
        assert!(kv.cas(3, "k", b"v", 0, 0).ok());
        assert!(!kv.cas(4, "k", b"w", 0, 0).ok());
        assert!(!kv.cas(4, "k", b"w", 0, 2).ok());
        assert!(kv.cas(4, "k", b"w", 0, 3).ok());
        assert_eq!(&*kv.get("k").expect("present").value, b"w");
    }

    #[test]
    fn lock_index_grows_on_acquire_only() {
        let mut kv = Kv::default();
        assert!(kv.lock(1, "l", b"", 0, S1).ok());
        assert!(kv.lock(2, "l", b"x", 0, S1).ok(), "holder re-acquires");
        assert_eq!(kv.get("l").expect("present").lock_index, 1);
        assert!(!kv.lock(3, "l", b"", 0, S2).ok(), "other session refused");
        assert!(!kv.unlock(3, "l", b"", 0, S2).ok());
        assert!(kv.unlock(4, "l", b"", 0, S1).ok());
        assert_eq!(kv.get("l").expect("present").lock_index, 1);
        assert!(kv.lock(5, "l", b"", 0, S2).ok());
        assert_eq!(kv.get("l").expect("present").lock_index, 2);
        assert_eq!(kv.held_by(S2), vec!["l".to_string()]);
        assert!(kv.held_by(S1).is_empty());
        kv.check_invariants(u64::MAX);
    }

    #[test]
    fn tombstones_keep_prefix_index_monotonic() {
        let mut kv = Kv::default();
        kv.set(1, "p/a", b"", 0);
        kv.set(2, "p/b", b"", 0);
        assert_eq!(kv.prefix_index("p/"), 2);
        kv.delete(3, "p/b");
        assert_eq!(kv.prefix_index("p/"), 3);
        assert_eq!(kv.key_index("p/b"), 3);
        kv.set(4, "p/b", b"", 0);
        assert_eq!(kv.tombstone_count(), 0);
        kv.check_invariants(u64::MAX);
    }

    #[test]
    fn keys_fold_at_separator() {
        let mut kv = Kv::default();
        for (i, key) in ["a/b/c", "a/b/d", "a/e", "ab", "z"].iter().enumerate() {
            kv.set(i as u64 + 1, key, b"", 0);
        }
        assert_eq!(kv.keys("a/", "/"), vec!["a/b/", "a/e"]);
        assert_eq!(kv.keys("", "/"), vec!["a/", "ab", "z"]);
        assert_eq!(kv.keys("a", ""), vec!["a/b/c", "a/b/d", "a/e", "ab"]);
    }

    #[test]
    fn delete_tree_and_delete_cas() {
        let mut kv = Kv::default();
        kv.set(1, "t/1", b"", 0);
        kv.set(2, "t/2", b"", 0);
        kv.set(3, "u", b"", 0);
        assert!(!kv.delete_cas(4, "u", 2).ok());
        assert!(kv.delete_cas(4, "u", 3).ok());
        assert!(kv.delete_cas(5, "missing", 9).ok());
        assert_eq!(kv.delete_tree(6, "t/"), vec!["t/1", "t/2"]);
        assert!(kv.is_empty());
        let restored = Kv::restore(kv.snapshot());
        assert_eq!(restored, kv);
    }

    /// Snapshots written in place, with values as byte strings, are byte
    /// for byte what copying the table and encoding values as sequences of
    /// `u8` wrote, so stores and archives of earlier releases still load.
    #[test]
    fn snapshot_in_place_encodes_as_earlier_releases_did() {
        let mut kv = Kv::default();
        kv.set(1, "a", b"\x00\xffvalue", 7);
        kv.set(2, "b/long", &[0x80; 300], 0);
        kv.set(3, "gone", b"x", 0);
        kv.delete(4, "gone");
        let in_place = postcard::to_allocvec(&kv.snapshot_ref()).expect("encodes");
        assert_eq!(
            in_place,
            postcard::to_allocvec(&kv.snapshot()).expect("encodes")
        );

        #[derive(serde::Serialize)]
        struct EarlierEntry {
            value: Vec<u8>,
            flags: u64,
            lock_index: u64,
            session: Option<SessionId>,
            create_index: RaftIndex,
            modify_index: RaftIndex,
        }
        #[derive(serde::Serialize)]
        struct Earlier<'a> {
            entries: Vec<(&'a str, EarlierEntry)>,
            tombstones: Vec<(&'a str, RaftIndex)>,
        }
        let earlier = Earlier {
            entries: kv
                .entries
                .iter()
                .map(|(k, e)| {
                    let entry = EarlierEntry {
                        value: e.value.to_vec(),
                        flags: e.flags,
                        lock_index: e.lock_index,
                        session: e.session,
                        create_index: e.create_index,
                        modify_index: e.modify_index,
                    };
                    (k.as_str(), entry)
                })
                .collect(),
            tombstones: kv
                .tombstones
                .iter()
                .map(|(k, i)| (k.as_str(), *i))
                .collect(),
        };
        assert_eq!(in_place, postcard::to_allocvec(&earlier).expect("encodes"));
        let decoded: KvSnapshot = postcard::from_bytes(&in_place).expect("decodes");
        assert_eq!(Kv::restore(decoded), kv);
    }
}

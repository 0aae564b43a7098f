//! Consul's lock and semaphore recipes (`api/lock.go`, `api/semaphore.go`),
//! as pure decisions over what a client read from the KV store.
//!
//! The recipes run in a client (`tribune lock`), not in the servers: the
//! client reads keys over HTTP, asks this module what to do next, and does
//! it. Keeping the decisions here makes them testable without an agent and
//! keeps the layout byte-compatible with Consul's own clients, which may
//! contend on the same prefix:
//!
//! - a lock (`-n=1`) is the key `<prefix>/.lock`, acquired with a session,
//!   flags [`LOCK_FLAG_VALUE`], value empty;
//! - a semaphore (`-n>1`) is one contender key `<prefix>/<session>` per
//!   contender (flags [`SEMAPHORE_FLAG_VALUE`], acquired with its session, so
//!   it vanishes with the session) plus the coordination key
//!   `<prefix>/.lock` holding `{"Limit":N,"Holders":{"<session>":true}}`,
//!   changed only by check-and-set.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Flags marking a key as a Consul lock (`api.LockFlagValue`).
pub const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Flags marking keys as a Consul semaphore (`api.SemaphoreFlagValue`).
pub const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The coordination key's last path element (`api.DefaultSemaphoreKey`).
pub const LOCK_KEY_NAME: &str = ".lock";
/// Session TTL used by lock clients; renewed every half of it.
pub const SESSION_TTL_SECS: u64 = 15;

/// One KV entry as a client sees it (the HTTP API's `KVPair`, value decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub flags: u64,
    pub value: Vec<u8>,
    /// Empty when no session holds the key.
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordError {
    /// The lock key exists with other flags: something else lives there.
    LockConflict,
    /// The semaphore key exists with other flags.
    SemaphoreConflict,
    /// The holders document does not parse.
    BadHolders(String),
    /// Contenders disagree on `-n`.
    LimitConflict { lock: u64, local: u64 },
    /// Cleanup found the lock or semaphore still in use (not an error for
    /// the command: someone else carries on).
    InUse,
}

impl fmt::Display for CoordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordError::LockConflict => f.write_str("Existing key does not match lock use"),
            CoordError::SemaphoreConflict => {
                f.write_str("Existing key does not match semaphore use")
            }
            CoordError::BadHolders(e) => write!(f, "lock decoding failed: {e}"),
            CoordError::LimitConflict { lock, local } => {
                write!(f, "semaphore limit conflict (lock: {lock}, local: {local})")
            }
            CoordError::InUse => f.write_str("Lock in use"),
        }
    }
}

/// Go's `path.Join(prefix, ".lock")`: cleaned, no empty or `.` elements,
/// `..` resolved, no leading or trailing slash.
pub fn lock_key(prefix: &str) -> String {
    join_clean(prefix, LOCK_KEY_NAME)
}

/// The semaphore contender key for `session`: `path.Join(prefix, session)`.
pub fn contender_key(prefix: &str, session: &str) -> String {
    join_clean(prefix, session)
}

fn join_clean(prefix: &str, name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in prefix.split('/').chain(std::iter::once(name)) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// What a lock contender does after reading the lock key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockStep {
    /// Free (or absent): try `?acquire`.
    Acquire,
    /// Already ours.
    Held,
    /// Someone else holds it: block on the key until it changes.
    Wait,
}

/// Decides the next lock step from the key as read (`None`: no such key).
pub fn lock_step(current: Option<&KvPair>, session: &str) -> Result<LockStep, CoordError> {
    let Some(pair) = current else {
        return Ok(LockStep::Acquire);
    };
    if pair.flags != LOCK_FLAG_VALUE {
        return Err(CoordError::LockConflict);
    }
    Ok(if pair.session == session {
        LockStep::Held
    } else if pair.session.is_empty() {
        LockStep::Acquire
    } else {
        LockStep::Wait
    })
}

/// Whether a monitored lock is still ours.
pub fn lock_held(current: Option<&KvPair>, session: &str) -> bool {
    current.is_some_and(|pair| pair.session == session)
}

/// Cleanup after release: delete the lock key (by CAS at the returned
/// index) only when nobody holds it. `Ok(None)`: nothing to delete.
pub fn lock_cleanup(current: Option<&KvPair>) -> Result<Option<u64>, CoordError> {
    match current {
        None => Ok(None),
        Some(pair) if pair.flags != LOCK_FLAG_VALUE => Err(CoordError::LockConflict),
        Some(pair) if !pair.session.is_empty() => Err(CoordError::InUse),
        Some(pair) => Ok(Some(pair.modify_index)),
    }
}

/// The semaphore coordination document, in Consul's JSON layout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holders {
    #[serde(rename = "Limit")]
    pub limit: u64,
    /// Sorted, as Go's encoder sorts map keys.
    #[serde(rename = "Holders", default)]
    pub holders: BTreeMap<String, bool>,
}

impl Holders {
    /// Encodes as Go's `json.Marshal` would (field order, sorted keys).
    pub fn encode(&self) -> Vec<u8> {
        // Strings and bools only: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The semaphore's view of one listing of the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemaphoreView {
    /// The holders document after pruning dead holders.
    pub holders: Holders,
    /// The coordination key's ModifyIndex (0 when absent: CAS creates it).
    pub cas_index: u64,
}

/// Reads the semaphore state from a listing of `prefix` (Consul's
/// `findLock` + `decodeLock` + `pruneDeadHolders`): holders whose contender
/// key no longer has a live session are dropped.
pub fn semaphore_view(
    prefix: &str,
    pairs: &[KvPair],
    limit: u64,
) -> Result<SemaphoreView, CoordError> {
    let key = lock_key(prefix);
    let (mut holders, cas_index) = match pairs.iter().find(|pair| pair.key == key) {
        None => (
            Holders {
                limit,
                holders: BTreeMap::new(),
            },
            0,
        ),
        Some(pair) => {
            if pair.flags != SEMAPHORE_FLAG_VALUE {
                return Err(CoordError::SemaphoreConflict);
            }
            let holders = if pair.value.is_empty() {
                Holders {
                    limit,
                    holders: BTreeMap::new(),
                }
            } else {
                serde_json::from_slice::<Holders>(&pair.value)
                    .map_err(|e| CoordError::BadHolders(e.to_string()))?
            };
            (holders, pair.modify_index)
        }
    };
    if holders.limit != limit {
        return Err(CoordError::LimitConflict {
            lock: holders.limit,
            local: limit,
        });
    }
    let alive: BTreeSet<&str> = pairs
        .iter()
        .filter(|pair| !pair.session.is_empty())
        .map(|pair| pair.session.as_str())
        .collect();
    holders
        .holders
        .retain(|holder, _| alive.contains(holder.as_str()));
    Ok(SemaphoreView { holders, cas_index })
}

/// What a semaphore contender does after reading the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SemaphoreStep {
    /// Already a holder.
    Held,
    /// All slots taken: block on the prefix until it changes.
    Wait,
    /// A slot is free: CAS this document at `cas_index`, then read again.
    Claim { document: Vec<u8>, cas_index: u64 },
}

/// Decides the next semaphore step for `session`.
pub fn semaphore_step(view: &SemaphoreView, session: &str) -> SemaphoreStep {
    if view.holders.holders.contains_key(session) {
        return SemaphoreStep::Held;
    }
    if view.holders.holders.len() as u64 >= view.holders.limit {
        return SemaphoreStep::Wait;
    }
    let mut claimed = view.holders.clone();
    claimed.holders.insert(session.to_string(), true);
    SemaphoreStep::Claim {
        document: claimed.encode(),
        cas_index: view.cas_index,
    }
}

/// Release: the document without `session` to CAS back, or `None` when it
/// is not a holder (nothing to write). Dead holders are not pruned here:
/// release touches only its own slot, as Consul's does.
pub fn semaphore_release(
    current: Option<&KvPair>,
    session: &str,
) -> Result<Option<(Vec<u8>, u64)>, CoordError> {
    let Some(pair) = current else {
        return Ok(None);
    };
    if pair.flags != SEMAPHORE_FLAG_VALUE {
        return Err(CoordError::SemaphoreConflict);
    }
    if pair.value.is_empty() {
        return Ok(None);
    }
    let mut holders: Holders =
        serde_json::from_slice(&pair.value).map_err(|e| CoordError::BadHolders(e.to_string()))?;
    if holders.holders.remove(session).is_none() {
        return Ok(None);
    }
    Ok(Some((holders.encode(), pair.modify_index)))
}

/// Cleanup: the coordination key's index to delete by CAS when no live
/// holder remains; `Ok(None)` when there is no key.
pub fn semaphore_cleanup(
    prefix: &str,
    pairs: &[KvPair],
    limit: u64,
) -> Result<Option<u64>, CoordError> {
    let key = lock_key(prefix);
    if !pairs.iter().any(|pair| pair.key == key) {
        return Ok(None);
    }
    let view = semaphore_view(prefix, pairs, limit)?;
    if !view.holders.holders.is_empty() {
        return Err(CoordError::InUse);
    }
    Ok(Some(view.cas_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_pair(session: &str, modify_index: u64) -> KvPair {
        KvPair {
            key: "svc/leader/.lock".into(),
            flags: LOCK_FLAG_VALUE,
            session: session.into(),
            modify_index,
            ..KvPair::default()
        }
    }

    fn contender(prefix: &str, session: &str) -> KvPair {
        KvPair {
            key: contender_key(prefix, session),
            flags: SEMAPHORE_FLAG_VALUE,
            session: session.into(),
            ..KvPair::default()
        }
    }

    fn semaphore_key(holders: &[&str], limit: u64, modify_index: u64) -> KvPair {
        let doc = Holders {
            limit,
            holders: holders.iter().map(|h| (h.to_string(), true)).collect(),
        };
        KvPair {
            key: "db/.lock".into(),
            flags: SEMAPHORE_FLAG_VALUE,
            value: doc.encode(),
            modify_index,
            ..KvPair::default()
        }
    }

    #[test]
    fn keys_follow_go_path_join() {
        assert_eq!(lock_key("locks/mw"), "locks/mw/.lock");
        assert_eq!(lock_key("locks/mw/"), "locks/mw/.lock");
        assert_eq!(lock_key("/locks//mw/./"), "locks/mw/.lock");
        assert_eq!(lock_key("a/b/../c"), "a/c/.lock");
        assert_eq!(lock_key(""), ".lock");
        assert_eq!(contender_key("db/", "abc"), "db/abc");
    }

    #[test]
    fn lock_steps() {
        assert_eq!(lock_step(None, "me"), Ok(LockStep::Acquire));
        assert_eq!(
            lock_step(Some(&lock_pair("", 3)), "me"),
            Ok(LockStep::Acquire)
        );
        assert_eq!(
            lock_step(Some(&lock_pair("me", 3)), "me"),
            Ok(LockStep::Held)
        );
        assert_eq!(
            lock_step(Some(&lock_pair("you", 3)), "me"),
            Ok(LockStep::Wait)
        );
        let mut foreign = lock_pair("", 3);
        foreign.flags = 0;
        assert_eq!(
            lock_step(Some(&foreign), "me"),
            Err(CoordError::LockConflict)
        );
        assert!(lock_held(Some(&lock_pair("me", 3)), "me"));
        assert!(!lock_held(Some(&lock_pair("", 3)), "me"));
        assert!(!lock_held(None, "me"));
    }

    #[test]
    fn lock_cleanup_only_when_free() {
        assert_eq!(lock_cleanup(None), Ok(None));
        assert_eq!(lock_cleanup(Some(&lock_pair("", 9))), Ok(Some(9)));
        assert_eq!(
            lock_cleanup(Some(&lock_pair("x", 9))),
            Err(CoordError::InUse)
        );
        let mut foreign = lock_pair("", 9);
        foreign.flags = 1;
        assert_eq!(lock_cleanup(Some(&foreign)), Err(CoordError::LockConflict));
    }

    #[test]
    fn holders_encode_like_go() {
        let doc = Holders {
            limit: 2,
            holders: [("b".to_string(), true), ("a".to_string(), true)]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            String::from_utf8_lossy(&doc.encode()),
            r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#
        );
    }

    #[test]
    fn semaphore_claims_free_slots_and_prunes_dead_holders() -> Result<(), CoordError> {
        // "dead" is listed as a holder but its contender key is gone.
        let pairs = vec![
            contender("db", "s1"),
            contender("db", "s2"),
            semaphore_key(&["dead", "s1"], 2, 40),
        ];
        let view = semaphore_view("db", &pairs, 2)?;
        assert_eq!(view.cas_index, 40);
        assert_eq!(view.holders.holders.len(), 1);
        assert_eq!(semaphore_step(&view, "s1"), SemaphoreStep::Held);
        match semaphore_step(&view, "s2") {
            SemaphoreStep::Claim {
                document,
                cas_index,
            } => {
                assert_eq!(cas_index, 40);
                assert_eq!(
                    String::from_utf8_lossy(&document),
                    r#"{"Limit":2,"Holders":{"s1":true,"s2":true}}"#
                );
            }
            other => panic!("expected a claim, got {other:?}"),
        }
        // Full: a third live contender waits.
        let full = vec![
            contender("db", "s1"),
            contender("db", "s2"),
            contender("db", "s3"),
            semaphore_key(&["s1", "s2"], 2, 41),
        ];
        let view = semaphore_view("db", &full, 2)?;
        assert_eq!(semaphore_step(&view, "s3"), SemaphoreStep::Wait);
        Ok(())
    }

    #[test]
    fn semaphore_without_key_starts_empty_with_create_only_cas() -> Result<(), CoordError> {
        let view = semaphore_view("db", &[contender("db", "s1")], 3)?;
        assert_eq!(view.cas_index, 0);
        assert!(matches!(
            semaphore_step(&view, "s1"),
            SemaphoreStep::Claim { cas_index: 0, .. }
        ));
        Ok(())
    }

    #[test]
    fn semaphore_refuses_foreign_data_and_limit_conflicts() {
        let mut foreign = semaphore_key(&[], 2, 5);
        foreign.flags = LOCK_FLAG_VALUE;
        assert_eq!(
            semaphore_view("db", &[foreign], 2),
            Err(CoordError::SemaphoreConflict)
        );
        let mut garbage = semaphore_key(&[], 2, 5);
        garbage.value = b"{not json".to_vec();
        assert!(matches!(
            semaphore_view("db", &[garbage], 2),
            Err(CoordError::BadHolders(_))
        ));
        let err = semaphore_view("db", &[semaphore_key(&[], 3, 5)], 2);
        assert_eq!(err, Err(CoordError::LimitConflict { lock: 3, local: 2 }));
        assert_eq!(
            err.map(|_| ()).unwrap_err().to_string(),
            "semaphore limit conflict (lock: 3, local: 2)"
        );
    }

    #[test]
    fn semaphore_release_and_cleanup() -> Result<(), CoordError> {
        let key = semaphore_key(&["s1", "s2"], 2, 50);
        let (doc, index) = semaphore_release(Some(&key), "s1")?.ok_or(CoordError::InUse)?;
        assert_eq!(index, 50);
        assert_eq!(
            String::from_utf8_lossy(&doc),
            r#"{"Limit":2,"Holders":{"s2":true}}"#
        );
        assert_eq!(semaphore_release(Some(&key), "zz")?, None);
        assert_eq!(semaphore_release(None, "s1")?, None);
        // s2 still alive: in use. Without live contenders: delete at 50.
        let pairs = vec![contender("db", "s2"), key.clone()];
        assert_eq!(semaphore_cleanup("db", &pairs, 2), Err(CoordError::InUse));
        assert_eq!(semaphore_cleanup("db", &[key], 2), Ok(Some(50)));
        assert_eq!(semaphore_cleanup("db", &[], 2), Ok(None));
        Ok(())
    }
}

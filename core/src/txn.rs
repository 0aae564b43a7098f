//! `/v1/txn` KV operations: all-or-nothing, at one index.
//!
//! Writes run in order against the live table while an undo log records each
//! touched key's prior state; the first failure rolls every key back, so a
//! rolled-back txn leaves the store bit-for-bit unchanged. Read-only txns run
//! through [`read_op`] without touching anything.

use crate::command::{KvOp, KvVerb, TxnError, TxnKvResult, TxnOutcome};
use crate::ids::RaftIndex;
use crate::kv::{KeyState, Kv, KvEntry};
use crate::session::Sessions;
use std::collections::BTreeMap;

fn row(key: &str, entry: &KvEntry, include_value: bool) -> TxnKvResult {
    let mut entry = entry.clone();
    if !include_value {
        entry.value = Box::default();
    }
    TxnKvResult {
        key: key.to_string(),
        entry,
        include_value,
    }
}

/// Runs one read verb. Errors carry Consul's wording.
pub fn read_op(kv: &Kv, op: &KvOp) -> Result<Vec<TxnKvResult>, String> {
    let key = op.key.as_str();
    match op.verb {
        KvVerb::Get => match kv.get(key) {
            Some(entry) => Ok(vec![row(key, entry, true)]),
            None => Err(format!("key {key:?} doesn't exist")),
        },
        // A missing key echoes the request's own entry with a null value.
        KvVerb::GetOrEmpty => Ok(vec![match kv.get(key) {
            Some(entry) => row(key, entry, true),
            None => TxnKvResult {
                key: key.to_string(),
                entry: KvEntry {
                    value: Box::default(),
                    flags: op.flags,
                    lock_index: 0,
                    session: op.session,
                    create_index: 0,
                    modify_index: op.index,
                },
                include_value: true,
            },
        }]),
        KvVerb::GetTree => Ok(kv.list(key).map(|(k, e)| row(k, e, true)).collect()),
        KvVerb::CheckIndex => match kv.get(key) {
            Some(entry) if entry.modify_index == op.index => Ok(vec![row(key, entry, false)]),
            Some(entry) => Err(format!(
                "current modify index {} for key {key:?} doesn't match {}",
                entry.modify_index, op.index
            )),
            None => Err(format!("key {key:?} doesn't exist")),
        },
        KvVerb::CheckSession => {
            let entry = kv
                .get(key)
                .ok_or_else(|| format!("key {key:?} doesn't exist"))?;
            // As in Consul, "no session" matches an unheld key.
            if entry.session == op.session {
                Ok(vec![row(key, entry, false)])
            } else {
                let current = entry.session.map(|s| s.to_string()).unwrap_or_default();
                let wanted = op.session.map(|s| s.to_string()).unwrap_or_default();
                Err(format!(
                    "failed session check for key {key:?}, current session {current:?} != {wanted:?}"
                ))
            }
        }
        KvVerb::CheckNotExists => match kv.get(key) {
            Some(_) => Err(format!("key {key:?} exists")),
            None => Ok(Vec::new()),
        },
        _ => Err(format!("unknown KV read verb {:?}", op.verb)),
    }
}

/// Runs a read-only txn (no replication needed).
pub fn read_only(kv: &Kv, ops: &[KvOp]) -> TxnOutcome {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        match read_op(kv, op) {
            Ok(rows) => results.extend(rows),
            Err(what) => errors.push(TxnError { op_index, what }),
        }
    }
    if errors.is_empty() {
        TxnOutcome::Committed(results)
    } else {
        TxnOutcome::RolledBack(errors)
    }
}

fn session_ok(sessions: &Sessions, op: &KvOp) -> Result<crate::ids::SessionId, String> {
    let key = &op.key;
    match op.session {
        None => Err(format!("failed to lock key {key:?}: missing session")),
        Some(id) if sessions.get(id).is_none() => Err(format!(
            "failed to lock key {key:?}: invalid session \"{id}\""
        )),
        Some(id) => Ok(id),
    }
}

/// Runs one write verb at `index`; the returned rows carry no values.
fn write_op(
    kv: &mut Kv,
    sessions: &Sessions,
    index: RaftIndex,
    op: &KvOp,
) -> Result<Vec<TxnKvResult>, String> {
    let key = op.key.as_str();
    let done = |kv: &Kv| {
        kv.get(key)
            .map(|e| row(key, e, false))
            .into_iter()
            .collect()
    };
    match op.verb {
        KvVerb::Set => {
            kv.set(index, key, &op.value, op.flags);
            Ok(done(kv))
        }
        KvVerb::Cas => match kv.cas(index, key, &op.value, op.flags, op.index).ok() {
            true => Ok(done(kv)),
            false => Err(format!("failed to set key {key:?}, index is stale")),
        },
        KvVerb::Lock => {
            let session = session_ok(sessions, op)?;
            match kv.lock(index, key, &op.value, op.flags, session).ok() {
                true => Ok(done(kv)),
                false => Err(format!("failed to lock key {key:?}, lock is already held")),
            }
        }
        KvVerb::Unlock => {
            // Consul's kvsUnlockTxn does not look the session up: releasing
            // with a dead session is just "not held".
            let session = op
                .session
                .ok_or_else(|| format!("failed to unlock key {key:?}: missing session"))?;
            match kv.unlock(index, key, &op.value, op.flags, session).ok() {
                true => Ok(done(kv)),
                false => Err(format!(
                    "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                )),
            }
        }
        KvVerb::Delete => {
            kv.delete(index, key);
            Ok(Vec::new())
        }
        KvVerb::DeleteCas => match kv.delete_cas(index, key, op.index).ok() {
            true => Ok(Vec::new()),
            false => Err(format!("failed to delete key {key:?}, index is stale")),
        },
        KvVerb::DeleteTree => {
            kv.delete_tree(index, key);
            Ok(Vec::new())
        }
        _ => read_op(kv, op),
    }
}

/// Applies a txn at `index`. On failure every touched key is restored.
/// Returns the outcome and the keys written (for watches).
pub fn apply(
    kv: &mut Kv,
    sessions: &Sessions,
    index: RaftIndex,
    ops: &[KvOp],
) -> (TxnOutcome, Vec<String>) {
    let mut undo: BTreeMap<String, KeyState> = BTreeMap::new();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        if !op.verb.is_read() {
            let keys: Vec<String> = match op.verb {
                KvVerb::DeleteTree => kv.list(&op.key).map(|(k, _)| k.to_string()).collect(),
                _ => vec![op.key.clone()],
            };
            for key in keys {
                undo.entry(key.clone())
                    .or_insert_with(|| kv.key_state(&key));
            }
        }
        match write_op(kv, sessions, index, op) {
            Ok(rows) => results.extend(rows),
            Err(what) => {
                // Consul reports every failing op, not just the first.
                errors.push(TxnError { op_index, what });
            }
        }
    }
    if errors.is_empty() {
        // Only keys whose stored state really changed wake watchers.
        let written = undo
            .into_iter()
            .filter(|(key, before)| kv.key_state(key) != *before)
            .map(|(key, _)| key)
            .collect();
        (TxnOutcome::Committed(results), written)
    } else {
        for (key, state) in undo {
            kv.put_key_state(&key, state);
        }
        (TxnOutcome::RolledBack(errors), Vec::new())
    }
}

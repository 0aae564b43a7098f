//! The replicated state machine: `apply(index, &Command)` over the store.
//!
//! Pure: no clock, no randomness, no I/O. What the leader must do with the
//! passage of time (lock-delay, TTL timers) comes back as [`Effects`], which
//! the caller hands to the leader state in `server.rs`.

use crate::catalog::{Catalog, Registration, Touched};
use crate::command::{ApplyError, Command, CommandResult, KvOp, KvVerb, TxnOutcome};
use crate::ids::{RaftIndex, SessionId};
use crate::kv::{Kv, KvSnapshot};
use crate::limits::STORE_INDEX_MAX;
use crate::restore::{RestoreError, Staging};
use crate::session::{Behavior, Session, Sessions};
use crate::time::Duration;
use crate::txn;
use crate::watch::{Table, WatchKey};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Highest index that changed each table (Consul's `index` table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub kv: RaftIndex,
    pub nodes: RaftIndex,
    pub services: RaftIndex,
    pub checks: RaftIndex,
    pub sessions: RaftIndex,
}

impl TableIndexes {
    pub fn get(&self, table: Table) -> RaftIndex {
        match table {
            Table::Kv => self.kv,
            Table::Nodes => self.nodes,
            Table::Services => self.services,
            Table::Checks => self.checks,
            Table::Sessions => self.sessions,
        }
    }
    fn set(&mut self, table: Table, index: RaftIndex) {
        match table {
            Table::Kv => self.kv = index,
            Table::Nodes => self.nodes = index,
            Table::Services => self.services = index,
            Table::Checks => self.checks = index,
            Table::Sessions => self.sessions = index,
        }
    }
}

/// Side effects of one apply that the shell or the leader acts upon.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// What changed, for blocking-query watches.
    pub touched: Vec<WatchKey>,
    /// Keys freed by an invalidated session, with that session's lock-delay.
    pub lock_delays: Vec<(String, Duration)>,
    pub sessions_created: Vec<(SessionId, Duration)>,
    pub sessions_removed: Vec<SessionId>,
    /// A restore replaced the whole store: every waiter must wake, every
    /// timer be re-armed from the new sessions, every cache be dropped.
    pub store_replaced: bool,
    /// The apply deleted keys, leaving tombstones at this store index (for
    /// the leader's tombstone reaping).
    pub tombstoned: Option<RaftIndex>,
}

impl Effects {
    pub fn clear(&mut self) {
        self.touched.clear();
        self.lock_delays.clear();
        self.sessions_created.clear();
        self.sessions_removed.clear();
        self.store_replaced = false;
        self.tombstoned = None;
    }
}

/// The whole replicated store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fsm {
    pub kv: Kv,
    pub catalog: Catalog,
    pub sessions: Sessions,
    pub indexes: TableIndexes,
    /// The log index of the last applied entry.
    pub last_applied: RaftIndex,
    /// What a restore added to log indexes to make store indexes (see
    /// `crate::restore`): the entry at log index `i` writes at `i +
    /// index_offset`. Zero until a restore needs it.
    pub index_offset: u64,
    /// The archive a restore is staging, if one is under way.
    pub restore: Option<Staging>,
}

/// The snapshot version [`Fsm::snapshot`] writes when a store has a
/// restore's offset or staged archive: version 1's body, then
/// [`RestoreState`]. A store without either is written as version 1,
/// byte for byte as before, so servers and archives of earlier releases
/// read it.
pub const SNAPSHOT_VERSION: u8 = 2;
const SNAPSHOT_VERSION_1: u8 = 1;

#[derive(Serialize, Deserialize)]
struct FsmSnapshot {
    kv: KvSnapshot,
    catalog: Catalog,
    sessions: Sessions,
    indexes: TableIndexes,
    last_applied: RaftIndex,
}

/// [`FsmSnapshot`]'s encoding, written from the store in place.
#[derive(Serialize)]
struct FsmSnapshotRef<'a> {
    kv: crate::kv::KvSnapshotRef<'a>,
    catalog: &'a Catalog,
    sessions: &'a Sessions,
    indexes: TableIndexes,
    last_applied: RaftIndex,
}

/// What version 2 appends to version 1.
#[derive(Serialize, Deserialize)]
struct RestoreState {
    index_offset: u64,
    staging: Option<Staging>,
}

#[derive(Serialize)]
struct RestoreStateRef<'a> {
    index_offset: u64,
    staging: Option<&'a Staging>,
}

/// Why a snapshot was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SnapshotError {
    Empty,
    UnknownVersion(u8),
    Malformed,
    Inconsistent(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Empty => f.write_str("empty snapshot"),
            SnapshotError::UnknownVersion(v) => write!(f, "unknown snapshot version {v}"),
            SnapshotError::Malformed => f.write_str("malformed snapshot"),
            SnapshotError::Inconsistent(why) => write!(f, "inconsistent snapshot: {why}"),
        }
    }
}

impl Fsm {
    /// Applies the committed command at log index `log_index`, which must
    /// grow. What it writes gets the store index `log_index +
    /// index_offset`.
    pub fn apply(
        &mut self,
        log_index: RaftIndex,
        command: &Command,
        fx: &mut Effects,
    ) -> CommandResult {
        assert!(
            log_index > self.last_applied,
            "apply index {log_index} after {}",
            self.last_applied
        );
        self.last_applied = log_index;
        let index = self.store_index();
        let result = self.apply_command(index, command, fx);
        if self.kv.newest_tombstone() == Some(index) {
            fx.tombstoned = Some(index);
        }
        result
    }

    fn apply_command(
        &mut self,
        index: RaftIndex,
        command: &Command,
        fx: &mut Effects,
    ) -> CommandResult {
        match command {
            Command::Kv(op) => self.apply_kv(index, op, fx),
            Command::Txn(ops) => self.apply_txn(index, ops, fx),
            Command::Register(reg) => self.apply_register(index, reg, fx),
            Command::Deregister {
                node,
                service_id,
                check_id,
            } => self.apply_deregister(index, node, service_id.as_deref(), check_id.as_deref(), fx),
            Command::SessionCreate(session) => self.apply_session_create(index, session, fx),
            Command::SessionDestroy { id } => {
                self.destroy_session(index, *id, fx);
                CommandResult::Bool(true)
            }
            Command::RestoreBegin {
                id,
                total_len,
                checksum,
            } => match Staging::begin(*id, *total_len, *checksum) {
                Ok(staging) => {
                    self.restore = Some(staging);
                    CommandResult::Done
                }
                Err(e) => CommandResult::Failed(ApplyError::Restore(e)),
            },
            Command::RestoreChunk { id, offset, data } => {
                let appended = match &mut self.restore {
                    Some(staging) if staging.id == *id => staging.append(*offset, data),
                    _ => Err(RestoreError::NotStaged { id: *id }),
                };
                match appended {
                    Ok(()) => CommandResult::Done,
                    Err(e) => CommandResult::Failed(ApplyError::Restore(e)),
                }
            }
            Command::RestoreCommit { id } => self.apply_restore_commit(*id, fx),
            Command::RestoreAbort { id } => match &self.restore {
                Some(staging) if staging.id == *id => {
                    self.restore = None;
                    CommandResult::Done
                }
                _ => {
                    CommandResult::Failed(ApplyError::Restore(RestoreError::NotStaged { id: *id }))
                }
            },
            Command::ReapTombstones { index: up_to } => {
                let reaped = self.kv.reap_tombstones(*up_to);
                // Waiters on those keys or their prefixes wake: the index
                // they see may go back, as after Consul's reaping.
                fx.touched
                    .extend(reaped.into_iter().map(crate::watch::WatchKey::Kv));
                CommandResult::Done
            }
        }
    }

    /// The highest index the store's rows and tables may hold: the store
    /// index of the last applied entry.
    pub fn store_index(&self) -> RaftIndex {
        self.last_applied.saturating_add(self.index_offset)
    }

    /// Replaces the store with the staged archive's. The restored rows and
    /// table indexes are kept (as Consul keeps them); the offset grows so
    /// that the next entry writes above them and above everything the old
    /// store showed (whose highest index is below the commit's).
    fn apply_restore_commit(&mut self, id: u64, fx: &mut Effects) -> CommandResult {
        let staging = match self.restore.take() {
            Some(staging) if staging.id == id => staging,
            other => {
                self.restore = other;
                return CommandResult::Failed(ApplyError::Restore(RestoreError::NotStaged { id }));
            }
        };
        let restored = match staging.finish() {
            Ok(restored) => restored,
            Err(e) => return CommandResult::Failed(ApplyError::Restore(e)),
        };
        let index_offset = self
            .index_offset
            .max(restored.store_index().saturating_sub(self.last_applied));
        *self = Fsm {
            kv: restored.kv,
            catalog: restored.catalog,
            sessions: restored.sessions,
            indexes: restored.indexes,
            last_applied: self.last_applied,
            index_offset,
            restore: None,
        };
        fx.store_replaced = true;
        CommandResult::Done
    }

    fn touch(&mut self, index: RaftIndex, table: Table, fx: &mut Effects) {
        self.indexes.set(table, index);
        fx.touched.push(WatchKey::Table(table));
    }

    fn touch_key(&mut self, index: RaftIndex, key: String, fx: &mut Effects) {
        self.indexes.kv = index;
        fx.touched.push(WatchKey::Kv(key));
    }

    fn live_session(&self, op: &KvOp) -> Result<SessionId, ApplyError> {
        let id = op.session.ok_or(ApplyError::MissingSession)?;
        match self.sessions.get(id) {
            Some(_) => Ok(id),
            None => Err(ApplyError::SessionUnknown(id)),
        }
    }

    fn apply_kv(&mut self, index: RaftIndex, op: &KvOp, fx: &mut Effects) -> CommandResult {
        let key = op.key.as_str();
        let write = match op.verb {
            KvVerb::Set => self.kv.set(index, key, &op.value, op.flags),
            KvVerb::Cas => self.kv.cas(index, key, &op.value, op.flags, op.index),
            KvVerb::Unlock => {
                // As Consul's kvsUnlockTxn: a session that no longer exists
                // cannot hold the key, so the answer is `false`, not an error.
                let Some(session) = op.session else {
                    return CommandResult::Failed(ApplyError::MissingSession);
                };
                self.kv.unlock(index, key, &op.value, op.flags, session)
            }
            KvVerb::Lock => {
                let session = match self.live_session(op) {
                    Ok(session) => session,
                    Err(e) => return CommandResult::Failed(e),
                };
                self.kv.lock(index, key, &op.value, op.flags, session)
            }
            KvVerb::Delete => self.kv.delete(index, key),
            KvVerb::DeleteCas => self.kv.delete_cas(index, key, op.index),
            KvVerb::DeleteTree => {
                for deleted in self.kv.delete_tree(index, key) {
                    self.touch_key(index, deleted, fx);
                }
                return CommandResult::Bool(true);
            }
            verb => return CommandResult::Failed(ApplyError::VerbNotAllowed(verb)),
        };
        if write.changed() {
            self.touch_key(index, op.key.clone(), fx);
        }
        CommandResult::Bool(write.ok())
    }

    fn apply_txn(&mut self, index: RaftIndex, ops: &[KvOp], fx: &mut Effects) -> CommandResult {
        let (outcome, written) = txn::apply(&mut self.kv, &self.sessions, index, ops);
        for key in written {
            self.touch_key(index, key, fx);
        }
        CommandResult::Txn(outcome)
    }

    fn apply_touched(&mut self, index: RaftIndex, touched: Touched, fx: &mut Effects) {
        if touched.nodes {
            self.touch(index, Table::Nodes, fx);
        }
        if touched.services {
            self.touch(index, Table::Services, fx);
        }
        if touched.checks {
            self.touch(index, Table::Checks, fx);
        }
    }

    fn apply_register(
        &mut self,
        index: RaftIndex,
        reg: &Registration,
        fx: &mut Effects,
    ) -> CommandResult {
        match self.catalog.register(index, reg) {
            Ok((touched, critical)) => {
                self.apply_touched(index, touched, fx);
                for (node, check_id) in critical {
                    for id in self.sessions.depending_on(&node, &check_id) {
                        self.destroy_session(index, id, fx);
                    }
                }
                CommandResult::Done
            }
            Err(e) => CommandResult::Failed(ApplyError::Catalog(e)),
        }
    }

    fn apply_deregister(
        &mut self,
        index: RaftIndex,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
        fx: &mut Effects,
    ) -> CommandResult {
        let doomed: Vec<SessionId> = match (service_id, check_id) {
            (None, None) => {
                let (touched, _) = self.catalog.deregister_node(node);
                self.apply_touched(index, touched, fx);
                self.sessions.on_node(node).map(|s| s.id).collect()
            }
            (Some(service), _) => {
                let (touched, checks) = self.catalog.deregister_service(node, service);
                self.apply_touched(index, touched, fx);
                let mut ids: Vec<SessionId> = Vec::new();
                for check in checks {
                    ids.extend(self.sessions.depending_on(node, &check));
                }
                ids
            }
            (None, Some(check)) => {
                let touched = self.catalog.deregister_check(node, check);
                self.apply_touched(index, touched, fx);
                self.sessions.depending_on(node, check)
            }
        };
        for id in doomed {
            self.destroy_session(index, id, fx);
        }
        CommandResult::Done
    }

    fn apply_session_create(
        &mut self,
        index: RaftIndex,
        session: &Session,
        fx: &mut Effects,
    ) -> CommandResult {
        if self.sessions.get(session.id).is_some() {
            return CommandResult::Failed(ApplyError::SessionExists(session.id));
        }
        if !self.catalog.nodes.contains_key(&session.node) {
            return CommandResult::Failed(ApplyError::SessionNodeUnknown(session.node.clone()));
        }
        for check_id in session.check_ids() {
            let key = (session.node.clone(), check_id.to_string());
            match self.catalog.checks.get(&key) {
                None => {
                    return CommandResult::Failed(ApplyError::SessionCheckUnknown(check_id.into()))
                }
                Some(c) if c.status.is_critical() => {
                    return CommandResult::Failed(ApplyError::SessionCheckCritical(check_id.into()))
                }
                Some(_) => {}
            }
        }
        let mut session = session.clone();
        session.create_index = index;
        session.modify_index = index;
        fx.sessions_created.push((session.id, session.ttl));
        self.sessions.by_id.insert(session.id, session.clone());
        self.touch(index, Table::Sessions, fx);
        CommandResult::SessionCreated(session.id)
    }

    /// Invalidates a session: its keys are released or deleted according to
    /// its behavior, and each gets the session's lock-delay.
    fn destroy_session(&mut self, index: RaftIndex, id: SessionId, fx: &mut Effects) {
        let Some(session) = self.sessions.by_id.remove(&id) else {
            return;
        };
        for key in self.kv.held_by(id) {
            match session.behavior {
                Behavior::Release => self.kv.clear_holder(index, &key),
                Behavior::Delete => {
                    self.kv.delete(index, &key);
                }
            }
            if session.lock_delay > Duration::ZERO {
                fx.lock_delays.push((key.clone(), session.lock_delay));
            }
            self.touch_key(index, key, fx);
        }
        fx.sessions_removed.push(id);
        self.touch(index, Table::Sessions, fx);
    }

    /// The whole replicated state, a staged restore included. Version 1
    /// when there is nothing of version 2's to write (see
    /// [`SNAPSHOT_VERSION`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let snapshot = FsmSnapshotRef {
            kv: self.kv.snapshot_ref(),
            catalog: &self.catalog,
            sessions: &self.sessions,
            indexes: self.indexes,
            last_applied: self.last_applied,
        };
        let version_2 = self.index_offset != 0 || self.restore.is_some();
        let out = vec![match version_2 {
            true => SNAPSHOT_VERSION,
            false => SNAPSHOT_VERSION_1,
        }];
        // Owned, in-memory data always serializes into a Vec.
        let mut out = postcard::to_extend(&snapshot, out).expect("in-memory store serializes");
        if version_2 {
            let restore = RestoreStateRef {
                index_offset: self.index_offset,
                staging: self.restore.as_ref(),
            };
            out = postcard::to_extend(&restore, out).expect("in-memory store serializes");
        }
        out
    }

    /// Rebuilds a store from [`Fsm::snapshot`] bytes, refusing damaged or
    /// internally inconsistent input instead of panicking later.
    pub fn restore(bytes: &[u8]) -> Result<Fsm, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
            return Err(SnapshotError::UnknownVersion(version));
        }
        let Ok((snapshot, rest)) = postcard::take_from_bytes::<FsmSnapshot>(body) else {
            return Err(SnapshotError::Malformed);
        };
        let restore = match (version, rest) {
            (SNAPSHOT_VERSION_1, []) => RestoreState {
                index_offset: 0,
                staging: None,
            },
            (SNAPSHOT_VERSION, rest) => match postcard::take_from_bytes(rest) {
                Ok((restore, [])) => restore,
                _ => return Err(SnapshotError::Malformed),
            },
            _ => return Err(SnapshotError::Malformed),
        };
        let fsm = Fsm {
            kv: Kv::restore(snapshot.kv),
            catalog: snapshot.catalog,
            sessions: snapshot.sessions,
            indexes: snapshot.indexes,
            last_applied: snapshot.last_applied,
            index_offset: restore.index_offset,
            restore: restore.staging,
        };
        fsm.validate().map_err(SnapshotError::Inconsistent)?;
        Ok(fsm)
    }

    /// Every invariant of the store, as an error: restore runs this on
    /// untrusted snapshots so a damaged one is refused instead of crashing
    /// the process later.
    pub fn validate(&self) -> Result<(), String> {
        let last = self
            .last_applied
            .checked_add(self.index_offset)
            .filter(|&last| last <= STORE_INDEX_MAX)
            .ok_or_else(|| {
                format!(
                    "store index {} + {} is above the limit {STORE_INDEX_MAX}",
                    self.last_applied, self.index_offset
                )
            })?;
        if let Some(staging) = &self.restore {
            staging.validate()?;
        }
        let tables = [
            self.indexes.kv,
            self.indexes.nodes,
            self.indexes.services,
            self.indexes.checks,
            self.indexes.sessions,
        ];
        if tables.iter().any(|&i| i > last) {
            return Err(format!("a table index is above the store index {last}"));
        }
        self.kv.validate(last)?;
        self.catalog.validate(last)?;
        for (id, session) in &self.sessions.by_id {
            if *id != session.id {
                return Err(format!("session {id} stored under another ID"));
            }
            if session.create_index == 0
                || session.create_index > session.modify_index
                || session.modify_index > last
            {
                return Err(format!("session {id} has bad indexes"));
            }
            if !self.catalog.nodes.contains_key(&session.node) {
                return Err(format!("session {id} on missing node {:?}", session.node));
            }
        }
        for (key, entry) in self.kv.list("") {
            if let Some(holder) = entry.session {
                if self.sessions.get(holder).is_none() {
                    return Err(format!("key {key:?} held by unknown session {holder}"));
                }
            }
        }
        Ok(())
    }

    /// Panics on a broken internal assumption; the simulator calls this after
    /// every step.
    pub fn check_invariants(&self) {
        if let Err(why) = self.validate() {
            panic!("fsm invariant broken: {why}");
        }
    }

    /// Runs a txn made only of read verbs, without replication.
    pub fn read_txn(&self, ops: &[KvOp]) -> TxnOutcome {
        txn::read_only(&self.kv, ops)
    }
}

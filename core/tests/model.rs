//! Model-based property tests of the FSM (DESIGN.md §6).
//!
//! Random command sequences over a tiny key space run against `Fsm::apply`
//! and against a reference model of KV + sessions + locks written here from
//! Consul's documented semantics (`kvs.go`, `session.go`, `txn.go`) with
//! plain BTreeMaps, independently of core's `Kv`. After every step the
//! results, the effects, every key and session, the tombstone-backed
//! blocking indexes and the table indexes must agree with the model; at the
//! end, snapshot/restore must round-trip and restore + replay must reach the
//! same state. Lock-delay and TTL expiry live on the leader, so
//! `server::Leader` has its own tests at the bottom.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use tribune_core::catalog::{Check, CheckDefinition, CheckStatus, Node, Registration};
use tribune_core::command::{
    ApplyError, Command, CommandResult, KvOp, KvVerb, TxnKvResult, TxnOutcome,
};
use tribune_core::fsm::{Effects, Fsm, TableIndexes};
use tribune_core::ids::{RaftIndex, SessionId, Uuid};
use tribune_core::kv::KvEntry;
use tribune_core::server::{Leader, Output, SESSION_EXPIRY_RETRY};
use tribune_core::session::{Behavior, Session};
use tribune_core::time::{Duration, Instant};
use tribune_core::watch::{Table, WatchKey};

/// Nested on purpose: `a` is a key and a prefix of `a/b` and of `ab`.
const KEYS: [&str; 6] = ["a", "a/b", "a/c", "ab", "b", "b/x"];
/// Targets of tree verbs and of the prefix-index checks (`c` matches none).
const PREFIXES: [&str; 7] = ["", "a", "a/", "a/b", "b", "b/", "c"];
/// `n3` is never registered.
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const SERF_HEALTH: &str = "serfHealth";
/// Sessions 1..=4 may be created; session 5 never exists.
const SESSION_CREATABLE: u8 = 4;
const SESSION_NEVER: u8 = 5;

// ---------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    flags: u64,
    lock_index: u64,
    session: Option<SessionId>,
    create: RaftIndex,
    modify: RaftIndex,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    kv: BTreeMap<String, Entry>,
    /// Index of the delete that removed a key that is still absent.
    deleted_at: BTreeMap<String, RaftIndex>,
    /// Registered nodes and whether their serfHealth check is critical.
    nodes: BTreeMap<String, bool>,
    sessions: BTreeMap<SessionId, Session>,
}

/// What one command should produce besides the state change.
#[derive(Debug, Default)]
struct Expected {
    lock_delays: Vec<(String, Duration)>,
    removed: Vec<SessionId>,
    created: Vec<(SessionId, Duration)>,
}

type OpResult = Result<Vec<TxnKvResult>, ()>;

impl Model {
    fn live(&self, key: &str) -> Option<&Entry> {
        self.kv.get(key)
    }

    /// The index a blocking query on `key` waits on (0 if never written).
    fn key_index(&self, key: &str) -> RaftIndex {
        match self.kv.get(key) {
            Some(e) => e.modify,
            None => self.deleted_at.get(key).copied().unwrap_or(0),
        }
    }

    fn prefix_index(&self, prefix: &str) -> RaftIndex {
        let live = self.kv.iter().filter(|(k, _)| k.starts_with(prefix));
        let dead = self
            .deleted_at
            .iter()
            .filter(|(k, _)| k.starts_with(prefix));
        live.map(|(_, e)| e.modify)
            .chain(dead.map(|(_, i)| *i))
            .max()
            .unwrap_or(0)
    }

    fn row(&self, key: &str, include_value: bool) -> TxnKvResult {
        let e = &self.kv[key];
        TxnKvResult {
            key: key.to_string(),
            entry: KvEntry {
                value: if include_value {
                    e.value.clone().into_boxed_slice()
                } else {
                    Box::default()
                },
                flags: e.flags,
                lock_index: e.lock_index,
                session: e.session,
                create_index: e.create,
                modify_index: e.modify,
            },
            include_value,
        }
    }

    /// Stores `key` as given, keeping its CreateIndex. As in Consul's
    /// `kvsSetTxn`, an entry equal to the stored one (value, flags, session,
    /// LockIndex) is not rewritten: its ModifyIndex stays and nothing fires.
    fn put(
        &mut self,
        index: RaftIndex,
        key: &str,
        (value, flags): (&[u8], u64),
        (lock_index, session): (u64, Option<SessionId>),
    ) {
        if let Some(e) = self.kv.get_mut(key) {
            let same = e.value == value
                && e.flags == flags
                && e.lock_index == lock_index
                && e.session == session;
            if !same {
                e.value = value.to_vec();
                e.flags = flags;
                e.lock_index = lock_index;
                e.session = session;
                e.modify = index;
            }
            return;
        }
        self.deleted_at.remove(key);
        let entry = Entry {
            value: value.to_vec(),
            flags,
            lock_index,
            session,
            create: index,
            modify: index,
        };
        self.kv.insert(key.to_string(), entry);
    }

    /// Plain set: keeps the holder and LockIndex. (Consul's plain PUT keeps
    /// the holder but takes LockIndex from the request, i.e. 0; tribune
    /// deliberately keeps it so a held key never shows LockIndex 0.)
    fn set(&mut self, index: RaftIndex, key: &str, value: &[u8], flags: u64) {
        let lock = self
            .live(key)
            .map(|e| (e.lock_index, e.session))
            .unwrap_or((0, None));
        self.put(index, key, (value, flags), lock);
    }

    fn delete(&mut self, index: RaftIndex, key: &str) {
        if self.kv.remove(key).is_some() {
            self.deleted_at.insert(key.to_string(), index);
        }
    }

    fn cas_matches(&self, key: &str, cas: u64) -> bool {
        match self.live(key) {
            None => cas == 0,
            Some(e) => cas != 0 && e.modify == cas,
        }
    }

    /// Acquire: free or already ours; LockIndex grows when the holder
    /// changes (Consul's `kvsLockTxn`).
    fn lock(&mut self, index: RaftIndex, op: &KvOp, session: SessionId) -> bool {
        let (lock_index, holder) = self
            .live(&op.key)
            .map(|e| (e.lock_index, e.session))
            .unwrap_or((0, None));
        let lock_index = match holder {
            Some(h) if h != session => return false,
            Some(_) => lock_index,
            None => lock_index + 1,
        };
        let payload = (op.value.as_slice(), op.flags);
        self.put(index, &op.key, payload, (lock_index, Some(session)));
        true
    }

    /// Release: only by the holder; LockIndex stays (`kvsUnlockTxn`).
    fn unlock(&mut self, index: RaftIndex, op: &KvOp, session: SessionId) -> bool {
        let Some(e) = self.live(&op.key).filter(|e| e.session == Some(session)) else {
            return false;
        };
        let lock_index = e.lock_index;
        let payload = (op.value.as_slice(), op.flags);
        self.put(index, &op.key, payload, (lock_index, None));
        true
    }

    fn session_for_lock(&self, op: &KvOp) -> Result<SessionId, ApplyError> {
        let id = op.session.ok_or(ApplyError::MissingSession)?;
        if self.sessions.contains_key(&id) {
            Ok(id)
        } else {
            Err(ApplyError::SessionUnknown(id))
        }
    }

    /// One write op; `Ok(false)` is a refused CAS/lock/unlock.
    fn write(&mut self, index: RaftIndex, op: &KvOp) -> Result<bool, ApplyError> {
        let key = op.key.as_str();
        Ok(match op.verb {
            KvVerb::Set => {
                self.set(index, key, &op.value, op.flags);
                true
            }
            KvVerb::Cas => {
                let ok = self.cas_matches(key, op.index);
                if ok {
                    self.set(index, key, &op.value, op.flags);
                }
                ok
            }
            KvVerb::Lock => {
                let session = self.session_for_lock(op)?;
                self.lock(index, op, session)
            }
            KvVerb::Unlock => {
                // Consul's kvsUnlockTxn never looks the session up: a dead
                // session simply does not hold the key.
                let session = op.session.ok_or(ApplyError::MissingSession)?;
                self.unlock(index, op, session)
            }
            KvVerb::Delete => {
                self.delete(index, key);
                true
            }
            KvVerb::DeleteCas => match self.live(key) {
                None => true,
                Some(e) if e.modify == op.index => {
                    self.delete(index, key);
                    true
                }
                Some(_) => false,
            },
            KvVerb::DeleteTree => {
                let doomed: Vec<String> = self
                    .kv
                    .keys()
                    .filter(|k| k.starts_with(key))
                    .cloned()
                    .collect();
                for k in doomed {
                    self.delete(index, &k);
                }
                true
            }
            verb => return Err(ApplyError::VerbNotAllowed(verb)),
        })
    }

    fn apply_kv(&mut self, index: RaftIndex, op: &KvOp) -> CommandResult {
        match self.write(index, op) {
            Ok(done) => CommandResult::Bool(done),
            Err(e) => CommandResult::Failed(e),
        }
    }

    /// A txn read verb.
    fn read(&self, op: &KvOp) -> OpResult {
        let key = op.key.as_str();
        let live = self.live(key);
        match op.verb {
            KvVerb::Get => live.map(|_| vec![self.row(key, true)]).ok_or(()),
            // Consul's txnKVS answers a missing key with the request's own
            // entry, value blanked.
            KvVerb::GetOrEmpty => Ok(vec![match live {
                Some(_) => self.row(key, true),
                None => echo_row(op),
            }]),
            KvVerb::GetTree => Ok(self
                .kv
                .keys()
                .filter(|k| k.starts_with(key))
                .map(|k| self.row(k, true))
                .collect()),
            KvVerb::CheckIndex => match live {
                Some(e) if e.modify == op.index => Ok(vec![self.row(key, false)]),
                _ => Err(()),
            },
            // `kvsCheckSessionTxn` compares the holder with the request's
            // session as given: no session checks that the key is unheld.
            KvVerb::CheckSession => match live {
                Some(e) if e.session == op.session => Ok(vec![self.row(key, false)]),
                _ => Err(()),
            },
            KvVerb::CheckNotExists => match live {
                None => Ok(Vec::new()),
                Some(_) => Err(()),
            },
            _ => unreachable!("write verbs are handled by txn_op"),
        }
    }

    fn txn_op(&mut self, index: RaftIndex, op: &KvOp) -> OpResult {
        if op.verb.is_read() {
            return self.read(op);
        }
        match self.write(index, op) {
            Ok(true) => match op.verb {
                KvVerb::Set | KvVerb::Cas | KvVerb::Lock | KvVerb::Unlock => {
                    Ok(vec![self.row(&op.key, false)])
                }
                _ => Ok(Vec::new()),
            },
            Ok(false) | Err(_) => Err(()),
        }
    }

    /// All-or-nothing: every failing op is reported; any failure discards
    /// the working copy.
    fn apply_txn(&mut self, index: RaftIndex, ops: &[KvOp]) -> CommandResult {
        let mut work = self.clone();
        let mut rows = Vec::new();
        let mut failed = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match work.txn_op(index, op) {
                Ok(r) => rows.extend(r),
                Err(()) => failed.push(i),
            }
        }
        if failed.is_empty() {
            *self = work;
            CommandResult::Txn(TxnOutcome::Committed(rows))
        } else {
            // Error texts are core's to word; op indexes are the contract.
            txn_rolled_back_marker(failed)
        }
    }

    fn destroy_session(&mut self, index: RaftIndex, id: SessionId, fx: &mut Expected) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            match session.behavior {
                Behavior::Release => {
                    let e = self.kv.get_mut(&key).expect("held key is live");
                    e.session = None;
                    e.modify = index;
                }
                Behavior::Delete => self.delete(index, &key),
            }
            if session.lock_delay > Duration::ZERO {
                fx.lock_delays.push((key, session.lock_delay));
            }
        }
        fx.removed.push(id);
    }

    fn session_create(
        &mut self,
        index: RaftIndex,
        s: &Session,
        fx: &mut Expected,
    ) -> CommandResult {
        if self.sessions.contains_key(&s.id) {
            return CommandResult::Failed(ApplyError::SessionExists(s.id));
        }
        let Some(&critical) = self.nodes.get(&s.node) else {
            return CommandResult::Failed(ApplyError::SessionNodeUnknown(s.node.clone()));
        };
        for check in &s.node_checks {
            if check != SERF_HEALTH {
                return CommandResult::Failed(ApplyError::SessionCheckUnknown(check.clone()));
            }
            if critical {
                return CommandResult::Failed(ApplyError::SessionCheckCritical(check.clone()));
            }
        }
        let mut stored = s.clone();
        stored.create_index = index;
        stored.modify_index = index;
        self.sessions.insert(s.id, stored);
        fx.created.push((s.id, s.ttl));
        CommandResult::SessionCreated(s.id)
    }

    /// A node's serfHealth turning critical invalidates the sessions that
    /// depend on it (Consul's `checkSessionsTxn`).
    fn health(&mut self, index: RaftIndex, node: &str, critical: bool, fx: &mut Expected) {
        self.nodes.insert(node.to_string(), critical);
        if !critical {
            return;
        }
        let doomed: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| s.node == node && s.node_checks.iter().any(|c| c == SERF_HEALTH))
            .map(|s| s.id)
            .collect();
        for id in doomed {
            self.destroy_session(index, id, fx);
        }
    }

    fn apply(&mut self, index: RaftIndex, cmd: &Command, fx: &mut Expected) -> CommandResult {
        match cmd {
            Command::Kv(op) => self.apply_kv(index, op),
            Command::Txn(ops) => self.apply_txn(index, ops),
            Command::SessionCreate(s) => self.session_create(index, s, fx),
            Command::SessionDestroy { id } => {
                self.destroy_session(index, *id, fx);
                CommandResult::Bool(true)
            }
            Command::Register(reg) => {
                let critical = reg.checks.iter().any(|c| c.status == CheckStatus::Critical);
                self.health(index, &reg.node.name, critical, fx);
                CommandResult::Done
            }
            Command::Deregister { .. }
            | Command::RestoreBegin { .. }
            | Command::RestoreChunk { .. }
            | Command::RestoreCommit { .. }
            | Command::RestoreAbort { .. }
            // Reaping may lower a prefix's index (as Consul's does), which
            // the watermark checks here forbid; tested on its own in
            // core/src/tombstone_gc.rs and core/src/kv.rs.
            | Command::ReapTombstones { .. } => unreachable!("not generated"),
        }
    }

    /// Everything a blocking query on `key` could observe.
    fn key_view(&self, key: &str) -> (Option<Entry>, RaftIndex) {
        (self.kv.get(key).cloned(), self.key_index(key))
    }
}

/// Consul's `get-or-empty` row for a missing key: the request's DirEnt
/// (Key, Flags, Session, Index as ModifyIndex) with a nil value.
fn echo_row(op: &KvOp) -> TxnKvResult {
    TxnKvResult {
        key: op.key.clone(),
        entry: KvEntry {
            value: Box::default(),
            flags: op.flags,
            lock_index: 0,
            session: op.session,
            create_index: 0,
            modify_index: op.index,
        },
        include_value: true,
    }
}

/// A rolled-back txn as the model knows it: only the failing op indexes.
fn txn_rolled_back_marker(failed: Vec<usize>) -> CommandResult {
    CommandResult::Txn(TxnOutcome::RolledBack(
        failed
            .into_iter()
            .map(|op_index| tribune_core::command::TxnError {
                op_index,
                what: String::new(),
            })
            .collect(),
    ))
}

/// Compares results, ignoring the wording of txn errors.
fn same_result(actual: &CommandResult, expected: &CommandResult) -> bool {
    match (actual, expected) {
        (
            CommandResult::Txn(TxnOutcome::RolledBack(a)),
            CommandResult::Txn(TxnOutcome::RolledBack(e)),
        ) => {
            let a: Vec<usize> = a.iter().map(|x| x.op_index).collect();
            let e: Vec<usize> = e.iter().map(|x| x.op_index).collect();
            a == e
        }
        _ => actual == expected,
    }
}

// ---------------------------------------------------------------------------
// Generated steps, made concrete against the model's current state
// ---------------------------------------------------------------------------

/// How a CAS / check-index index relates to the key's current state.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Zero,
    Current,
    Stale,
    Future,
}

/// Which session an op names, resolved against the live sessions.
#[derive(Clone, Copy, Debug)]
enum SessionRef {
    Missing,
    /// The n-th live session (a destroyed one when none is live).
    Live(u8),
    /// The key's current holder (the n-th live session when unheld).
    Holder(u8),
    /// A session that never existed.
    Never,
}

#[derive(Clone, Debug)]
struct OpSpec {
    verb: KvVerb,
    target: usize,
    value: u8,
    flags: u64,
    pick: Pick,
    session: SessionRef,
}

#[derive(Clone, Debug)]
enum Step {
    Kv(OpSpec),
    Txn(Vec<OpSpec>),
    SessionCreate {
        /// `None`: the leader's choice, an unused ID.
        id: Option<u8>,
        node: usize,
        checks: usize,
        behavior: Behavior,
        lock_delay_ms: u64,
        ttl_s: u64,
    },
    SessionDestroy {
        id: u8,
    },
    Health {
        node: usize,
        status: CheckStatus,
    },
}

fn registration(node: &str, status: CheckStatus) -> Registration {
    Registration {
        node: Node {
            id: String::new(),
            name: node.to_string(),
            address: "10.0.0.1".to_string(),
            datacenter: "dc1".to_string(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: false,
        service: None,
        checks: vec![Check {
            node: node.to_string(),
            check_id: SERF_HEALTH.to_string(),
            name: "Serf Health Status".to_string(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: String::new(),
            definition: CheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        }],
    }
}

fn session(id: SessionId, node: &str, checks: &[&str], behavior: Behavior) -> Session {
    Session {
        id,
        name: format!("s{}", id.as_u128()),
        node: node.to_string(),
        node_checks: checks.iter().map(|c| c.to_string()).collect(),
        service_checks: Vec::new(),
        lock_delay: Duration::ZERO,
        behavior,
        ttl: Duration::ZERO,
        create_index: 0,
        modify_index: 0,
    }
}

fn concrete_op(spec: &OpSpec, model: &Model, last_index: RaftIndex) -> KvOp {
    let key = match spec.verb {
        KvVerb::DeleteTree | KvVerb::GetTree => PREFIXES[spec.target % PREFIXES.len()],
        _ => KEYS[spec.target % KEYS.len()],
    };
    let current = model.live(key).map(|e| e.modify);
    let index = match (spec.pick, current) {
        (Pick::Zero, _) => 0,
        (Pick::Current, Some(m)) => m,
        (Pick::Current, None) => model.key_index(key).max(1),
        (Pick::Stale, Some(m)) if m > 1 => m - 1,
        (Pick::Stale, Some(m)) => m + 1,
        (Pick::Stale, None) => model.key_index(key) + 1,
        (Pick::Future, _) => last_index + 1,
    };
    KvOp {
        verb: spec.verb,
        key: key.to_string(),
        value: match spec.value {
            0 => Vec::new(),
            v => vec![b'v', v],
        },
        flags: spec.flags,
        index,
        session: match spec.session {
            SessionRef::Missing => None,
            SessionRef::Live(n) => Some(live_session(model, n)),
            SessionRef::Holder(n) => model
                .live(key)
                .and_then(|e| e.session)
                .or_else(|| Some(live_session(model, n))),
            SessionRef::Never => Some(Uuid::new(u128::from(SESSION_NEVER))),
        },
    }
}

fn live_session(model: &Model, n: u8) -> SessionId {
    let live: Vec<SessionId> = model.sessions.keys().copied().collect();
    match live.len() {
        0 => Uuid::new(u128::from(n % SESSION_CREATABLE + 1)),
        len => live[usize::from(n) % len],
    }
}

/// The ID the leader would pick: the lowest unused one.
fn fresh_id(model: &Model) -> u8 {
    (1..=SESSION_CREATABLE)
        .find(|n| !model.sessions.contains_key(&Uuid::new(u128::from(*n))))
        .unwrap_or(1)
}

fn concrete(step: &Step, model: &Model, last_index: RaftIndex) -> Command {
    match step {
        Step::Kv(spec) => Command::Kv(concrete_op(spec, model, last_index)),
        Step::Txn(specs) => Command::Txn(
            specs
                .iter()
                .map(|s| concrete_op(s, model, last_index))
                .collect(),
        ),
        Step::SessionCreate {
            id,
            node,
            checks,
            behavior,
            lock_delay_ms,
            ttl_s,
        } => {
            let checks: &[&str] = match checks {
                0 => &[],
                1 => &[SERF_HEALTH],
                _ => &["missing"],
            };
            let id = id.unwrap_or_else(|| fresh_id(model));
            let mut s = session(Uuid::new(u128::from(id)), NODES[*node], checks, *behavior);
            s.lock_delay = Duration::from_millis(*lock_delay_ms);
            s.ttl = Duration::from_secs(*ttl_s);
            Command::SessionCreate(Box::new(s))
        }
        Step::SessionDestroy { id } => Command::SessionDestroy {
            id: Uuid::new(u128::from(*id)),
        },
        Step::Health { node, status } => {
            Command::Register(Box::new(registration(NODES[*node], *status)))
        }
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        2 => Just(Pick::Zero),
        4 => Just(Pick::Current),
        2 => Just(Pick::Stale),
        1 => Just(Pick::Future),
    ]
}

fn session_ref() -> impl Strategy<Value = SessionRef> {
    prop_oneof![
        1 => Just(SessionRef::Missing),
        8 => (0..SESSION_CREATABLE).prop_map(SessionRef::Live),
        5 => (0..SESSION_CREATABLE).prop_map(SessionRef::Holder),
        1 => Just(SessionRef::Never),
    ]
}

fn kv_verb() -> impl Strategy<Value = KvVerb> {
    prop_oneof![
        4 => Just(KvVerb::Set),
        3 => Just(KvVerb::Cas),
        6 => Just(KvVerb::Lock),
        4 => Just(KvVerb::Unlock),
        2 => Just(KvVerb::Delete),
        2 => Just(KvVerb::DeleteCas),
        1 => Just(KvVerb::DeleteTree),
        // A read verb outside a txn must be refused.
        1 => Just(KvVerb::Get),
    ]
}

fn txn_verb() -> impl Strategy<Value = KvVerb> {
    prop_oneof![
        kv_verb(),
        prop::sample::select(vec![
            KvVerb::Get,
            KvVerb::GetOrEmpty,
            KvVerb::GetTree,
            KvVerb::CheckIndex,
            KvVerb::CheckSession,
            KvVerb::CheckNotExists,
        ]),
    ]
}

fn op_spec(verb: impl Strategy<Value = KvVerb>) -> impl Strategy<Value = OpSpec> {
    (
        verb,
        0..PREFIXES.len(),
        0u8..4,
        0u64..3,
        pick(),
        session_ref(),
    )
        .prop_map(|(verb, target, value, flags, pick, session)| OpSpec {
            verb,
            target,
            value,
            flags,
            pick,
            session,
        })
}

fn step() -> impl Strategy<Value = Step> {
    let create = (
        prop_oneof![4 => Just(None), 1 => (1..=SESSION_CREATABLE).prop_map(Some)],
        prop_oneof![9 => 0..2usize, 1 => Just(2usize)],
        prop_oneof![3 => Just(0usize), 6 => Just(1usize), 1 => Just(2usize)],
        prop_oneof![Just(Behavior::Release), Just(Behavior::Delete)],
        prop::sample::select(vec![0u64, 15_000]),
        prop::sample::select(vec![0u64, 10, 3600]),
    )
        .prop_map(
            |(id, node, checks, behavior, lock_delay_ms, ttl_s)| Step::SessionCreate {
                id,
                node,
                checks,
                behavior,
                lock_delay_ms,
                ttl_s,
            },
        );
    let status = prop_oneof![
        3 => Just(CheckStatus::Passing),
        1 => Just(CheckStatus::Warning),
        2 => Just(CheckStatus::Critical),
    ];
    prop_oneof![
        10 => op_spec(kv_verb()).prop_map(Step::Kv),
        4 => prop::collection::vec(op_spec(txn_verb()), 1..=5).prop_map(Step::Txn),
        3 => create,
        2 => (1..=SESSION_NEVER).prop_map(|id| Step::SessionDestroy { id }),
        1 => (0..2usize, status).prop_map(|(node, status)| Step::Health { node, status }),
    ]
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The highest blocking indexes seen so far, which must never go down.
#[derive(Clone, Debug, Default)]
struct Watermarks {
    keys: [RaftIndex; KEYS.len()],
    prefixes: [RaftIndex; PREFIXES.len()],
    tables: TableIndexes,
}

/// What the HTTP layer answers as `X-Consul-Index`: the key's or prefix's
/// own index, or the KV table's when nothing was ever stored there.
fn blocking(fsm: &Fsm, index: RaftIndex) -> RaftIndex {
    if index == 0 {
        fsm.indexes.kv
    } else {
        index
    }
}

fn check_state(fsm: &Fsm, model: &Model) -> Result<(), TestCaseError> {
    let actual: Vec<(String, Entry)> = fsm
        .kv
        .list("")
        .map(|(k, e)| {
            let entry = Entry {
                value: e.value.to_vec(),
                flags: e.flags,
                lock_index: e.lock_index,
                session: e.session,
                create: e.create_index,
                modify: e.modify_index,
            };
            (k.to_string(), entry)
        })
        .collect();
    let expected: Vec<(String, Entry)> = model
        .kv
        .iter()
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    prop_assert_eq!(actual, expected, "KV entries");
    prop_assert_eq!(fsm.kv.tombstone_count(), model.deleted_at.len());
    for key in KEYS {
        prop_assert_eq!(fsm.kv.key_index(key), model.key_index(key), "key {}", key);
    }
    for prefix in PREFIXES {
        let (actual, expected) = (fsm.kv.prefix_index(prefix), model.prefix_index(prefix));
        prop_assert_eq!(actual, expected, "prefix {:?}", prefix);
    }
    prop_assert_eq!(&fsm.sessions.by_id, &model.sessions, "sessions");
    for (node, critical) in &model.nodes {
        let check = fsm
            .catalog
            .checks
            .get(&(node.clone(), SERF_HEALTH.to_string()));
        let status = check.map(|c| c.status.is_critical());
        prop_assert_eq!(status, Some(*critical), "serfHealth of {}", node);
    }
    Ok(())
}

fn check_indexes(fsm: &Fsm, marks: &mut Watermarks) -> Result<(), TestCaseError> {
    for (i, key) in KEYS.iter().enumerate() {
        let now = blocking(fsm, fsm.kv.key_index(key));
        prop_assert!(
            now >= marks.keys[i],
            "key {key} index {now} < {}",
            marks.keys[i]
        );
        marks.keys[i] = now;
    }
    for (i, prefix) in PREFIXES.iter().enumerate() {
        let now = blocking(fsm, fsm.kv.prefix_index(prefix));
        let before = marks.prefixes[i];
        prop_assert!(now >= before, "prefix {prefix:?} index {now} < {before}");
        marks.prefixes[i] = now;
    }
    let (t, old) = (fsm.indexes, marks.tables);
    let pairs = [
        (t.kv, old.kv),
        (t.nodes, old.nodes),
        (t.services, old.services),
        (t.checks, old.checks),
        (t.sessions, old.sessions),
    ];
    for (now, before) in pairs {
        prop_assert!(now >= before, "table index went from {before} to {now}");
        prop_assert!(now <= fsm.last_applied, "table index {now} is ahead");
    }
    // A table-wide blocking query must see every row change.
    prop_assert!(t.kv >= fsm.kv.prefix_index(""));
    let newest_session = fsm.sessions.by_id.values().map(|s| s.modify_index).max();
    prop_assert!(t.sessions >= newest_session.unwrap_or(0));
    marks.tables = t;
    Ok(())
}

fn check_effects(
    fx: &Effects,
    expected: Expected,
    before: &Model,
    after: &Model,
) -> Result<(), TestCaseError> {
    let mut delays = fx.lock_delays.clone();
    let mut want_delays = expected.lock_delays;
    delays.sort();
    want_delays.sort();
    prop_assert_eq!(delays, want_delays, "lock-delays");
    let mut removed = fx.sessions_removed.clone();
    let mut want_removed = expected.removed;
    removed.sort();
    want_removed.sort();
    prop_assert_eq!(removed, want_removed, "sessions removed");
    prop_assert_eq!(&fx.sessions_created, &expected.created, "sessions created");
    // Every observable change must wake its watchers.
    for key in KEYS {
        if before.key_view(key) != after.key_view(key) {
            let touched = fx.touched.contains(&WatchKey::Kv(key.to_string()));
            prop_assert!(touched, "{key} changed but was not touched");
        }
    }
    if before.sessions != after.sessions {
        let touched = fx.touched.contains(&WatchKey::Table(Table::Sessions));
        prop_assert!(touched, "sessions changed but the table was not touched");
    }
    Ok(())
}

/// Applies one command to both sides and checks everything.
fn step_both(
    fsm: &mut Fsm,
    model: &mut Model,
    marks: &mut Watermarks,
    index: RaftIndex,
    cmd: &Command,
) -> Result<CommandResult, TestCaseError> {
    prop_assert_eq!(Command::decode(&cmd.encode()), Ok(cmd.clone()));
    let (kv_before, model_before) = (fsm.kv.clone(), model.clone());
    let mut fx = Effects::default();
    let actual = fsm.apply(index, cmd, &mut fx);
    let mut expected_fx = Expected::default();
    let expected = model.apply(index, cmd, &mut expected_fx);
    prop_assert!(
        same_result(&actual, &expected),
        "command {:?}\n  got      {:?}\n  expected {:?}",
        cmd,
        actual,
        expected
    );
    prop_assert_eq!(fsm.last_applied, index);
    fsm.check_invariants();
    let context = |e: TestCaseError| TestCaseError::fail(format!("after {cmd:?} at {index}: {e}"));
    check_state(fsm, model).map_err(context)?;
    let kv_unchanged = model.kv == model_before.kv && model.deleted_at == model_before.deleted_at;
    if kv_unchanged {
        // Refused writes and rolled-back txns leave no trace at all.
        prop_assert_eq!(&fsm.kv, &kv_before, "store changed by {:?}", cmd);
    }
    check_effects(&fx, expected_fx, &model_before, model).map_err(context)?;
    check_indexes(fsm, marks).map_err(context)?;
    Ok(actual)
}

fn run(steps: &[(Step, RaftIndex)], split: Index) -> Result<(), TestCaseError> {
    let mut fsm = Fsm::default();
    let mut model = Model::default();
    let mut marks = Watermarks::default();
    let mut log: Vec<(RaftIndex, Command)> = Vec::new();
    let mut results = Vec::new();
    let setup = NODES[..2]
        .iter()
        .map(|n| Command::Register(Box::new(registration(n, CheckStatus::Passing))));
    let mut pending: Vec<Command> = setup.collect();
    pending.reverse();
    let split_at = split.index(steps.len() + pending.len() + 1);
    let mut middle: Option<Vec<u8>> = None;
    let mut index: RaftIndex = 0;
    let mut steps = steps.iter();
    loop {
        let (gap, cmd) = match pending.pop() {
            Some(cmd) => (1, cmd),
            None => match steps.next() {
                Some((step, gap)) => (*gap, concrete(step, &model, index)),
                None => break,
            },
        };
        if log.len() == split_at {
            let bytes = fsm.snapshot();
            prop_assert_eq!(Fsm::restore(&bytes), Ok(fsm.clone()));
            middle = Some(bytes);
        }
        index += gap;
        results.push(step_both(&mut fsm, &mut model, &mut marks, index, &cmd)?);
        log.push((index, cmd));
    }
    prop_assert_eq!(Fsm::restore(&fsm.snapshot()), Ok(fsm.clone()));
    // restore(snapshot) + replay of the rest == the original.
    let middle = middle.unwrap_or_else(|| fsm.snapshot());
    let mut replica = Fsm::restore(&middle).expect("restores");
    for ((index, cmd), want) in log[split_at..].iter().zip(&results[split_at..]) {
        let got = replica.apply(*index, cmd, &mut Effects::default());
        prop_assert_eq!(&got, want, "replay of {:?} at {}", cmd, index);
    }
    prop_assert_eq!(replica, fsm);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fsm_matches_reference_model(
        steps in prop::collection::vec((step(), 1u64..=3), 1..=60),
        split in any::<Index>(),
    ) {
        run(&steps, split)?;
    }
}

// ---------------------------------------------------------------------------
// Leader-side time: lock-delay and session TTL
// ---------------------------------------------------------------------------

/// An FSM and a leader fed every apply's effects, as the shell does.
struct Cluster {
    fsm: Fsm,
    leader: Leader,
    index: RaftIndex,
}

impl Cluster {
    fn new() -> Cluster {
        let fsm = Fsm::default();
        let leader = Leader::new(Instant::from_nanos(0), 7, &fsm);
        let mut cluster = Cluster {
            fsm,
            leader,
            index: 0,
        };
        let reg = Command::Register(Box::new(registration("n1", CheckStatus::Passing)));
        assert_eq!(
            cluster.apply(Instant::from_nanos(0), reg),
            CommandResult::Done
        );
        cluster
    }

    /// Prepares, applies and reports back, like the leader's write path.
    fn apply(&mut self, now: Instant, mut cmd: Command) -> CommandResult {
        if let Err(answer) = self.leader.prepare(now, &self.fsm, &mut cmd) {
            return answer;
        }
        self.index += 1;
        let mut fx = Effects::default();
        let result = self.fsm.apply(self.index, &cmd, &mut fx);
        self.leader.on_applied(now, &fx);
        self.leader.check_invariants();
        self.fsm.check_invariants();
        result
    }

    fn create(&mut self, now: Instant, s: Session) -> SessionId {
        match self.apply(now, Command::SessionCreate(Box::new(s))) {
            CommandResult::SessionCreated(id) => id,
            other => panic!("session not created: {other:?}"),
        }
    }
}

fn lock_op(key: &str, id: SessionId) -> KvOp {
    KvOp {
        session: Some(id),
        ..KvOp::new(KvVerb::Lock, key)
    }
}

/// Would the leader let `id` try to acquire `key` at `now`?
fn lock_allowed(cluster: &mut Cluster, now: Instant, key: &str, id: SessionId) -> bool {
    let mut cmd = Command::Kv(lock_op(key, id));
    match cluster.leader.prepare(now, &cluster.fsm, &mut cmd) {
        Ok(()) => true,
        Err(CommandResult::Bool(false)) => false,
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After a session holding keys is invalidated at T with lock-delay D,
    /// acquiring those keys is refused for T <= now < T+D and allowed from
    /// T+D on (Consul's `KVSLockDelay`); other keys and plain writes are
    /// never delayed.
    #[test]
    fn lock_delay_refuses_acquire_until_it_elapses(
        delay_ms in 1u64..=60_000,
        destroyed_at_ns in 1u64..1 << 50,
        delete_behavior in any::<bool>(),
        via_health in any::<bool>(),
    ) {
        let behavior = if delete_behavior { Behavior::Delete } else { Behavior::Release };
        let start = Instant::from_nanos(0);
        let mut c = Cluster::new();
        let mut holder = session(Uuid::UNASSIGNED, "n1", &[SERF_HEALTH], behavior);
        holder.lock_delay = Duration::from_millis(delay_ms);
        let holder = c.create(start, holder);
        let other = c.create(start, session(Uuid::UNASSIGNED, "n1", &[], Behavior::Release));
        prop_assert_ne!(holder, other, "the leader assigns distinct IDs");
        for key in ["a", "a/b"] {
            prop_assert_eq!(c.apply(start, Command::Kv(lock_op(key, holder))), CommandResult::Bool(true));
        }
        let t = Instant::from_nanos(destroyed_at_ns);
        let invalidate = if via_health {
            Command::Register(Box::new(registration("n1", CheckStatus::Critical)))
        } else {
            Command::SessionDestroy { id: holder }
        };
        c.apply(t, invalidate);
        prop_assert!(c.fsm.sessions.get(holder).is_none());
        prop_assert!(c.fsm.sessions.get(other).is_some());
        let until = t + Duration::from_millis(delay_ms);
        let just_before = Instant::from_nanos(until.0 - 1);
        for now in [t, Instant::from_nanos(t.0 + (until.0 - t.0) / 2), just_before] {
            prop_assert!(!lock_allowed(&mut c, now, "a/b", other), "acquired at {now:?} < {until:?}");
            prop_assert!(!lock_allowed(&mut c, now, "a", other));
            prop_assert!(lock_allowed(&mut c, now, "b", other), "unrelated key delayed");
            let mut txn = Command::Txn(vec![
                KvOp::new(KvVerb::Set, "b"),
                lock_op("a/b", other),
            ]);
            let refused = c.leader.prepare(now, &c.fsm, &mut txn);
            let op_indexes = match refused {
                Err(CommandResult::Txn(TxnOutcome::RolledBack(errors))) => {
                    errors.iter().map(|e| e.op_index).collect::<Vec<_>>()
                }
                other => return Err(TestCaseError::fail(format!("txn not refused: {other:?}"))),
            };
            prop_assert_eq!(op_indexes, vec![1]);
            let mut set = Command::Kv(KvOp::new(KvVerb::Set, "a/b"));
            prop_assert!(c.leader.prepare(now, &c.fsm, &mut set).is_ok(), "plain set delayed");
        }
        // Forgetting stale delays must not forget live ones.
        c.leader.handle_timeout(just_before);
        prop_assert!(!lock_allowed(&mut c, just_before, "a/b", other));
        prop_assert!(lock_allowed(&mut c, until, "a/b", other));
        c.leader.handle_timeout(until);
        prop_assert!(lock_allowed(&mut c, until, "a", other));
        prop_assert_eq!(c.apply(until, Command::Kv(lock_op("a/b", other))), CommandResult::Bool(true));
    }

    /// A TTL session expires at 2×TTL after creation or its last renewal;
    /// expiry is a proposed `SessionDestroy`.
    #[test]
    fn session_ttl_expires_at_twice_the_ttl_and_renew_defers_it(
        ttl_s in 10u64..=86_400,
        created_at_ns in 0u64..1 << 50,
        renew_permille in 1u64..1000,
    ) {
        let ttl = Duration::from_secs(ttl_s);
        let created = Instant::from_nanos(created_at_ns);
        let mut c = Cluster::new();
        let mut s = session(Uuid::UNASSIGNED, "n1", &[], Behavior::Release);
        s.ttl = ttl;
        let id = c.create(created, s);
        c.create(created, session(Uuid::UNASSIGNED, "n1", &[], Behavior::Release));
        let first = created + ttl.saturating_mul(2);
        prop_assert_eq!(c.leader.poll_timeout(), Some(first), "untimed session armed a timer");

        c.leader.handle_timeout(Instant::from_nanos(first.0 - 1));
        prop_assert_eq!(c.leader.poll(), None);
        let renewed = Instant::from_nanos(created.0 + (first.0 - created.0) * renew_permille / 1000);
        prop_assert_eq!(c.leader.renew(renewed, &c.fsm, id).map(|s| s.id), Some(id));
        let second = renewed + ttl.saturating_mul(2);
        prop_assert_eq!(c.leader.poll_timeout(), Some(second));

        c.leader.handle_timeout(first);
        prop_assert_eq!(c.leader.poll(), None, "renewed session expired at the old deadline");
        c.leader.handle_timeout(Instant::from_nanos(second.0 - 1));
        prop_assert_eq!(c.leader.poll(), None);
        c.leader.handle_timeout(second);
        let destroy = Command::SessionDestroy { id };
        prop_assert_eq!(c.leader.poll(), Some(Output::Propose(destroy.clone())));
        prop_assert_eq!(c.leader.poll(), None);
        // Proposed again later unless the destroy is applied first.
        prop_assert_eq!(c.leader.poll_timeout(), Some(second + SESSION_EXPIRY_RETRY));
        c.leader.check_invariants();

        prop_assert_eq!(c.apply(second, destroy), CommandResult::Bool(true));
        prop_assert_eq!(c.leader.poll_timeout(), None);
        prop_assert!(c.fsm.sessions.get(id).is_none());
        prop_assert!(c.leader.renew(second, &c.fsm, id).is_none());
    }
}

#[test]
fn destroying_a_ttl_session_disarms_its_timer() {
    let mut c = Cluster::new();
    let mut s = session(Uuid::UNASSIGNED, "n1", &[], Behavior::Release);
    s.ttl = Duration::from_secs(10);
    let id = c.create(Instant::from_nanos(5), s);
    assert!(c.leader.poll_timeout().is_some());
    c.apply(Instant::from_nanos(6), Command::SessionDestroy { id });
    assert_eq!(c.leader.poll_timeout(), None);
    c.leader.handle_timeout(Instant::from_nanos(u64::MAX));
    assert_eq!(c.leader.poll(), None);
}

/// An expiry whose proposal never committed (the leader lost its quorum
/// for a while, the entry was dropped) is proposed again, a retry interval
/// later, for as long as the session is in the store; a renewal in
/// between arms a fresh TTL instead.
#[test]
fn an_expiry_that_did_not_commit_is_proposed_again() {
    let mut c = Cluster::new();
    let mut s = session(Uuid::UNASSIGNED, "n1", &[], Behavior::Release);
    s.ttl = Duration::from_secs(10);
    let id = c.create(Instant::from_nanos(0), s);
    let deadline = Instant::from_nanos(0) + Duration::from_secs(20);
    let destroy = Output::Propose(Command::SessionDestroy { id });
    c.leader.handle_timeout(deadline);
    assert_eq!(c.leader.poll(), Some(destroy.clone()));
    // Lost: nothing applied.
    let retry = deadline + SESSION_EXPIRY_RETRY;
    c.leader.handle_timeout(Instant::from_nanos(retry.0 - 1));
    assert_eq!(c.leader.poll(), None);
    c.leader.handle_timeout(retry);
    assert_eq!(c.leader.poll(), Some(destroy.clone()));
    c.leader.check_invariants();
    // Backing off: twice the wait before the next one.
    let again = retry + SESSION_EXPIRY_RETRY.saturating_mul(2);
    assert_eq!(c.leader.poll_timeout(), Some(again));
    c.leader.handle_timeout(again);
    assert_eq!(c.leader.poll(), Some(destroy.clone()));
    let retry = again;
    // Renewed before the retry committed: a full TTL again.
    assert!(c.leader.renew(retry, &c.fsm, id).is_some());
    let renewed_deadline = retry + Duration::from_secs(20);
    assert_eq!(c.leader.poll_timeout(), Some(renewed_deadline));
    c.leader.handle_timeout(renewed_deadline);
    assert_eq!(c.leader.poll(), Some(destroy));
    c.apply(renewed_deadline, Command::SessionDestroy { id });
    assert_eq!(c.leader.poll_timeout(), None);
}

// ---------------------------------------------------------------------------
// Consul behaviours the model encodes, each on its own (minimal cases)
// ---------------------------------------------------------------------------

fn set_op(key: &str, value: &[u8]) -> Command {
    Command::Kv(KvOp {
        value: value.to_vec(),
        ..KvOp::new(KvVerb::Set, key)
    })
}

/// Consul's `kvsSetTxn` does not rewrite an entry equal to the stored one
/// (`existing.Equal(entry)`): ModifyIndex stays, blocking queries on the key
/// do not wake, and a txn row shows the old ModifyIndex.
#[test]
fn unchanged_set_keeps_modify_index() {
    let mut fsm = Fsm::default();
    fsm.apply(1, &set_op("k", b"v"), &mut Effects::default());
    assert_eq!(
        fsm.apply(2, &set_op("k", b"v"), &mut Effects::default()),
        CommandResult::Bool(true)
    );
    assert_eq!(fsm.kv.get("k").map(|e| e.modify_index), Some(1));
}

/// Consul's `txnKVS` answers `get-or-empty` on a missing key with one row:
/// the request's entry with a nil value.
#[test]
fn get_or_empty_on_a_missing_key_returns_an_empty_row() {
    let fsm = Fsm::default();
    let op = KvOp::new(KvVerb::GetOrEmpty, "missing");
    let expected = TxnOutcome::Committed(vec![echo_row(&op)]);
    assert_eq!(fsm.read_txn(&[op]), expected);
}

/// Consul's `kvsCheckSessionTxn` compares the holder with the session as
/// given, so `check-session` without a session passes on an unheld key.
#[test]
fn check_session_without_session_passes_on_an_unheld_key() {
    let mut fsm = Fsm::default();
    fsm.apply(1, &set_op("k", b"v"), &mut Effects::default());
    let outcome = fsm.read_txn(&[KvOp::new(KvVerb::CheckSession, "k")]);
    let rows = match outcome {
        TxnOutcome::Committed(rows) => rows,
        other => panic!("check-session refused: {other:?}"),
    };
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].key.as_str(), rows[0].entry.session), ("k", None));
}

/// Deleted keys' tombstones are reaped by a leader-proposed
/// `ReapTombstones` once a tombstone TTL (rounded up to its granularity)
/// has passed, oldest first; a new leader reaps what it inherited a TTL
/// after taking over.
#[test]
fn tombstones_are_reaped_a_ttl_after_the_delete() {
    use tribune_core::limits::{TOMBSTONE_GRANULARITY, TOMBSTONE_TTL};
    let secs = |s: u64| Instant::from_nanos(s * 1_000_000_000);
    let mut c = Cluster::new();
    for key in ["a/1", "a/2", "b/1"] {
        let set = Command::Kv(KvOp {
            value: b"v".to_vec(),
            ..KvOp::new(KvVerb::Set, key)
        });
        assert_eq!(c.apply(secs(0), set), CommandResult::Bool(true));
    }
    let delete = |key: &str| Command::Kv(KvOp::new(KvVerb::Delete, key));
    assert_eq!(c.apply(secs(10), delete("a/1")), CommandResult::Bool(true));
    let first = c.index;
    assert_eq!(c.apply(secs(100), delete("b/1")), CommandResult::Bool(true));
    let second = c.index;
    assert_eq!(c.fsm.kv.tombstone_count(), 2);
    assert_eq!(c.fsm.kv.key_index("a/1"), first);

    // 10 s + 15 min, rounded up to 30 s.
    let due = secs(930);
    assert_eq!(TOMBSTONE_TTL, Duration::from_secs(900));
    assert_eq!(TOMBSTONE_GRANULARITY, Duration::from_secs(30));
    assert_eq!(c.leader.poll_timeout(), Some(due));
    c.leader.handle_timeout(secs(929));
    assert_eq!(c.leader.poll(), None);
    c.leader.handle_timeout(due);
    let reap = Command::ReapTombstones { index: first };
    assert_eq!(c.leader.poll(), Some(Output::Propose(reap.clone())));
    let mut fx = Effects::default();
    c.index += 1;
    assert_eq!(c.fsm.apply(c.index, &reap, &mut fx), CommandResult::Done);
    c.fsm.check_invariants();
    // Waiters on the key wake; its index falls back to the table's.
    assert_eq!(fx.touched, vec![WatchKey::Kv("a/1".into())]);
    assert_eq!(c.fsm.kv.tombstone_count(), 1);
    assert_eq!(c.fsm.kv.key_index("a/1"), 0);
    assert_eq!(c.fsm.kv.key_index("b/1"), second);

    // A new leader at 500 s knows only the store: it reaps b/1 at
    // 500 s + 15 min (rounded up to 30 s), not at 100 s + 15 min.
    c.leader = Leader::new(secs(500), 9, &c.fsm);
    assert_eq!(c.leader.poll_timeout(), Some(secs(1410)));
    c.leader.handle_timeout(secs(1410));
    assert_eq!(
        c.leader.poll(),
        Some(Output::Propose(Command::ReapTombstones { index: second }))
    );
}

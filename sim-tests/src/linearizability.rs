//! Invariant: consistent-mode KV operations are linearizable.
//!
//! Every operation must appear to take effect atomically at one instant
//! between its invoke and its completion, in one total order that a single
//! register per key could have produced (Herlihy & Wing). The checker:
//!
//! 1. **Splits the history by key.** Linearizability is local (P-
//!    compositional): a history is linearizable iff each key's
//!    sub-history is, so each key is searched on its own.
//! 2. **Drops what cannot constrain the order.** `fail` operations definitely
//!    did not take effect, and a read whose outcome is unknown observed
//!    nothing; both are dropped. A `fail` CAS did observe "not the expected
//!    value", but dropping it only makes the check weaker, never wrong.
//! 3. **Models unknown outcomes as optional operations.** An `info` write,
//!    CAS or delete may take effect at any point after its invoke, or never:
//!    its completion time is +∞, and the search succeeds as soon as every
//!    *definite* (`ok`) operation is placed, so an unknown operation that is
//!    never placed is an operation that never happened. An unknown CAS placed
//!    where the register does not hold its expected value fails there and
//!    changes nothing. An unknown operation whose resulting value no read and
//!    no CAS ever observes is removed up front: placing it can only make
//!    later reads fail, so omitting it is always at least as good (this keeps
//!    timeouts of never-observed writes from widening the search). During
//!    the search an unknown operation is placed only where it changes the
//!    value to one that a pending operation observes: any linearization can
//!    be rewritten into one where each unknown operation that stays is
//!    immediately followed by an observer of its value (drop the ones that
//!    are not: the next operation overwrites the value, or is an unknown CAS
//!    that can be dropped as well), so nothing is lost, and timed-out writes
//!    no longer multiply the configurations to explore. For the same reason,
//!    of several pending unknown operations with the same effect (two
//!    timed-out deletes) only the earliest is tried: they have no deadline,
//!    so they are interchangeable.
//! 4. **Searches** with Wing & Gong's algorithm as improved by Lowe and by
//!    Porcupine: call and completion entries sorted by time in a doubly
//!    linked list; at each step, try to place the earliest pending calls (any
//!    call before the first completion still in the list); placing one lifts
//!    its call and completion out of the list; reaching a completion means
//!    that operation was not placed in time, so undo the last placement
//!    (backtrack) and try the next candidate. A set of visited (placed
//!    operations, register value) configurations, hashed incrementally,
//!    prunes every configuration already explored.
//!
//! At equal timestamps calls sort before completions, so operations that
//! touch the same instant count as concurrent (the lenient reading).
//!
//! Every key starts absent. The search order is fixed (time, then position
//! in the history), and the visited set is only queried, never iterated, so
//! the verdict and every message are deterministic.
//!
//! On a violation the report names the key, the longest linearizable prefix
//! the search reached, the register value after it and the operations that
//! could not be placed next, with their lines, processes, times and values.

use crate::history::{Call, History, Operation, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Register value: an interned string, or [`ABSENT`].
type Value = u32;
const ABSENT: Value = Value::MAX;
const NIL: usize = usize::MAX;
const HEAD: usize = 0;
/// Operations of the prefix shown in an explanation (the full prefix is in
/// [`Violation::prefix`]).
const PREFIX_SHOWN_MAX: usize = 8;
const PENDING_SHOWN_MAX: usize = 16;

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub operations: usize,
    pub keys: usize,
    /// One per non-linearizable key, in key order.
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Why one key's operations are not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// Operations of the key that had to be placed (`ok` ones).
    pub definite_operations: usize,
    /// The longest linearizable prefix the search reached, as indices into
    /// `History::operations`, in linearization order.
    pub prefix: Vec<usize>,
    /// The last operations of that prefix (at most 8), for messages.
    pub prefix_tail: Vec<Operation>,
    /// The key's value after the prefix (`None`: absent).
    pub value_after_prefix: Option<String>,
    /// The operations that could be placed next, none of which leads to a
    /// linearization, in call order.
    pub unplaced: Vec<Unplaced>,
    /// The completed operation that must precede every operation invoked
    /// after its completion, and that no order of `unplaced` reaches.
    pub deadline: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub operation: Operation,
    /// Why it cannot be placed right after the prefix; `None` when it can,
    /// but every continuation from there fails.
    pub conflict: Option<String>,
}

/// Checks a whole history, key by key (in key order).
pub fn check(history: &History) -> Report {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.operations.iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(index);
    }
    let violations = by_key
        .iter()
        .filter_map(|(key, indices)| check_key(history, key, indices))
        .collect();
    Report {
        operations: history.operations.len(),
        keys: by_key.len(),
        violations,
    }
}

/// One step of the register model.
#[derive(Clone, Copy, Debug)]
enum Step {
    Read(Value),
    Write(Value),
    Cas {
        expected: Value,
        value: Value,
    },
    /// A CAS with an unknown outcome: swaps if the register holds `expected`
    /// where it is placed, else does nothing.
    MaybeCas {
        expected: Value,
        value: Value,
    },
    Delete,
}

impl Step {
    /// The register after this step from `state`, or `None` if the step's
    /// observation contradicts `state`.
    fn apply(self, state: Value) -> Option<Value> {
        match self {
            Step::Read(value) => (state == value).then_some(state),
            Step::Write(value) => Some(value),
            Step::Cas { expected, value } => (state == expected).then_some(value),
            Step::MaybeCas { expected, value } => {
                Some(if state == expected { value } else { state })
            }
            Step::Delete => Some(ABSENT),
        }
    }

    /// The value this step requires the register to hold, if any.
    fn observes(self) -> Option<Value> {
        match self {
            Step::Read(value) => Some(value),
            Step::Cas { expected, .. } | Step::MaybeCas { expected, .. } => Some(expected),
            Step::Write(_) | Step::Delete => None,
        }
    }

    /// Equal for steps with the same effect and observation.
    fn identity(self) -> (u8, Value, Value) {
        match self {
            Step::Read(value) => (0, value, 0),
            Step::Write(value) => (1, value, 0),
            Step::Cas { expected, value } => (2, expected, value),
            Step::MaybeCas { expected, value } => (3, expected, value),
            Step::Delete => (4, 0, 0),
        }
    }

    /// The value this step leaves if it takes effect.
    fn result(self) -> Value {
        match self {
            Step::Read(value) | Step::Write(value) => value,
            Step::Cas { value, .. } | Step::MaybeCas { value, .. } => value,
            Step::Delete => ABSENT,
        }
    }
}

/// An operation of one key, as the search sees it.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    history_index: usize,
    step: Step,
    /// `ok`: must be placed. Unknown outcomes may be left out.
    definite: bool,
    call: u64,
    /// `None`: +∞ (unknown outcome).
    complete: Option<u64>,
}

/// Strings of one key interned to [`Value`]s.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, Value>,
    strings: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, value: Option<&'a str>) -> Value {
        let Some(text) = value else { return ABSENT };
        *self.ids.entry(text).or_insert_with(|| {
            self.strings.push(text);
            Value::try_from(self.strings.len() - 1).expect("fewer than 2^32 values per key")
        })
    }

    fn lookup(&self, value: Value) -> Option<String> {
        (value != ABSENT).then(|| self.strings[value as usize].to_owned())
    }
}

fn check_key(history: &History, key: &str, indices: &[usize]) -> Option<Violation> {
    let mut values = Interner::default();
    let ops = key_operations(history, indices, &mut values);
    // Copying the prefix at every new deepest dead end would cost O(n) each
    // time, O(n^2) over a long key; so the first pass only measures the
    // depth, and a failing key is searched again (the same path: the search
    // is deterministic) to capture the first dead end at that depth.
    let Search::Failed { depth } = search(&ops, None) else {
        return None;
    };
    let Search::DeadEnd(dead_end) = search(&ops, Some(depth)) else {
        unreachable!("a repeated search reaches the same dead ends");
    };
    let state = values.lookup(dead_end.state);
    let operation = |op: usize| history.operations[ops[op].history_index].clone();
    let prefix: Vec<usize> = dead_end
        .prefix
        .iter()
        .map(|&op| ops[op].history_index)
        .collect();
    let tail_start = dead_end.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
    let unplaced = dead_end
        .pending
        .iter()
        .map(|&op| Unplaced {
            operation: operation(op),
            conflict: conflict(ops[op].step, dead_end.state, &values),
        })
        .collect();
    Some(Violation {
        key: key.to_owned(),
        definite_operations: ops.iter().filter(|op| op.definite).count(),
        prefix,
        prefix_tail: dead_end.prefix[tail_start..]
            .iter()
            .map(|&op| operation(op))
            .collect(),
        value_after_prefix: state,
        unplaced,
        deadline: operation(dead_end.deadline),
    })
}

fn conflict(step: Step, state: Value, values: &Interner<'_>) -> Option<String> {
    if step.apply(state).is_some() {
        return None;
    }
    let shown = |value| show_value(values.lookup(value).as_deref());
    Some(match step {
        Step::Read(value) => format!("read {} but the key holds {}", shown(value), shown(state)),
        Step::Cas { expected, .. } => format!(
            "swapped from {} but the key holds {}",
            shown(expected),
            shown(state)
        ),
        _ => unreachable!("only reads and CAS can contradict the register"),
    })
}

/// The key's operations that can constrain the order, sorted by call time.
fn key_operations<'a>(
    history: &'a History,
    indices: &[usize],
    values: &mut Interner<'a>,
) -> Vec<KeyOp> {
    let mut ops: Vec<KeyOp> = Vec::with_capacity(indices.len());
    for &history_index in indices {
        let op = &history.operations[history_index];
        let definite = match op.outcome {
            Outcome::Ok { .. } => true,
            Outcome::Unknown => false,
            Outcome::Fail => continue,
        };
        let step = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Ok { read }) => Step::Read(values.intern(read.as_deref())),
            (Call::Read, _) => continue,
            (Call::Write { value }, _) => Step::Write(values.intern(Some(value))),
            (Call::Cas { expected, value }, _) => {
                let expected = values.intern(expected.as_deref());
                let value = values.intern(Some(value));
                if definite {
                    Step::Cas { expected, value }
                } else {
                    Step::MaybeCas { expected, value }
                }
            }
            (Call::Delete, _) => Step::Delete,
        };
        ops.push(KeyOp {
            history_index,
            step,
            definite,
            call: op.invoke_time,
            complete: if definite { op.complete_time } else { None },
        });
    }
    drop_unobserved_unknowns(&mut ops);
    ops.sort_by_key(|op| (op.call, op.history_index));
    ops
}

/// Removes unknown-outcome operations whose resulting value nothing
/// observes (no read returns it, no CAS expects it). Repeats, since removing
/// an unknown CAS removes what it observed.
fn drop_unobserved_unknowns(ops: &mut Vec<KeyOp>) {
    loop {
        let mut observed: Vec<Value> = ops.iter().filter_map(|op| op.step.observes()).collect();
        observed.sort_unstable();
        observed.dedup();
        let before = ops.len();
        ops.retain(|op| op.definite || observed.binary_search(&op.step.result()).is_ok());
        if ops.len() == before {
            return;
        }
    }
}

/// Where and why the deepest branch of the search stopped.
struct DeadEnd {
    /// Placed operations (indices into the key's ops), in order.
    prefix: Vec<usize>,
    state: Value,
    /// Calls pending at that point, in list order.
    pending: Vec<usize>,
    deadline: usize,
}

/// The call/completion entries as a doubly linked list that operations are
/// lifted out of and put back into (dancing links), head at node 0.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Node -> operation, and whether the node is the operation's call.
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    /// `NIL` for an operation with an unknown outcome (completion at +∞).
    complete_node: Vec<usize>,
}

impl Entries {
    fn new(ops: &[KeyOp]) -> Entries {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (op, key_op) in ops.iter().enumerate() {
            // `false` sorts first: calls before completions at equal times.
            order.push((key_op.call, false, op));
            if let Some(complete) = key_op.complete {
                order.push((complete, true, op));
            }
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut entries = Entries {
            next: vec![NIL; nodes],
            prev: vec![HEAD; nodes],
            node_op: vec![NIL; nodes],
            node_is_call: vec![false; nodes],
            call_node: vec![NIL; ops.len()],
            complete_node: vec![NIL; ops.len()],
        };
        for (position, &(_, is_completion, op)) in order.iter().enumerate() {
            let node = position + 1;
            entries.next[node - 1] = node;
            entries.prev[node] = node - 1;
            entries.node_op[node] = op;
            entries.node_is_call[node] = !is_completion;
            if is_completion {
                entries.complete_node[op] = node;
            } else {
                entries.call_node[op] = node;
            }
        }
        entries
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.complete_node[op] != NIL {
            self.unlink(self.complete_node[op]);
        }
    }

    /// Undoes `lift(op)`; lifts must be undone in reverse order.
    fn unlift(&mut self, op: usize) {
        if self.complete_node[op] != NIL {
            self.relink(self.complete_node[op]);
        }
        self.relink(self.call_node[op]);
    }

    /// The operations below `below`, other than `op`, not yet placed, in
    /// ascending order. They are all candidates (see `Configuration`), so
    /// only the calls before the first completion need to be looked at.
    fn holes(&self, below: usize, op: usize, holes: &mut Vec<u32>) {
        holes.clear();
        let mut node = self.next[HEAD];
        while node != NIL && self.node_is_call[node] {
            let candidate = self.node_op[node];
            if candidate < below && candidate != op {
                holes.push(u32::try_from(candidate).expect("fewer than 2^32 operations per key"));
            }
            node = self.next[node];
        }
    }

    /// Calls before `stop` (the first completion in the list).
    fn pending_calls(&self, stop: usize) -> Vec<usize> {
        let mut pending = Vec::new();
        let mut node = self.next[HEAD];
        while node != stop && node != NIL {
            pending.push(self.node_op[node]);
            node = self.next[node];
        }
        pending
    }
}

/// The candidates to place next (calls before the list's first
/// completion), summarised for the rules on unknown operations; rebuilt
/// lazily after every change to the list.
#[derive(Default)]
struct Window {
    valid: bool,
    /// Values some candidate observes, sorted.
    observed: Vec<Value>,
    /// Per distinct step of an unknown candidate, its first node in the list.
    first_unknown: Vec<((u8, Value, Value), usize)>,
}

impl Window {
    /// Whether the unknown operation at `node` may be placed, taking the
    /// register from `state` to `next_state`: only if that changes the
    /// value to one a candidate observes (see the module documentation),
    /// and only if no identical unknown operation comes before it in the
    /// list. Identical unknown operations (two timed-out deletes, say) are
    /// interchangeable: both have no deadline, so using the earlier one
    /// first loses nothing, and trying each would multiply the
    /// configurations to explore.
    fn allows(
        &mut self,
        node: usize,
        state: Value,
        next_state: Value,
        entries: &Entries,
        ops: &[KeyOp],
    ) -> bool {
        if next_state == state {
            return false;
        }
        if !self.valid {
            self.rebuild(entries, ops);
        }
        let key = ops[entries.node_op[node]].step.identity();
        self.observed.binary_search(&next_state).is_ok()
            && self
                .first_unknown
                .binary_search_by_key(&key, |&(key, _)| key)
                .is_ok_and(|at| self.first_unknown[at].1 == node)
    }

    fn rebuild(&mut self, entries: &Entries, ops: &[KeyOp]) {
        self.observed.clear();
        self.first_unknown.clear();
        let mut node = entries.next[HEAD];
        while node != NIL && entries.node_is_call[node] {
            let op = &ops[entries.node_op[node]];
            self.observed.extend(op.step.observes());
            if !op.definite {
                self.first_unknown.push((op.step.identity(), node));
            }
            node = entries.next[node];
        }
        self.observed.sort_unstable();
        self.observed.dedup();
        // Stable: the first node of each step stays first.
        self.first_unknown.sort_by_key(|&(key, _)| key);
        self.first_unknown.dedup_by_key(|&mut (key, _)| key);
        self.valid = true;
    }
}

enum Search {
    Linearizable,
    /// No linearization; `depth` is the longest prefix the search placed.
    Failed {
        depth: usize,
    },
    /// The first dead end with the requested prefix length.
    DeadEnd(DeadEnd),
}

/// Wing–Gong–Lowe search with Porcupine's visited-configuration cache.
/// With `capture_depth`, stops at the first dead end after that many
/// placements and describes it.
fn search(ops: &[KeyOp], capture_depth: Option<usize>) -> Search {
    let definite_total = ops.iter().filter(|op| op.definite).count();
    if definite_total == 0 {
        return Search::Linearizable;
    }
    let mut entries = Entries::new(ops);
    let mut window = Window::default();
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(splitmix64).collect();
    let mut placed_hash = 0u64;
    // Every placed operation is below `placed_below`; `holes` are the
    // unplaced ones below it (see `Configuration`).
    let mut placed_below = 0;
    let mut holes: Vec<u32> = Vec::new();
    let mut visited = Visited::default();
    let mut stack: Vec<(usize, Value, usize)> = Vec::new();
    let mut definite_placed = 0;
    let mut state = ABSENT;
    let mut deepest = 0;
    let mut node = entries.next[HEAD];
    loop {
        if node != NIL && entries.node_is_call[node] {
            let op = entries.node_op[node];
            let next_state = ops[op].step.apply(state).filter(|&next_state| {
                ops[op].definite || window.allows(node, state, next_state, &entries, ops)
            });
            if let Some(next_state) = next_state {
                let next_hash = placed_hash ^ zobrist[op];
                let next_below = placed_below.max(op + 1);
                entries.holes(next_below, op, &mut holes);
                debug_assert_eq!(next_below - holes.len(), stack.len() + 1);
                if visited.insert(next_hash, next_state, next_below, &holes) {
                    stack.push((op, state, placed_below));
                    state = next_state;
                    placed_hash = next_hash;
                    placed_below = next_below;
                    entries.lift(op);
                    window.valid = false;
                    definite_placed += usize::from(ops[op].definite);
                    if definite_placed == definite_total {
                        return Search::Linearizable;
                    }
                    node = entries.next[HEAD];
                    continue;
                }
            }
            node = entries.next[node];
            continue;
        }
        // A completion (or, defensively, the end): the operation it belongs
        // to was not placed in time. Undo the last placement and try the
        // call after it.
        deepest = deepest.max(stack.len());
        if capture_depth == Some(stack.len()) {
            return Search::DeadEnd(DeadEnd {
                prefix: stack.iter().map(|&(op, _, _)| op).collect(),
                state,
                pending: entries.pending_calls(node),
                deadline: if node == NIL {
                    stack.last().map_or(0, |&(op, _, _)| op)
                } else {
                    entries.node_op[node]
                },
            });
        }
        let Some((op, previous_state, previous_below)) = stack.pop() else {
            return Search::Failed { depth: deepest };
        };
        definite_placed -= usize::from(ops[op].definite);
        placed_hash ^= zobrist[op];
        placed_below = previous_below;
        state = previous_state;
        entries.unlift(op);
        window.valid = false;
        node = entries.next[entries.call_node[op]];
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Visited (placed set, register value) configurations. Keyed by an
/// incrementally maintained (Zobrist) hash of the placed set mixed with the
/// value; the exact configurations are kept to rule out collisions, in two
/// flat arenas (no allocation per configuration).
#[derive(Default)]
struct Visited {
    /// Hash -> first configuration with that hash (chained by `next`).
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    configurations: Vec<Configuration>,
    holes: Vec<u32>,
}

/// A placed set stored as "every operation below `placed_below`, except
/// the holes". Operations are numbered in call order and an operation can
/// only be placed while it is a candidate, so the holes are candidates too:
/// a handful of concurrent calls plus pending unknown outcomes, whatever the
/// length of the history. A bitset would cost n/64 words per configuration
/// and per comparison, quadratic over a long single-key history.
struct Configuration {
    state: Value,
    placed_below: u32,
    /// `holes[holes_start..holes_start + holes_len]` in `Visited::holes`.
    holes_start: u32,
    holes_len: u32,
    /// Next configuration with the same hash, or `u32::MAX`.
    next: u32,
}

impl Visited {
    /// `true` if the configuration was new.
    fn insert(
        &mut self,
        placed_hash: u64,
        state: Value,
        placed_below: usize,
        holes: &[u32],
    ) -> bool {
        let placed_below = u32::try_from(placed_below).expect("fewer than 2^32 operations per key");
        let key = placed_hash ^ splitmix64(u64::from(state) ^ 0x5EED);
        let new = u32::try_from(self.configurations.len()).expect("fewer than 2^32 configurations");
        let head = self.heads.entry(key).or_insert(u32::MAX);
        let mut at = *head;
        while at != u32::MAX {
            let seen = &self.configurations[at as usize];
            let start = seen.holes_start as usize;
            if seen.state == state
                && seen.placed_below == placed_below
                && self.holes[start..start + seen.holes_len as usize] == *holes
            {
                return false;
            }
            at = seen.next;
        }
        self.configurations.push(Configuration {
            state,
            placed_below,
            holes_start: u32::try_from(self.holes.len()).expect("fewer than 2^32 holes"),
            holes_len: holes.len() as u32,
            next: *head,
        });
        *head = new;
        self.holes.extend_from_slice(holes);
        true
    }
}

/// The visited set's keys are already uniformly mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn show_value(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_owned(), |text| format!("{text:?}"))
}

/// One line describing an operation: where it is, who ran it, what it did
/// and when.
pub fn describe(op: &Operation) -> String {
    let what = match (&op.call, &op.outcome) {
        (Call::Read, Outcome::Ok { read }) => format!("read -> {}", show_value(read.as_deref())),
        (Call::Read, _) => "read".to_owned(),
        (Call::Write { value }, _) => format!("write {}", show_value(Some(value))),
        (Call::Cas { expected, value }, _) => format!(
            "cas {} -> {}",
            show_value(expected.as_deref()),
            show_value(Some(value))
        ),
        (Call::Delete, _) => "delete".to_owned(),
    };
    let end = match (&op.outcome, op.complete_time) {
        (Outcome::Ok { .. }, Some(time)) => format!("ok at {time}"),
        (Outcome::Fail, Some(time)) => format!("fail at {time}"),
        _ => "outcome unknown".to_owned(),
    };
    format!(
        "line {}: process {} {what} (invoked at {}, {end})",
        op.line, op.process, op.invoke_time
    )
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?}:", self.key)?;
        writeln!(
            f,
            "  longest linearizable prefix: {} operations ({} completed ones had to be placed)",
            self.prefix.len(),
            self.definite_operations
        )?;
        if self.prefix.len() > self.prefix_tail.len() {
            writeln!(
                f,
                "    ... {} earlier",
                self.prefix.len() - self.prefix_tail.len()
            )?;
        }
        for op in &self.prefix_tail {
            writeln!(f, "    {}", describe(op))?;
        }
        writeln!(
            f,
            "  value after the prefix: {}",
            show_value(self.value_after_prefix.as_deref())
        )?;
        writeln!(
            f,
            "  no order of these can be placed next before {} completes:",
            describe_short(&self.deadline)
        )?;
        for unplaced in self.unplaced.iter().take(PENDING_SHOWN_MAX) {
            let why = unplaced
                .conflict
                .as_deref()
                .unwrap_or("possible here, but every continuation fails");
            writeln!(f, "    {} -- {why}", describe(&unplaced.operation))?;
        }
        if self.unplaced.len() > PENDING_SHOWN_MAX {
            writeln!(
                f,
                "    ... {} more",
                self.unplaced.len() - PENDING_SHOWN_MAX
            )?;
        }
        Ok(())
    }
}

fn describe_short(op: &Operation) -> String {
    format!("the operation on line {}", op.line)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_linearizable() {
            return write!(
                f,
                "linearizable: {} operations on {} keys",
                self.operations, self.keys
            );
        }
        writeln!(
            f,
            "not linearizable: {} of {} keys ({} operations)",
            self.violations.len(),
            self.keys,
            self.operations
        )?;
        for violation in &self.violations {
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, EventType, Function};

    /// Builds histories one operation at a time; events are sorted by time
    /// (stably) when the history is built.
    #[derive(Default)]
    struct Script(Vec<Event>);

    impl Script {
        fn read(mut self, process: u64, key: &str, value: Option<&str>, times: (u64, u64)) -> Self {
            self.0.push(Event::invoke_read(process, key, times.0));
            self.0.push(Event::ok_read(process, key, value, times.1));
            self
        }

        fn write(self, process: u64, key: &str, value: &str, times: (u64, u64)) -> Self {
            self.write_ending(process, key, value, times, EventType::Ok)
        }

        fn write_ending(
            mut self,
            process: u64,
            key: &str,
            value: &str,
            times: (u64, u64),
            end: EventType,
        ) -> Self {
            self.0
                .push(Event::invoke_write(process, key, value, times.0));
            self.0
                .push(Event::complete(process, end, Function::Write, key, times.1));
            self
        }

        fn cas(
            mut self,
            process: u64,
            key: &str,
            swap: (Option<&str>, &str),
            times: (u64, u64),
            end: EventType,
        ) -> Self {
            self.0
                .push(Event::invoke_cas(process, key, swap.0, swap.1, times.0));
            self.0
                .push(Event::complete(process, end, Function::Cas, key, times.1));
            self
        }

        fn delete(mut self, process: u64, key: &str, times: (u64, u64)) -> Self {
            self.0.push(Event::invoke_delete(process, key, times.0));
            let ok = Event::complete(process, EventType::Ok, Function::Delete, key, times.1);
            self.0.push(ok);
            self
        }

        fn check(mut self) -> Report {
            self.0.sort_by_key(|event| event.time);
            check(&History::from_events(&self.0).expect("test histories are well formed"))
        }
    }

    const INFO: EventType = EventType::Info;
    const OK: EventType = EventType::Ok;
    const FAIL: EventType = EventType::Fail;

    #[test]
    fn sequential_register_operations_are_linearizable() {
        let report = Script::default()
            .read(1, "k", None, (0, 1))
            .write(1, "k", "1", (2, 3))
            .read(2, "k", Some("1"), (4, 5))
            .cas(1, "k", (Some("1"), "2"), (6, 7), OK)
            .cas(2, "k", (Some("1"), "3"), (8, 9), FAIL)
            .read(2, "k", Some("2"), (10, 11))
            .delete(1, "k", (12, 13))
            .read(2, "k", None, (14, 15))
            .cas(1, "k", (None, "4"), (16, 17), OK)
            .check();
        assert!(report.is_linearizable(), "{report}");
        assert_eq!(report.to_string(), "linearizable: 9 operations on 1 keys");
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let report = Script::default()
            .write(1, "k", "1", (0, 10))
            .write(1, "k", "2", (20, 30))
            .read(2, "k", Some("1"), (40, 50))
            .check();
        assert_eq!(
            report.to_string(),
            "not linearizable: 1 of 1 keys (3 operations)\n\
             key \"k\":\n  \
               longest linearizable prefix: 2 operations (3 completed ones had to be placed)\n    \
                 line 1: process 1 write \"1\" (invoked at 0, ok at 10)\n    \
                 line 3: process 1 write \"2\" (invoked at 20, ok at 30)\n  \
               value after the prefix: \"2\"\n  \
               no order of these can be placed next before the operation on line 5 completes:\n    \
                 line 5: process 2 read -> \"1\" (invoked at 40, ok at 50) -- read \"1\" but the key holds \"2\"\n"
        );
        let violation = &report.violations[0];
        assert_eq!(violation.prefix, vec![0, 1]);
        assert_eq!(violation.deadline.line, 5);
    }

    #[test]
    fn reads_that_order_concurrent_writes_both_ways_are_a_violation() {
        let writes = Script::default()
            .write(1, "k", "a", (0, 100))
            .write(2, "k", "b", (0, 100));
        // One reader seeing a then b is fine: a took effect first.
        let one_order = Script(writes.0.clone())
            .read(3, "k", Some("a"), (10, 20))
            .read(3, "k", Some("b"), (30, 40))
            .check();
        assert!(one_order.is_linearizable(), "{one_order}");
        let both_orders = writes
            .read(3, "k", Some("a"), (10, 20))
            .read(3, "k", Some("b"), (30, 40))
            .read(4, "k", Some("b"), (10, 20))
            .read(4, "k", Some("a"), (30, 40))
            .check();
        assert!(!both_orders.is_linearizable());
        assert_eq!(both_orders.violations[0].key, "k");
    }

    #[test]
    fn two_cas_from_the_same_value_cannot_both_swap() {
        let lost_update = Script::default()
            .write(1, "counter", "0", (0, 10))
            .cas(1, "counter", (Some("0"), "1"), (20, 30), OK)
            .cas(2, "counter", (Some("0"), "2"), (20, 30), OK)
            .check();
        assert!(!lost_update.is_linearizable());
        let explanation = lost_update.to_string();
        assert!(
            explanation.contains("swapped from \"0\" but the key holds"),
            "{explanation}"
        );
        // With one of them failing, it is fine.
        let one_fails = Script::default()
            .write(1, "counter", "0", (0, 10))
            .cas(1, "counter", (Some("0"), "1"), (20, 30), OK)
            .cas(2, "counter", (Some("0"), "2"), (20, 30), FAIL)
            .read(3, "counter", Some("1"), (40, 50))
            .check();
        assert!(one_fails.is_linearizable(), "{one_fails}");
    }

    #[test]
    fn a_timed_out_write_may_take_effect_much_later() {
        let report = Script::default()
            .write_ending(1, "k", "x", (0, 10), INFO)
            .read(2, "k", None, (20, 30))
            .read(2, "k", None, (1_000, 1_010))
            .write(1, "other", "y", (2_000, 2_010))
            .read(3, "k", Some("x"), (5_000, 5_010))
            .read(3, "k", Some("x"), (6_000, 6_010))
            .check();
        assert!(report.is_linearizable(), "{report}");
    }

    #[test]
    fn a_timed_out_write_may_never_take_effect() {
        let report = Script::default()
            .write_ending(1, "k", "x", (0, 10), INFO)
            .read(2, "k", None, (20, 30))
            .write(2, "k", "y", (40, 50))
            .read(2, "k", Some("y"), (60, 70))
            .check();
        assert!(report.is_linearizable(), "{report}");
    }

    #[test]
    fn a_timed_out_write_cannot_take_effect_twice_or_be_undone() {
        let undone = Script::default()
            .write_ending(1, "k", "x", (0, 10), INFO)
            .read(2, "k", Some("x"), (20, 30))
            .read(2, "k", None, (40, 50))
            .check();
        assert!(!undone.is_linearizable());
        let twice = Script::default()
            .write_ending(1, "k", "x", (0, 10), INFO)
            .read(2, "k", Some("x"), (20, 30))
            .write(3, "k", "y", (40, 50))
            .read(2, "k", Some("x"), (60, 70))
            .check();
        assert!(!twice.is_linearizable());
    }

    #[test]
    fn an_invoke_without_completion_counts_as_unknown() {
        let mut script = Script::default().read(2, "k", None, (5, 6));
        script.0.push(Event::invoke_write(1, "k", "x", 0));
        let report = script.read(2, "k", Some("x"), (100, 110)).check();
        assert!(report.is_linearizable(), "{report}");
    }

    #[test]
    fn an_unknown_cas_swaps_only_from_its_expected_value() {
        let swapped = Script::default()
            .write(1, "k", "a", (0, 10))
            .cas(1, "k", (Some("a"), "b"), (20, 30), INFO)
            .read(2, "k", Some("b"), (100, 110))
            .check();
        assert!(swapped.is_linearizable(), "{swapped}");
        let impossible = Script::default()
            .write(1, "k", "a", (0, 10))
            .cas(1, "k", (Some("z"), "b"), (20, 30), INFO)
            .read(2, "k", Some("b"), (100, 110))
            .check();
        assert!(!impossible.is_linearizable());
    }

    #[test]
    fn failed_operations_have_no_effect() {
        let report = Script::default()
            .write_ending(1, "k", "x", (0, 10), FAIL)
            .read(2, "k", Some("x"), (20, 30))
            .check();
        assert!(!report.is_linearizable());
    }

    #[test]
    fn a_read_of_a_value_never_written_is_a_violation() {
        let report = Script::default()
            .write(1, "k", "1", (0, 10))
            .read(2, "k", Some("7"), (0, 10))
            .check();
        let explanation = report.to_string();
        assert!(
            explanation.contains("read \"7\" but the key holds"),
            "{explanation}"
        );
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        let report = Script::default()
            .write(1, "k", "1", (0, 10))
            .read(2, "k", None, (10, 20))
            .check();
        assert!(report.is_linearizable(), "{report}");
    }

    #[test]
    fn keys_are_checked_independently_and_reported_in_order() {
        let report = Script::default()
            .write(1, "b", "1", (0, 10))
            .read(2, "b", None, (20, 30))
            .write(1, "a", "1", (40, 50))
            .read(2, "a", Some("1"), (60, 70))
            .read(2, "c", Some("ghost"), (80, 90))
            .check();
        let keys: Vec<&str> = report.violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        assert_eq!(report.keys, 3);
    }

    #[test]
    fn many_pending_unknown_writes_do_not_explode_the_search() {
        // 200 timed-out writes, 100 of them observed later, in any order.
        let mut script = Script::default();
        for n in 0..200u64 {
            script = script.write_ending(n, "k", &format!("v{n}"), (n, n + 5), INFO);
        }
        for n in 0..100u64 {
            let value = format!("v{}", 2 * n);
            script = script.read(1000, "k", Some(&value), (1000 + 10 * n, 1005 + 10 * n));
        }
        let report = script.check();
        assert!(report.is_linearizable(), "{report}");
    }
}
